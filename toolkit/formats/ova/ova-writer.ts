/**
 * Writes an OVA: a tar of an OVF 1.0 descriptor followed by one streamOptimized VMDK.
 *
 * A tar header states its member's size before the member, and the OVF (which comes first)
 * states the VMDK's size too, but a compressed VMDK's size is only known once written.
 *
 * - Into a sink that can patch its head (a file, an S3 upload holding back its first part): the
 *   OVF goes out with a size field padded to a fixed width and the VMDK's tar header with size 0,
 *   the VMDK streams straight into the archive, and both are rewritten in place at the end. One
 *   pass, no scratch disk.
 * - Into any other sink (one that hashes what goes by): the VMDK is written to a scratch file
 *   first, then the OVA is streamed: OVF, VMDK header, the scratch file's bytes, end of archive.
 *   This costs scratch disk equal to the VMDK (not the raw disk).
 */
import { open } from 'fs/promises';
import { join } from 'path';
import { tarFileHeader, tarPadding, TarWriter } from '../../bundle/tar';
import { FileSink } from '../../io/file-sink';
import { canPatchHead, type ByteSink, type HeadPatchingSink } from '../../io/sink';
import { processScratchSpace, ScratchSpace } from '../../io/scratch-space';
import type { DiskImageWriter, VirtualChunk } from '../format';
import { StreamOptimizedVmdkWriter, type StreamOptimizedOptions } from '../vmdk/stream-optimized-writer';
import { buildOvf } from './ovf-descriptor';

export interface OvaWriterOptions {
  /** Where the scratch VMDK goes; the OS temp directory by default. */
  scratchDir?: string;
  /** The rationed scratch space to reserve the VMDK's bytes from; the process's by default. */
  scratch?: ScratchSpace;
  vmdk?: StreamOptimizedOptions;
}

const COPY_CHUNK = 1024 * 1024;

export class OvaWriter implements DiskImageWriter {
  readonly name = 'ova' as const;

  constructor(private readonly options: OvaWriterOptions = {}) {}

  async write(input: { virtualSize: number; chunks: AsyncIterable<VirtualChunk> }, sink: ByteSink): Promise<void> {
    const base = baseNameFor(sink.name);
    const names = { base, ovf: `${base}.ovf`, vmdk: `${base}-disk1.vmdk` };
    if (canPatchHead(sink)) await this.writeInOnePass(input, sink, names);
    else await this.writeThroughScratch(input, sink, names);
  }

  private async writeInOnePass(input: WriterInput, sink: HeadPatchingSink, names: MemberNames): Promise<void> {
    const ovfFor = (vmdkSize: number): Buffer =>
      Buffer.from(buildOvf({ name: names.base, vmdkName: names.vmdk, vmdkSize, capacityBytes: capacityOf(input), sizeDigits: SIZE_DIGITS }), 'utf8');
    const placeholder = ovfFor(0);
    // The head: the OVF member and the VMDK's tar header, both rewritten once the VMDK is written.
    sink.holdHead(tarFileHeader(names.ovf, placeholder.length).length + placeholder.length + tarPadding(placeholder.length) + tarFileHeader(names.vmdk, 0).length);
    const tar = new TarWriter(sink);
    const ovfOffset = await tar.addBuffer(names.ovf, placeholder);
    const vmdkSize = await tar.addEntryOfUnknownSize(
      names.vmdk,
      (out) => new StreamOptimizedVmdkWriter({ ...this.options.vmdk, extentName: names.vmdk }).write(input, out),
      (offset, header) => sink.patchHead(offset, header),
    );
    await tar.finish();
    await sink.patchHead(ovfOffset, ovfFor(vmdkSize));
  }

  private async writeThroughScratch(input: WriterInput, sink: ByteSink, names: MemberNames): Promise<void> {
    const space = this.options.scratch ?? (this.options.scratchDir ? new ScratchSpace({ dir: this.options.scratchDir, limitBytes: Number.MAX_SAFE_INTEGER, whenFull: 'fail' }) : processScratchSpace());
    // The VMDK is at most the disk plus its markers and tables (outputSizeBound's margin).
    const reservation = await space.reserve(Math.ceil(input.virtualSize * 1.02) + 64 * 1024 * 1024, `writing the OVA ${sink.name}`);
    try {
      const vmdkPath = join(reservation.dir, names.vmdk);
      const vmdkSink = await FileSink.create(vmdkPath, names.vmdk);
      try {
        await new StreamOptimizedVmdkWriter({ ...this.options.vmdk, extentName: names.vmdk }).write(input, vmdkSink);
      } catch (error) {
        await vmdkSink.abort();
        throw error;
      }
      const { size: vmdkSize } = await vmdkSink.finish();
      const ovf = buildOvf({ name: names.base, vmdkName: names.vmdk, vmdkSize, capacityBytes: capacityOf(input) });
      const tar = new TarWriter(sink);
      await tar.addBuffer(names.ovf, Buffer.from(ovf, 'utf8'));
      await tar.addEntry(names.vmdk, vmdkSize, (out) => copyFile(vmdkPath, vmdkSize, out));
      await tar.finish();
    } finally {
      await reservation.release();
    }
  }
}

type WriterInput = { virtualSize: number; chunks: AsyncIterable<VirtualChunk> };
interface MemberNames {
  base: string;
  ovf: string;
  vmdk: string;
}

/** Digits reserved for the VMDK's size in the OVF: any safe integer fits. */
const SIZE_DIGITS = 16;

function capacityOf(input: WriterInput): number {
  return Math.ceil(input.virtualSize / 512) * 512;
}

async function copyFile(path: string, size: number, out: ByteSink): Promise<void> {
  const handle = await open(path, 'r');
  try {
    for (let offset = 0; offset < size; offset += COPY_CHUNK) {
      const buffer = Buffer.allocUnsafe(Math.min(COPY_CHUNK, size - offset));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      if (bytesRead !== buffer.length) throw new Error(`scratch VMDK ${path} shrank while being copied`);
      await out.write(buffer);
    }
  } finally {
    await handle.close();
  }
}

/** "exports/i-123.ova" -> "i-123"; anything odd -> "disk". */
function baseNameFor(sinkName: string): string {
  const last = sinkName.split(/[/\\]/).pop() ?? '';
  const base = last.replace(/\.ova$/i, '');
  return /^[A-Za-z0-9._-]{1,100}$/.test(base) && !base.startsWith('.') ? base : 'disk';
}
