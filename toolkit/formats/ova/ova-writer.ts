/**
 * Writes an OVA: a tar of an OVF 1.0 descriptor followed by one streamOptimized VMDK.
 *
 * A tar header states its member's size before the member, and the OVF (which comes first)
 * states the VMDK's size too, but a compressed VMDK's size is only known once written. So the
 * VMDK is written to a scratch file first, then the OVA is streamed to the sink: OVF, VMDK
 * header, the scratch file's bytes, end of archive. This costs scratch disk equal to the VMDK
 * (not the raw disk), keeps memory bounded, and leaves the sink purely sequential (S3 multipart).
 */
import { open, mkdtemp, rm } from 'fs/promises';
import { tmpdir } from 'os';
import { join } from 'path';
import { TarWriter } from '../../bundle/tar';
import { FileSink } from '../../io/file-sink';
import type { ByteSink } from '../../io/sink';
import type { DiskImageWriter, VirtualChunk } from '../format';
import { StreamOptimizedVmdkWriter, type StreamOptimizedOptions } from '../vmdk/stream-optimized-writer';
import { buildOvf } from './ovf-descriptor';

export interface OvaWriterOptions {
  /** Where the scratch VMDK goes; the OS temp directory by default. */
  scratchDir?: string;
  vmdk?: StreamOptimizedOptions;
}

const COPY_CHUNK = 1024 * 1024;

export class OvaWriter implements DiskImageWriter {
  readonly name = 'ova' as const;

  constructor(private readonly options: OvaWriterOptions = {}) {}

  async write(input: { virtualSize: number; chunks: AsyncIterable<VirtualChunk> }, sink: ByteSink): Promise<void> {
    const base = baseNameFor(sink.name);
    const vmdkName = `${base}-disk1.vmdk`;
    const scratch = await mkdtemp(join(this.options.scratchDir ?? tmpdir(), 'ova-'));
    try {
      const vmdkPath = join(scratch, vmdkName);
      const vmdkSink = await FileSink.create(vmdkPath, vmdkName);
      try {
        await new StreamOptimizedVmdkWriter({ ...this.options.vmdk, extentName: vmdkName }).write(input, vmdkSink);
      } catch (error) {
        await vmdkSink.abort();
        throw error;
      }
      const { size: vmdkSize } = await vmdkSink.finish();
      const ovf = buildOvf({ name: base, vmdkName, vmdkSize, capacityBytes: Math.ceil(input.virtualSize / 512) * 512 });
      const tar = new TarWriter(sink);
      await tar.addBuffer(`${base}.ovf`, Buffer.from(ovf, 'utf8'));
      await tar.addEntry(vmdkName, vmdkSize, (out) => copyFile(vmdkPath, vmdkSize, out));
      await tar.finish();
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }
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
