/**
 * Platform, Architecture and BootMode of an imported image: what the request said, filled in
 * from what the validate stage found on the disk (artifacts.validation). A requested
 * Architecture or BootMode the disk cannot honour fails the task in the validate stage, so where
 * both exist they agree; Platform is the user's word when given.
 */
import type { TaskDocument } from './task';

export type ImageBootMode = 'legacy-bios' | 'uefi' | 'uefi-preferred';

export interface ImportedGuestFacts {
  platform?: 'Linux' | 'Windows';
  architecture?: string;
  bootMode?: ImageBootMode;
}

/** The guest report's boot mode as EC2 names an image's: a disk that boots either way prefers UEFI. */
export function imageBootModeOf(found: string | undefined): ImageBootMode | undefined {
  if (found === 'legacy-bios' || found === 'uefi') return found;
  if (found === 'both') return 'uefi-preferred';
  return undefined;
}

export function importedGuestFacts(task: Pick<TaskDocument, 'request' | 'artifacts'>): ImportedGuestFacts {
  const spec = task.request.importImage;
  const report = task.artifacts.validation;
  const family = report?.os?.family;
  const platform = spec?.platform ?? (family === 'windows' ? 'Windows' : family === 'linux' ? 'Linux' : undefined);
  const architecture = report?.architecture ?? spec?.architecture;
  const bootMode = spec?.bootMode ?? imageBootModeOf(report?.bootMode);
  return {
    ...(platform ? { platform } : {}),
    ...(architecture ? { architecture } : {}),
    ...(bootMode ? { bootMode } : {}),
  };
}

/** How an imported disk boots: the kernel and ramdisk the request associated, its virtualization and layout. */
export interface ImportedBootFacts {
  kernelId?: string;
  ramdiskId?: string;
  virtualizationType?: 'paravirtual' | 'hvm';
  layout?: 'disk' | 'partition';
}

/**
 * What the request's extension parameters (KernelId, RamdiskId, VirtualizationType) said, and the
 * layout the validate stage found (which equals a declared one by then). With a kernel and no
 * VirtualizationType the image boots paravirtual, as RegisterImage assumes.
 */
export function importedBootFacts(task: Pick<TaskDocument, 'request' | 'artifacts'>): ImportedBootFacts {
  const { kernelId, ramdiskId, virtualizationType } = task.request;
  const layout = task.artifacts.layout ?? task.request.layout;
  const virtualization = virtualizationType ?? (kernelId ? 'paravirtual' : undefined);
  return {
    ...(kernelId ? { kernelId } : {}),
    ...(ramdiskId ? { ramdiskId } : {}),
    ...(virtualization ? { virtualizationType: virtualization } : {}),
    ...(layout ? { layout } : {}),
  };
}
