/**
 * Just enough NTFS to tell whether a path exists and to read a file's first bytes: the boot
 * sector, MFT file records (with their update-sequence fixups), attribute lists (a record whose
 * attributes spill into extension records), data runs, and directory indexes ($I30: the
 * resident $INDEX_ROOT and the INDX blocks of $INDEX_ALLOCATION). No compression, no writes. Every size read from the disk is bounded before it is used.
 *
 * Layouts from the NTFS documentation of the Linux-NTFS project (ntfsdoc) and libfsntfs:
 *   boot sector: +0x0B bytes/sector u16, +0x0D sectors/cluster u8, +0x30 $MFT cluster u64,
 *                +0x40 clusters (or -log2 bytes) per file record i8, +0x44 the same per index block
 *   file record: "FILE", +4 update-sequence offset u16, +6 its count u16, +0x14 first attribute u16, +0x16 flags
 *   attribute:   +0 type u32, +4 length u32, +8 non-resident u8, +9 name length, +0x0A name offset;
 *                resident: +0x10 value length u32, +0x14 value offset u16;
 *                non-resident: +0x20 runs offset u16, +0x30 data size u64
 *   attribute list entry: +0 type u32, +4 length u16, +0x10 file reference of the record holding it
 *   index entry: +0 file reference (low 48 bits: record number), +8 length u16, +10 key length u16,
 *                +12 flags (1 sub-node, 2 last); key = $FILE_NAME: +0x38 flags, +0x40 name length, +0x41 namespace, +0x42 name
 */
import type { RandomAccessSource } from '../io/source';
import type { FileTree } from './file-tree';

const ATTR_ATTRIBUTE_LIST = 0x20;
const ATTR_DATA = 0x80;
/** Extension records followed per file at most. */
const MAX_EXTENSION_RECORDS = 64;
const ATTR_INDEX_ROOT = 0x90;
const ATTR_INDEX_ALLOCATION = 0xa0;
const ATTR_END = 0xffffffff;
const ROOT_DIRECTORY_RECORD = 5;
const VOLUME_RECORD = 3;
const ATTR_VOLUME_NAME = 0x60;
/** Index blocks read per directory at most: a directory of some 100,000 names. */
const MAX_INDEX_BLOCKS = 4096;
const DOS_NAMESPACE = 2;

export class NtfsError extends Error {}

interface Run {
  /** First cluster of the file covered by this run. */
  vcn: number;
  clusters: number;
  /** Cluster on the volume; undefined for a sparse run. */
  lcn?: number;
}

interface Attribute {
  type: number;
  name: string;
  resident: boolean;
  value?: Buffer;
  runs?: Run[];
  dataSize?: number;
}

interface DirectoryEntry {
  name: string;
  record: number;
  directory: boolean;
}

export class NtfsTree implements FileTree {
  readonly kind = 'ntfs' as const;
  private mftRuns: Run[] = [];
  private readonly directories = new Map<number, DirectoryEntry[]>();

  private constructor(
    private readonly source: RandomAccessSource,
    private readonly start: number,
    private readonly size: number,
    private readonly clusterBytes: number,
    private readonly recordBytes: number,
    private readonly indexBlockBytes: number,
  ) {}

  static async open(source: RandomAccessSource, start: number, size: number): Promise<NtfsTree> {
    const boot = await source.read(start, 512);
    if (boot.toString('latin1', 3, 11) !== 'NTFS    ') throw new NtfsError('no NTFS boot sector');
    const sectorBytes = boot.readUInt16LE(0x0b);
    const sectorsPerCluster = boot[0x0d];
    if (![512, 1024, 2048, 4096].includes(sectorBytes) || sectorsPerCluster === 0) throw new NtfsError('the NTFS boot sector has an invalid geometry');
    // Values above 0x80 mean 2^(256 - n) sectors per cluster (clusters above 64 KiB).
    const clusterBytes = sectorBytes * (sectorsPerCluster > 0x80 ? 2 ** (256 - sectorsPerCluster) : sectorsPerCluster);
    const perRecord = (value: number): number => (value >= 0x80 ? 2 ** (256 - value) : value * clusterBytes);
    const recordBytes = perRecord(boot[0x40]);
    const indexBlockBytes = perRecord(boot[0x44]);
    if (recordBytes < 512 || recordBytes > 65536 || indexBlockBytes < 512 || indexBlockBytes > 65536 || clusterBytes > 2 * 1024 * 1024) {
      throw new NtfsError('the NTFS boot sector declares unusable record sizes');
    }
    const tree = new NtfsTree(source, start, size, clusterBytes, recordBytes, indexBlockBytes);
    const mftOffset = Number(boot.readBigUInt64LE(0x30)) * clusterBytes;
    if (mftOffset + recordBytes > size) throw new NtfsError('the $MFT lies outside the volume');
    // Record 0 describes the MFT itself: its $DATA runs place every other record.
    const mftRecord = tree.fixup(await source.read(start + mftOffset, recordBytes), 'FILE');
    const data = tree.attributes(mftRecord).find((attribute) => attribute.type === ATTR_DATA && attribute.name === '');
    if (!data?.runs) throw new NtfsError('the $MFT has no data runs');
    tree.mftRuns = data.runs;
    return tree;
  }

  async kindOf(path: string): Promise<'file' | 'directory' | 'other' | undefined> {
    const found = await this.lookup(path);
    return found === undefined ? undefined : found.directory ? 'directory' : 'file';
  }

  async list(path: string): Promise<string[] | undefined> {
    const found = await this.lookup(path);
    if (!found?.directory) return undefined;
    return (await this.directory(found.record)).map((entry) => entry.name);
  }

  async readFile(path: string, maxBytes: number): Promise<Buffer | undefined> {
    const found = await this.lookup(path);
    if (!found || found.directory) return undefined;
    const data = (await this.attributesOf(found.record)).find((attribute) => attribute.type === ATTR_DATA && attribute.name === '');
    if (!data) return Buffer.alloc(0);
    if (data.resident) return data.value!.subarray(0, maxBytes);
    return this.readRuns(data.runs!, Math.min(maxBytes, data.dataSize ?? 0));
  }

  /** The volume label: the $VOLUME_NAME attribute (0x60) of $Volume (MFT record 3). */
  async volumeLabel(): Promise<string | undefined> {
    const name = (await this.attributesOf(VOLUME_RECORD)).find((attribute) => attribute.type === ATTR_VOLUME_NAME && attribute.resident);
    const label = name?.value?.toString('utf16le');
    return label ? label : undefined;
  }

  async close(): Promise<void> {}

  /** Case-insensitive walk from the root directory, as Windows resolves paths. */
  private async lookup(path: string): Promise<DirectoryEntry | undefined> {
    let current: DirectoryEntry = { name: '', record: ROOT_DIRECTORY_RECORD, directory: true };
    for (const part of path.split(/[\\/]+/).filter(Boolean)) {
      if (!current.directory) return undefined;
      const wanted = part.toUpperCase();
      const next = (await this.directory(current.record)).find((entry) => entry.name.toUpperCase() === wanted);
      if (!next) return undefined;
      current = next;
    }
    return current;
  }

  private async directory(recordNumber: number): Promise<DirectoryEntry[]> {
    const cached = this.directories.get(recordNumber);
    if (cached) return cached;
    const attributes = await this.attributesOf(recordNumber);
    const root = attributes.find((attribute) => attribute.type === ATTR_INDEX_ROOT && attribute.name === '$I30');
    if (!root?.value) throw new NtfsError(`MFT record ${recordNumber} is not a directory`);
    const entries: DirectoryEntry[] = [];
    const subnodes: number[] = [];
    // Index root: 16-byte header, then a node header whose offsets are relative to itself.
    this.indexEntries(root.value, 16, entries, subnodes);
    const allocation = attributes.find((attribute) => attribute.type === ATTR_INDEX_ALLOCATION && attribute.name === '$I30');
    const seen = new Set<number>();
    while (subnodes.length > 0 && allocation?.runs) {
      const vcnBlock = subnodes.pop()!;
      if (seen.has(vcnBlock)) continue;
      seen.add(vcnBlock);
      if (seen.size > MAX_INDEX_BLOCKS) throw new NtfsError(`the directory in MFT record ${recordNumber} has more than ${MAX_INDEX_BLOCKS} index blocks`);
      // Sub-node pointers count clusters, or 512-byte units when index blocks are smaller than a cluster.
      const unit = this.indexBlockBytes >= this.clusterBytes ? this.clusterBytes : 512;
      const block = this.fixup(await this.readRunsAt(allocation.runs, vcnBlock * unit, this.indexBlockBytes), 'INDX');
      this.indexEntries(block, 0x18, entries, subnodes);
    }
    this.directories.set(recordNumber, entries);
    return entries;
  }

  private indexEntries(bytes: Buffer, nodeHeader: number, entries: DirectoryEntry[], subnodes: number[]): void {
    let at = nodeHeader + bytes.readUInt32LE(nodeHeader);
    const end = Math.min(bytes.length, nodeHeader + bytes.readUInt32LE(nodeHeader + 4));
    while (at + 16 <= end) {
      const length = bytes.readUInt16LE(at + 8);
      const keyLength = bytes.readUInt16LE(at + 10);
      const flags = bytes.readUInt16LE(at + 12);
      if (length < 16 || at + length > end) break;
      if (flags & 1) subnodes.push(Number(bytes.readBigUInt64LE(at + length - 8)));
      if (flags & 2) break;
      if (keyLength >= 0x42) {
        const key = at + 16;
        const nameLength = bytes[key + 0x40];
        const namespace = bytes[key + 0x41];
        if (namespace !== DOS_NAMESPACE && key + 0x42 + nameLength * 2 <= at + length) {
          entries.push({
            name: bytes.toString('utf16le', key + 0x42, key + 0x42 + nameLength * 2),
            record: Number(bytes.readBigUInt64LE(at) & 0xffffffffffffn),
            directory: (bytes.readUInt32LE(key + 0x38) & 0x10000000) !== 0,
          });
        }
      }
      at += length;
    }
  }

  /** A file's attributes, those in its extension records included (non-resident ones merged by type and name). */
  private async attributesOf(recordNumber: number): Promise<Attribute[]> {
    const base = this.attributes(await this.record(recordNumber));
    const list = base.find((attribute) => attribute.type === ATTR_ATTRIBUTE_LIST);
    if (!list) return base;
    const bytes = list.resident ? list.value! : await this.readRuns(list.runs!, Math.min(list.dataSize ?? 0, 256 * 1024));
    const extensions = new Set<number>();
    for (let at = 0; at + 0x1a <= bytes.length; ) {
      const length = bytes.readUInt16LE(at + 4);
      if (length < 0x1a) break;
      const record = Number(bytes.readBigUInt64LE(at + 0x10) & 0xffffffffffffn);
      if (record !== recordNumber) extensions.add(record);
      at += length;
    }
    if (extensions.size > MAX_EXTENSION_RECORDS) throw new NtfsError(`MFT record ${recordNumber} spreads over more than ${MAX_EXTENSION_RECORDS} extension records`);
    const merged = base.filter((attribute) => attribute.type !== ATTR_ATTRIBUTE_LIST);
    for (const extension of extensions) {
      for (const attribute of this.attributes(await this.record(extension))) {
        const same = merged.find((candidate) => !candidate.resident && !attribute.resident && candidate.type === attribute.type && candidate.name === attribute.name);
        if (same) {
          same.runs = [...same.runs!, ...attribute.runs!].sort((a, b) => a.vcn - b.vcn);
          same.dataSize = Math.max(same.dataSize ?? 0, attribute.dataSize ?? 0);
        } else merged.push(attribute);
      }
    }
    return merged;
  }

  private async record(recordNumber: number): Promise<Buffer> {
    return this.fixup(await this.readRunsAt(this.mftRuns, recordNumber * this.recordBytes, this.recordBytes), 'FILE');
  }

  /** Applies the update sequence: the last two bytes of every 512-byte stride were swapped out on write. */
  private fixup(bytes: Buffer, magic: 'FILE' | 'INDX'): Buffer {
    if (bytes.toString('latin1', 0, 4) !== magic) throw new NtfsError(`an NTFS ${magic} record is damaged (bad signature)`);
    const offset = bytes.readUInt16LE(4);
    const count = bytes.readUInt16LE(6);
    if (count === 0 || offset + count * 2 > bytes.length || (count - 1) * 512 > bytes.length) throw new NtfsError(`an NTFS ${magic} record has a bad update sequence`);
    const out = Buffer.from(bytes);
    const usn = out.readUInt16LE(offset);
    for (let i = 1; i < count; i++) {
      const at = i * 512 - 2;
      if (out.readUInt16LE(at) !== usn) throw new NtfsError(`an NTFS ${magic} record is torn (update sequence mismatch)`);
      out.writeUInt16LE(bytes.readUInt16LE(offset + i * 2), at);
    }
    return out;
  }

  private attributes(record: Buffer): Attribute[] {
    const attributes: Attribute[] = [];
    let at = record.readUInt16LE(0x14);
    while (at + 16 <= record.length) {
      const type = record.readUInt32LE(at);
      if (type === ATTR_END) break;
      const length = record.readUInt32LE(at + 4);
      if (length < 16 || at + length > record.length) break;
      const nameLength = record[at + 9];
      const nameOffset = record.readUInt16LE(at + 0x0a);
      const name = record.toString('utf16le', at + nameOffset, Math.min(at + length, at + nameOffset + nameLength * 2));
      if (record[at + 8] === 0) {
        const valueLength = record.readUInt32LE(at + 0x10);
        const valueOffset = record.readUInt16LE(at + 0x14);
        if (valueOffset + valueLength <= length) attributes.push({ type, name, resident: true, value: record.subarray(at + valueOffset, at + valueOffset + valueLength) });
      } else {
        const runsOffset = record.readUInt16LE(at + 0x20);
        const startVcn = Number(record.readBigUInt64LE(at + 0x10));
        attributes.push({ type, name, resident: false, runs: decodeRuns(record.subarray(at + runsOffset, at + length), startVcn), dataSize: Number(record.readBigUInt64LE(at + 0x30)) });
      }
      at += length;
    }
    return attributes;
  }

  private readRuns(runs: Run[], length: number): Promise<Buffer> {
    return this.readRunsAt(runs, 0, length);
  }

  /** Reads `length` bytes at byte `offset` of a non-resident attribute. */
  private async readRunsAt(runs: Run[], offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const vcn = Math.floor(position / this.clusterBytes);
      const run = runs.find((candidate) => vcn >= candidate.vcn && vcn < candidate.vcn + candidate.clusters);
      if (!run) throw new NtfsError('an NTFS attribute is read past its data runs');
      const runEnd = (run.vcn + run.clusters) * this.clusterBytes;
      const take = Math.min(length - done, runEnd - position);
      if (run.lcn !== undefined) {
        const at = run.lcn * this.clusterBytes + (position - run.vcn * this.clusterBytes);
        if (at + take > this.size) throw new NtfsError('an NTFS data run points outside the volume');
        (await this.source.read(this.start + at, take)).copy(out, done);
      }
      done += take;
    }
    return out;
  }
}

/** Data runs: a header byte (low nibble: bytes of length, high: bytes of signed relative LCN), then those fields. */
function decodeRuns(bytes: Buffer, startVcn: number): Run[] {
  const runs: Run[] = [];
  let at = 0;
  let vcn = startVcn;
  let lcn = 0;
  while (at < bytes.length && bytes[at] !== 0 && runs.length < 65536) {
    const lengthBytes = bytes[at] & 0x0f;
    const offsetBytes = bytes[at] >> 4;
    if (lengthBytes === 0 || lengthBytes > 8 || offsetBytes > 8 || at + 1 + lengthBytes + offsetBytes > bytes.length) break;
    const clusters = Number(bytes.readUIntLE(at + 1, Math.min(lengthBytes, 6)));
    if (offsetBytes === 0) {
      runs.push({ vcn, clusters });
    } else {
      const delta = Number(readSigned(bytes, at + 1 + lengthBytes, offsetBytes));
      lcn += delta;
      runs.push({ vcn, clusters, lcn });
    }
    vcn += clusters;
    at += 1 + lengthBytes + offsetBytes;
  }
  return runs;
}

function readSigned(bytes: Buffer, at: number, length: number): bigint {
  let value = 0n;
  for (let i = length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[at + i]);
  if (bytes[at + length - 1] & 0x80) value -= 1n << BigInt(length * 8);
  return value;
}
