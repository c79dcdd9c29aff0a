/**
 * Stage 4: check the converted disk. It must fit the requested volume; then the guest inspector
 * (toolkit/inspect/guest.ts) reads it in place in the image store, with bounded ranged reads and
 * no scratch copy, and its report is kept on the task (artifacts.validation).
 *
 * What is judged depends on what the disk is to become. An image or an instance's root
 * (ImportImage, ImportInstance) is a system disk: it must hold one operating system that can
 * boot, as the operator's policy (IMAGING_GUEST_*) and the request's Architecture / BootMode say,
 * and a refusal fails the task with the report's message. A volume or a snapshot (ImportVolume,
 * ImportSnapshot) is data: it is reported, never refused for what a guest would need.
 */
import { S3ObjectSource } from '../../toolkit/io/s3-object-source';
import { DEFAULT_GUEST_POLICY, inspectGuest, type Architecture, type GuestReport, type InspectGuestOptions, type RequestedBootMode, type RequestedPlatform } from '../../toolkit/inspect/guest';
import { ReadBudgetExceededError } from '../../toolkit/inspect/inspection-source';
import type { ImageLayout, TaskDocument, ValidationReport } from '../../tasks/task';
import { advanceToNext, failKeeping, taskStage } from '../task-step';
import { ClientError } from '../errors';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
/** The most the inspector may read of one disk; its reads are small and few (see test/integration/validate-stage.test.ts). */
export const VALIDATE_MAX_BYTES_READ = 256 * MiB;

const ARCHITECTURES: readonly string[] = ['i386', 'x86_64', 'arm64'];
const BOOT_MODES: readonly string[] = ['legacy-bios', 'uefi', 'uefi-preferred'];

/** The task kinds whose disk is data, not a system to boot. */
const DATA_KINDS: readonly string[] = ['import-volume', 'import-snapshot'];

/** The ImportImage half of a request, read as far as this stage needs it (present on import-image tasks). */
interface RequestedImage {
  architecture?: string;
  bootMode?: string;
  platform?: string;
}

/**
 * Whether the request associates a kernel with the disk (KernelId, with its RamdiskId): a bundle's
 * RegisterImage, or an import that names them. Read wherever the request carries them, so that
 * a partition image (a bare filesystem) boots with that kernel instead of one of its own.
 */
export function kernelAssociated(request: TaskDocument['request']): boolean {
  const holders = [request, request.importImage] as ({ kernelId?: unknown } | undefined)[];
  return holders.some((holder) => typeof holder?.kernelId === 'string' && holder.kernelId !== '');
}

/** The inspector's options from what the task's request asked for. */
export function inspectOptionsFor(task: TaskDocument): Pick<InspectGuestOptions, 'purpose' | 'architecture' | 'bootMode' | 'platform' | 'kernelAssociated'> {
  const kind: string = task.kind;
  const image = (task.request as { importImage?: RequestedImage }).importImage;
  const architecture = task.request.instance?.architecture ?? image?.architecture;
  const bootMode = image?.bootMode;
  // ImportInstance names only Windows (a Linux instance leaves Platform out, so nothing is checked then).
  const platform = task.request.instance?.platform ?? image?.platform;
  return {
    // A kernel or ramdisk from a bundle is no disk to boot: its bytes are judged as data.
    purpose: DATA_KINDS.includes(kind) || (task.request.bundle && task.request.bundle.imageType !== 'machine') ? 'data' : 'system',
    ...(architecture && ARCHITECTURES.includes(architecture) ? { architecture: architecture as Architecture } : {}),
    ...(bootMode && BOOT_MODES.includes(bootMode) ? { bootMode: bootMode as RequestedBootMode } : {}),
    ...(platform === 'Linux' || platform === 'Windows' ? { platform: platform as RequestedPlatform } : {}),
    ...(kernelAssociated(task.request) ? { kernelAssociated: true } : {}),
  };
}

/** A disk with a partition table is a whole disk; without one, a bare filesystem (a partition image). */
export function layoutOf(report: Pick<GuestReport, 'partitionTable'>): ImageLayout {
  return report.partitionTable === 'none' ? 'partition' : 'disk';
}

/** The refusal when the request declared a layout (extension parameter Layout) the disk does not have. */
export function layoutMismatch(declared: ImageLayout | undefined, found: ImageLayout | undefined, report: Pick<GuestReport, 'partitionTable'>): string | undefined {
  if (!declared || !found || declared === found) return undefined;
  return declared === 'disk'
    ? 'ClientError: the request declared Layout=disk but the image has no partition table (it is one bare filesystem); declare Layout=partition and name its KernelId, or import the whole disk'
    : `ClientError: the request declared Layout=partition but the image is a whole disk with a${report.partitionTable === 'mbr' ? 'n MBR' : ' GPT'} partition table; declare Layout=disk, or import the bare filesystem alone`;
}

/** The report as the task keeps it: what a user and the later stages need, not every partition field. */
export function compactReport(report: GuestReport, purpose: 'system' | 'data'): ValidationReport {
  return {
    sizeBytes: report.image.size,
    partitionTable: report.partitionTable,
    purpose,
    ...(report.os ? { os: { ...report.os } } : {}),
    kernels: report.kernels.map((kernel) => ({ ...kernel })),
    bootMode: report.bootMode,
    ...(report.architecture ? { architecture: report.architecture } : {}),
    filesystems: report.filesystems.map((fs) => ({
      type: fs.type,
      ...(fs.partition !== undefined ? { partition: fs.partition } : {}),
      ...(fs.label ? { label: fs.label } : {}),
      ...(fs.uuid ? { uuid: fs.uuid } : {}),
      ...(fs.role ? { role: fs.role } : {}),
      ...(fs.mountpoint ? { mountpoint: fs.mountpoint } : {}),
      ...(fs.encrypted ? { encrypted: true } : {}),
    })),
    findings: report.findings.map((finding) => ({ ...finding })),
    verdict: { ...report.verdict },
    bytesRead: report.bytesRead,
  };
}

export const validateStage = taskStage('validate', {
  async work(task, { taskId, image }, ctx) {
    const volumeBytes = task.request.volumeSizeGiB * GiB;
    if (image.size > volumeBytes) {
      throw new ClientError(`the disk is ${image.size} bytes, larger than the requested volume of ${task.request.volumeSizeGiB} GiB`);
    }
    const options = inspectOptionsFor(task);
    const source = await S3ObjectSource.open(ctx.s3, image.bucket, image.key);
    let report: GuestReport;
    try {
      report = await inspectGuest(source, { ...options, policy: ctx.config.guestPolicy ?? DEFAULT_GUEST_POLICY, maxBytesRead: VALIDATE_MAX_BYTES_READ });
    } catch (err) {
      // A disk whose structures send the inspector past its bound is hostile or broken: no retry reads less.
      if (err instanceof ReadBudgetExceededError) throw new ClientError(`the disk could not be inspected: ${err.message}`);
      throw err;
    } finally {
      await source.close();
    }
    const validation = compactReport(report, options.purpose ?? 'system');
    ctx.log.info({ taskId, verdict: report.verdict.message, bytesRead: report.bytesRead }, 'guest inspected');
    // A system disk is a whole disk or one bare filesystem; a bundle's layout was recorded by the decrypt stage.
    const layout = options.purpose === 'data' ? undefined : task.artifacts.layout ?? layoutOf(report);
    const refusal = !report.verdict.accepted ? report.verdict.message : layoutMismatch(task.request.layout, layout, report);
    if (refusal) {
      await failKeeping(ctx, 'validate', taskId, refusal, { validation });
      return;
    }
    await advanceToNext(
      ctx, 'validate', taskId,
      (doc) => ({ artifacts: { ...doc.artifacts, validation, ...(layout ? { layout } : {}) } }),
    );
  },
});
