import type { S3Client } from '@aws-sdk/client-s3';
import type { ServiceMetrics } from '../../ops/metrics';
import type { TaskStore } from '../../tasks/store';
import type { Logger, StageConfig } from '../stage';

/** What a host needs to run any stage: everything in a StageContext except the delivery. */
export interface StageDeps {
  tasks: TaskStore;
  s3: S3Client;
  config: StageConfig;
  log: Logger;
  /** The process's metrics; a host without them records nothing. */
  metrics?: ServiceMetrics;
}
