/** The shape every EC2 action handler has, and what it is given to work with. */
import type { CloudEvent } from 'cloudevents';
import type { TaskStore } from '../../tasks/store';
import type { QueryParams } from '../query-request';
import type { Caller } from '../signing-common';
import type { XmlObject } from '../xml';
import type { UserBucketProbe } from '../user-objects';

export interface ActionContext {
  caller: Caller;
  tasks: TaskStore;
  publish(event: CloudEvent<unknown>): Promise<void>;
  region: string;
  allowedObjectHosts: string[];
  taskLifetimeMs: number;
  /** Largest disk a request may declare (IMAGING_MAX_IMAGE_BYTES); unset, only EC2's own bounds. */
  maxImageBytes?: number;
  now(): Date;
  /** Removes an object of the image store (the bytes of a deleted volume or snapshot); absent, bytes stay. */
  deleteImageObject?(bucket: string, key: string): Promise<void>;
  /** Import tasks one account may have pending or active at once; absent, no cap. */
  maxOpenTasksPerAccount?: number;
  /**
   * Reads a small object of the caller's with that account's own object-storage key (a bundle
   * manifest for RegisterImage); undefined when it is missing or unreadable for that account.
   * Absent when the gateway has no object storage configured.
   */
  readUserObject?(accountId: string, bucket: string, key: string, maxBytes: number): Promise<Buffer | undefined>;
  /**
   * Whether the caller's account can reach `bucket` with its own object-storage key (BundleInstance
   * checks the bucket it is to write to); absent when the gateway has no object storage configured.
   */
  probeUserBucket?(accountId: string, bucket: string): Promise<UserBucketProbe>;
  log?: { warn(obj: object, msg?: string): void };
}

/**
 * `validate` does every check a real call would (inputs, existence, ownership) and changes
 * nothing, so DryRun can stop between it and `run`.
 */
export interface ActionHandler<Input> {
  validate(params: QueryParams, ctx: ActionContext): Promise<Input>;
  run(input: Input, ctx: ActionContext): Promise<XmlObject>;
}
