/**
 * A minimal tar reader and writer: enough for OVA packages and EC2 bundles. Reads POSIX ustar
 * and GNU tar (GNU 'L' long names, base-256 sizes, PAX 'x' path/size records); writes ustar,
 * falling back to a GNU long-name entry for names over 100 bytes and base-256 for sizes over
 * 8 GiB. Reading lists entries by jumping from header to header, so a many-gigabyte member is
 * never read just to find the next one. Every header is checksummed and every size bounded.
 * Spec: POSIX.1-1988 ustar (pax(1) "ustar Interchange Format"), GNU tar manual "Basic Tar Format".
 */
import { ImageFormatError } from '../errors';
import type { ByteSink } from '../io/sink';
import type { RandomAccessSource } from '../io/source';

export const BLOCK = 512;

/** Header fields: offset, width. Numeric fields are octal text (or base-256 for sizes). */
const FIELD = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  checksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  prefix: [345, 155],
} as const;

export type TarEntryType = 'file' | 'directory' | 'other';

export interface TarEntry {
  name: string;
  type: TarEntryType;
  /** The raw typeflag character, for callers that care about links and devices. */
  typeflag: string;
  size: number;
  /** Where the member's bytes start in the source. */
  dataOffset: number;
}

export interface TarListOptions {
  /** Refuse archives with more members than this (default 10 000). */
  maxEntries?: number;
}

const MAX_LONG_NAME_BYTES = 4096;
const MAX_PAX_BYTES = 64 * 1024;

/** Parsed fields of one 512-byte header block. */
export interface TarHeader {
  name: string;
  typeflag: string;
  size: number;
  ustar: boolean;
}

/** True when the block is a tar header whose checksum holds (used for sniffing too). */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < BLOCK) return false;
  const stored = parseOctal(field(block, 'checksum'));
  return stored !== undefined && checksumMatches(block, stored);
}

export function parseTarHeader(block: Buffer, where: number): TarHeader {
  const stored = parseOctal(field(block, 'checksum'));
  if (stored === undefined || !checksumMatches(block, stored)) {
    throw new ImageFormatError('tar-header-checksum', `tar header at byte ${where} has a bad checksum; the archive is damaged or not a tar file`);
  }
  const magic = field(block, 'magic').toString('latin1');
  const ustar = magic.startsWith('ustar');
  const name = cString(field(block, 'name'));
  // Only POSIX ustar ("ustar\0") has a name prefix; GNU ("ustar  ") keeps other fields there.
  const prefix = magic === 'ustar\0' ? cString(field(block, 'prefix')) : '';
  const typeflag = String.fromCharCode(block[FIELD.typeflag[0]]);
  return { name: prefix ? `${prefix}/${name}` : name, typeflag, size: parseTarNumber(field(block, 'size'), where), ustar };
}

/** Lists the members of a tar archive held in `source`. */
export async function listTar(source: RandomAccessSource, options: TarListOptions = {}): Promise<TarEntry[]> {
  const maxEntries = options.maxEntries ?? 10_000;
  const entries: TarEntry[] = [];
  let offset = 0;
  let longName: string | undefined;
  let paxPath: string | undefined;
  let paxSize: number | undefined;
  for (;;) {
    if (offset + BLOCK > source.size) {
      // An archive may end without its end-of-archive blocks; it may not end inside a header.
      if (offset === source.size) break;
      throw new ImageFormatError('tar-truncated', `tar archive ends inside a header at byte ${offset}; the file is truncated`);
    }
    const block = await source.read(offset, BLOCK);
    if (block.every((b) => b === 0)) break; // end-of-archive
    const header = parseTarHeader(block, offset);
    const dataOffset = offset + BLOCK;
    if (dataOffset + header.size > source.size) {
      throw new ImageFormatError('tar-truncated', `tar member "${safe(header.name)}" needs ${header.size} bytes but the archive ends first; the file is truncated`);
    }
    offset = dataOffset + padded(header.size);
    switch (header.typeflag) {
      case 'L': // GNU: the next member's name
        if (header.size > MAX_LONG_NAME_BYTES) throw new ImageFormatError('tar-long-name', `tar long name of ${header.size} bytes is over ${MAX_LONG_NAME_BYTES}`);
        longName = cString(await source.read(dataOffset, header.size));
        continue;
      case 'K': // GNU: the next member's link name; not needed
        continue;
      case 'x': { // PAX: records for the next member
        if (header.size > MAX_PAX_BYTES) throw new ImageFormatError('tar-pax', `tar PAX header of ${header.size} bytes is over ${MAX_PAX_BYTES}`);
        const records = parsePax(await source.read(dataOffset, header.size), dataOffset);
        paxPath = records.get('path');
        const size = records.get('size');
        if (size !== undefined) {
          if (!/^\d{1,16}$/.test(size) || !Number.isSafeInteger(Number(size))) throw new ImageFormatError('tar-pax', `tar PAX size "${safe(size)}" is not a number`);
          paxSize = Number(size);
        }
        continue;
      }
      case 'g': // PAX global header: nothing we use
        continue;
    }
    let size = header.size;
    if (paxSize !== undefined) {
      // The real size is the PAX one; the header's is the octal-overflow placeholder.
      size = paxSize;
      offset = dataOffset + padded(size);
      if (dataOffset + size > source.size) throw new ImageFormatError('tar-truncated', `tar member "${safe(header.name)}" runs past the end of the archive`);
    }
    const name = paxPath ?? longName ?? header.name;
    longName = paxPath = paxSize = undefined;
    if (entries.length >= maxEntries) throw new ImageFormatError('tar-entries', `tar archive holds more than ${maxEntries} members`);
    const type: TarEntryType = header.typeflag === '0' || header.typeflag === '\0' || header.typeflag === '7' ? 'file' : header.typeflag === '5' ? 'directory' : 'other';
    entries.push({ name, type, typeflag: header.typeflag, size, dataOffset });
  }
  return entries;
}

/** The header block(s) for one regular file: a GNU long-name entry first when the name needs it. */
export function tarFileHeader(name: string, size: number, mtime = Math.floor(Date.now() / 1000)): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  if (nameBytes.length === 0) throw new Error('tar member needs a name');
  if (nameBytes.length <= 100) return headerBlock({ name: nameBytes, size, mtime, typeflag: '0', gnu: false });
  const longName = Buffer.concat([nameBytes, Buffer.alloc(1)]);
  return Buffer.concat([
    headerBlock({ name: Buffer.from('././@LongLink'), size: longName.length, mtime: 0, typeflag: 'L', gnu: true }),
    longName,
    Buffer.alloc(padded(longName.length) - longName.length),
    headerBlock({ name: nameBytes.subarray(0, 100), size, mtime, typeflag: '0', gnu: true }),
  ]);
}

/** Bytes of zero padding after a member of `size` bytes. */
export function tarPadding(size: number): number {
  return padded(size) - size;
}

/** Two zero blocks end an archive. */
export const TAR_END_BYTES = 2 * BLOCK;

/** Writes members in order into a sink. */
export class TarWriter {
  /** Bytes written so far: where the next header goes. */
  private position = 0;

  constructor(private readonly sink: ByteSink) {}

  /** Adds a member holding `data`; returns the offset of its bytes in the archive. */
  async addBuffer(name: string, data: Buffer): Promise<number> {
    return this.addEntry(name, data.length, async (sink) => sink.write(data));
  }

  /**
   * `writeBody` must write exactly `size` bytes; that is checked, since the header already
   * promised it. Returns the offset of the member's bytes in the archive.
   */
  async addEntry(name: string, size: number, writeBody: (sink: ByteSink) => Promise<void>): Promise<number> {
    const header = tarFileHeader(name, size);
    await this.emit(header);
    const counting = new CountingSink(this.sink);
    await writeBody(counting);
    this.position += counting.count;
    if (counting.count !== size) throw new Error(`tar member ${name} was declared as ${size} bytes but ${counting.count} were written`);
    await this.emitZeros(tarPadding(size));
    return this.position - padded(size);
  }

  /**
   * A member whose size is known only once written: its header goes out with size 0 and is
   * rewritten with the real size by `patch` (e.g. through a sink's patchHead, when the header
   * lies in the held head). A header's length does not depend on the size, so the rewrite fits.
   */
  async addEntryOfUnknownSize(
    name: string,
    writeBody: (sink: ByteSink) => Promise<void>,
    patch: (offset: number, header: Buffer) => Promise<void>,
  ): Promise<number> {
    const mtime = Math.floor(Date.now() / 1000);
    const headerOffset = this.position;
    await this.emit(tarFileHeader(name, 0, mtime));
    const counting = new CountingSink(this.sink);
    await writeBody(counting);
    this.position += counting.count;
    await this.emitZeros(tarPadding(counting.count));
    await patch(headerOffset, tarFileHeader(name, counting.count, mtime));
    return counting.count;
  }

  async finish(): Promise<void> {
    await this.emitZeros(TAR_END_BYTES);
  }

  private async emit(bytes: Buffer): Promise<void> {
    await this.sink.write(bytes);
    this.position += bytes.length;
  }

  private async emitZeros(length: number): Promise<void> {
    await this.sink.writeZeros(length);
    this.position += length;
  }
}

class CountingSink implements ByteSink {
  count = 0;
  constructor(private readonly inner: ByteSink) {}
  get name() { return this.inner.name; }
  async write(chunk: Buffer) { this.count += chunk.length; await this.inner.write(chunk); }
  async writeZeros(length: number) { this.count += length; await this.inner.writeZeros(length); }
  finish(): Promise<{ size: number }> { throw new Error('a tar member cannot finish the archive'); }
  abort() { return this.inner.abort(); }
}

function headerBlock(h: { name: Buffer; size: number; mtime: number; typeflag: string; gnu: boolean }): Buffer {
  const block = Buffer.alloc(BLOCK);
  h.name.copy(block, FIELD.name[0]);
  writeOctal(block, 'mode', 0o644);
  writeOctal(block, 'uid', 0);
  writeOctal(block, 'gid', 0);
  if (h.size <= 0o77777777777) writeOctal(block, 'size', h.size);
  else writeBase256(block, h.size);
  writeOctal(block, 'mtime', h.mtime);
  block.write(h.typeflag, FIELD.typeflag[0], 'latin1');
  // GNU long names need GNU magic for GNU tar to honour them; everything else is plain ustar.
  if (h.gnu) block.write('ustar  \0', FIELD.magic[0], 'latin1');
  else block.write('ustar\x0000', FIELD.magic[0], 'latin1');
  block.write('root', FIELD.uname[0], 'latin1');
  block.write('root', FIELD.gname[0], 'latin1');
  block.fill(0x20, FIELD.checksum[0], FIELD.checksum[0] + FIELD.checksum[1]);
  const sum = block.reduce((total, b) => total + b, 0);
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, FIELD.checksum[0], 'latin1');
  return block;
}

function field(block: Buffer, name: keyof typeof FIELD): Buffer {
  const [offset, width] = FIELD[name];
  return block.subarray(offset, offset + width);
}

function writeOctal(block: Buffer, name: keyof typeof FIELD, value: number): void {
  const [offset, width] = FIELD[name];
  block.write(`${value.toString(8).padStart(width - 1, '0')}\0`, offset, 'latin1');
}

function writeBase256(block: Buffer, value: number): void {
  const [offset, width] = FIELD.size;
  let v = BigInt(value);
  for (let i = offset + width - 1; i > offset; i--, v >>= 8n) block[i] = Number(v & 0xffn);
  block[offset] = 0x80;
}

function checksumMatches(block: Buffer, stored: number): boolean {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= FIELD.checksum[0] && i < FIELD.checksum[0] + FIELD.checksum[1] ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b; // some old tars summed signed chars
  }
  return stored === unsigned || stored === signed;
}

function parseOctal(bytes: Buffer): number | undefined {
  const text = bytes.toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (!/^[0-7]{1,12}$/.test(text)) return text === '' ? 0 : undefined;
  return parseInt(text, 8);
}

/** A numeric header field: octal text, or GNU base-256 for values that do not fit (sizes over 8 GiB). */
export function parseTarNumber(bytes: Buffer, where: number): number {
  if (bytes[0] & 0x80) {
    // GNU base-256: big-endian binary in the remaining bytes (first byte's low bits included).
    if (bytes[0] !== 0x80) throw new ImageFormatError('tar-size', `tar header at byte ${where} has a negative or oversized size`);
    let value = 0n;
    for (let i = 1; i < bytes.length; i++) value = (value << 8n) | BigInt(bytes[i]);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ImageFormatError('tar-size', `tar header at byte ${where} declares an impossible size`);
    return Number(value);
  }
  const value = parseOctal(bytes);
  if (value === undefined) throw new ImageFormatError('tar-size', `tar header at byte ${where} has a size that is not an octal number`);
  return value;
}

/** PAX records: "<length> <key>=<value>\n", length counting the whole record. */
export function parsePax(data: Buffer, where: number): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length && data[at] !== 0) {
    const space = data.indexOf(0x20, at);
    const length = space > at && space - at <= 8 ? Number(data.toString('latin1', at, space)) : NaN;
    if (!Number.isInteger(length) || length <= space - at + 1 || at + length > data.length || data[at + length - 1] !== 0x0a) {
      throw new ImageFormatError('tar-pax', `tar PAX header at byte ${where} is malformed`);
    }
    const record = data.toString('utf8', space + 1, at + length - 1);
    const eq = record.indexOf('=');
    if (eq <= 0) throw new ImageFormatError('tar-pax', `tar PAX header at byte ${where} is malformed`);
    records.set(record.slice(0, eq), record.slice(eq + 1));
    at += length;
  }
  return records;
}

function cString(bytes: Buffer): string {
  const nul = bytes.indexOf(0);
  return bytes.toString('utf8', 0, nul < 0 ? bytes.length : nul);
}

function padded(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

function safe(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 100 ? `${clean.slice(0, 100)}...` : clean;
}
