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
