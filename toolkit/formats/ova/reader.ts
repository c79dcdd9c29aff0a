/**
 * Reads an OVA (a tar holding an OVF descriptor and its disks) in place: the tar is listed,
 * the OVF read for the disk list, and the chosen disk opened as a VMDK through a window of the
 * OVA. Shape: ovf-descriptor.ts and manifest.ts (what is read from the package) → checks.ts (the
 * named safety checks) → extent-map.ts (the disk's extents re-based onto the OVA, so the
 * converter reads the OVA itself) → this reader. The disk inside passes the VMDK reader's checks.
 * Spec: DMTF DSP0243 (OVF 1.x, https://www.dmtf.org/standards/ovf).
 */
import { listTar, type TarEntry } from '../../bundle/tar';
import { SliceSource } from '../../io/slice-source';
import type { RandomAccessSource } from '../../io/source';
import type { DiskImageReader, Extent, ImageInfo, ReaderOptions } from '../format';
import { refusal } from '../safety-checks';
import { looksLikeVmdk } from '../vmdk/sniff';
import { VmdkReader } from '../vmdk/reader';
import { ovaChecks } from './checks';
import { rebasedExtents } from './extent-map';
import { MAX_MANIFEST_BYTES, parseManifest, verifyDigest } from './manifest';
import { MAX_OVF_BYTES, parseOvf, type OvfDisk } from './ovf-descriptor';

export interface OvaReaderOptions extends ReaderOptions {
  /** Which disk of the DiskSection to open (0, the boot disk, by default). */
  diskIndex?: number;
}

export class OvaReader implements DiskImageReader {
  private constructor(
    readonly info: ImageInfo,
    private readonly disk: DiskImageReader,
    private readonly diskOffset: number,
  ) {}

  static async open(source: RandomAccessSource, options: OvaReaderOptions): Promise<OvaReader> {
    const entries = await listTar(source, { maxEntries: 1000 });
    const ovfEntries = entries.filter((e) => e.type === 'file' && e.name.toLowerCase().endsWith('.ovf'));
    if (ovfEntries.length !== 1) {
      throw refusal(ovaChecks.ovfCount, `OVA holds ${ovfEntries.length} .ovf descriptors; exactly one is required`);
    }
    const [ovfEntry] = ovfEntries;
    if (ovfEntry.size > MAX_OVF_BYTES) {
      throw refusal(ovaChecks.ovfSize, `OVF descriptor is ${ovfEntry.size} bytes, over the ${MAX_OVF_BYTES}-byte limit`);
    }
    const ovfBytes = await source.read(ovfEntry.dataOffset, ovfEntry.size);
    const manifestDigests = await checkManifest(source, entries, ovfEntry, ovfBytes);
    const ovf = parseOvf(ovfBytes.toString('utf8'));
    const members = new Map<string, TarEntry>();
    for (const entry of entries) if (entry.type === 'file') members.set(entry.name.replace(/^\.\//, ''), entry);
    for (const file of ovf.files) {
      const member = members.get(file.href);
      if (!member) {
        throw refusal(ovaChecks.missingFile, `OVF refers to ${JSON.stringify(file.href)}, which is not in the OVA; export the OVA again`);
      }
      if (file.size !== undefined && file.size !== member.size) {
        throw refusal(ovaChecks.fileSize, `OVF says ${JSON.stringify(file.href)} is ${file.size} bytes, the OVA holds ${member.size}; the package is damaged`);
      }
    }
    if (ovf.disks.length === 0) throw refusal(ovaChecks.noDisk, 'OVF DiskSection lists no disk with data; there is nothing to import');
    const diskIndex = options.diskIndex ?? 0;
    if (!Number.isInteger(diskIndex) || diskIndex < 0 || diskIndex >= ovf.disks.length) {
      throw refusal(ovaChecks.diskIndex, `OVA has ${ovf.disks.length} disks; disk ${diskIndex} does not exist`);
    }
    const chosen = ovf.disks[diskIndex];
    const member = members.get(chosen.file.href)!;
    const slice = new SliceSource(source, member.dataOffset, member.size, `${source.name}/${chosen.file.href}`);
    const head = await slice.read(0, Math.min(512, slice.size));
    if (!/vmdk/i.test(chosen.format) || !looksLikeVmdk(head)) {
      throw refusal(ovaChecks.diskFormat, `OVA disk ${JSON.stringify(chosen.file.href)} is not a VMDK; only VMDK disks are accepted in an OVA`);
    }
    const disk = await VmdkReader.open(slice, options);
    const info: ImageInfo = {
      format: 'ova',
      subformat: disk.info.subformat,
      virtualSize: disk.info.virtualSize,
      fileSize: source.size,
      allocatedSize: disk.info.allocatedSize,
      details: {
        ...(ovf.name ? { name: ovf.name } : {}),
        ovf: ovfEntry.name,
        diskCount: ovf.disks.length,
        openedDisk: diskIndex,
        manifest: manifestDigests === undefined ? 'none' : 'descriptor digest verified',
        ...Object.fromEntries(ovf.disks.map((d, i) => [`disk${i}`, describeDisk(d, members.get(d.file.href)!)])),
      },
    };
    return new OvaReader(info, disk, member.dataOffset);
  }

  blockMap(): AsyncIterable<Extent> {
    return rebasedExtents(this.disk.blockMap(), this.diskOffset);
  }

  async close(): Promise<void> {
    await this.disk.close();
  }
}

/** When the OVA carries a manifest, the descriptor's digest in it must match. */
async function checkManifest(source: RandomAccessSource, entries: TarEntry[], ovfEntry: TarEntry, ovfBytes: Buffer): Promise<number | undefined> {
  const manifests = entries.filter((e) => e.type === 'file' && e.name.toLowerCase().endsWith('.mf'));
  if (manifests.length === 0) return undefined;
  if (manifests.length > 1) throw refusal(ovaChecks.manifest, `OVA holds ${manifests.length} manifests; at most one is allowed`);
  const [manifest] = manifests;
  if (manifest.size > MAX_MANIFEST_BYTES) throw refusal(ovaChecks.manifest, `OVA manifest is ${manifest.size} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`);
  const digests = parseManifest((await source.read(manifest.dataOffset, manifest.size)).toString('utf8'));
  const ovfName = ovfEntry.name.replace(/^.*\//, '');
  const entry = digests.get(ovfName);
  if (entry) verifyDigest(entry, ovfBytes);
  return digests.size;
}

function describeDisk(disk: OvfDisk, member: TarEntry): string {
  const capacity = disk.capacityBytes === undefined ? 'capacity unknown' : `${disk.capacityBytes} bytes`;
  return `${disk.file.href} (${capacity}, ${member.size} bytes in the OVA)`;
}
