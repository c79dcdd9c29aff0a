/** The boot-check stage's settings (IMAGING_BOOT_CHECK*) as the stage takes them. */
import type { Settings } from '../../config/settings-schema';
import type { BootCheckConfig } from '../stage';

export const DEFAULT_BOOT_CHECK: BootCheckConfig = { mode: 'on-request', timeoutMs: 300_000, accelerator: 'auto', memoryMiB: 512 };

export function bootCheckConfigOf(settings: Pick<Settings, 'bootCheck' | 'bootCheckTimeoutSeconds' | 'bootCheckAccelerator' | 'bootCheckMemoryMb'>): BootCheckConfig {
  return {
    mode: settings.bootCheck,
    timeoutMs: settings.bootCheckTimeoutSeconds * 1000,
    accelerator: settings.bootCheckAccelerator,
    memoryMiB: settings.bootCheckMemoryMb,
  };
}
