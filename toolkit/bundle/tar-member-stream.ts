/**
 * Reads the one file of a tar stream as it goes by, for EC2 bundles: the tar is never stored, so
 * it is parsed from chunks in arrival order and the member's bytes are handed on as they come.
 *
 * Understood: ustar and GNU headers, GNU long names ('L'), PAX records ('x': path, size), GNU
 * base-256 sizes, and old-style GNU sparse members ('S', what `tar --format=gnu -S` writes),
 * whose holes are handed on as zero runs without being materialised. Refused: a second file,
 * links, devices, PAX sparse formats, and anything but zero bytes after the end of the archive.
 * Spec: GNU tar manual, "Basic Tar Format" and "Storing Sparse Files".
 */
import { ImageFormatError } from '../errors';
import { BLOCK, parsePax, parseTarHeader, parseTarNumber } from './tar';

/** Where the member's bytes go. Holes of sparse members arrive as zero runs. */
export interface MemberOutput {
  write(chunk: Buffer): Promise<void>;
  writeZeros(length: number): Promise<void>;
}

export interface TarMemberInfo {
  name: string;
  /** The file's size once unpacked (a sparse member's real size). */
  size: number;
  sparse: boolean;
}

interface Segment {
  offset: number;
  length: number;
}

const MAX_META_BYTES = 64 * 1024;
/** GNU tar pads an archive to its record size (10 KiB by default); more trailing zeros than this is not a tar. */
const MAX_TRAILER_BYTES = 1024 * 1024;
/** Sparse map entries in the header and in each extension block. */
const SPARSE_IN_HEADER = 4;
const SPARSE_IN_EXTENSION = 21;

type Phase =
  | { kind: 'header' }
  | { kind: 'meta'; typeflag: string; size: number; remaining: number; collected: Buffer[] }
  | { kind: 'sparse-extension'; info: TarMemberInfo; segments: Segment[]; stored: number }
  | { kind: 'data'; remaining: number; padding: number }
  | { kind: 'padding'; remaining: number }
  | { kind: 'trailer' };

export class TarMemberStream {
  private phase: Phase = { kind: 'header' };
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private longName?: string;
  private paxPath?: string;
  private paxSize?: number;
  private position = 0;
  private trailerBytes = 0;
  private member?: TarMemberInfo;
  /** For sparse members: the segments still to come and where the output stands. */
  private segments: Segment[] = [];
  private segmentLeft = 0;
  private outputAt = 0;

  constructor(
    private readonly output: MemberOutput,
    /** Called once the member's header is read, before any of its bytes: a chance to refuse it. */
    private readonly onMember: (info: TarMemberInfo) => void = () => undefined,
  ) {}

  /** The member found, once its header has gone by. */
  get info(): TarMemberInfo | undefined {
    return this.member;
  }

  async push(chunk: Buffer): Promise<void> {
    let at = 0;
    while (at < chunk.length) {
      const phase = this.phase;
      if (phase.kind === 'data') {
        const take = Math.min(phase.remaining, chunk.length - at);
        await this.emitStored(chunk.subarray(at, at + take));
        at += take;
        phase.remaining -= take;
        if (phase.remaining === 0) await this.endMember(phase.padding);
        continue;
      }
      if (phase.kind === 'padding') {
        const take = Math.min(phase.remaining, chunk.length - at);
        at += take;
        phase.remaining -= take;
        if (phase.remaining === 0) this.phase = { kind: 'header' };
        continue;
      }
      if (phase.kind === 'trailer') {
        const rest = chunk.subarray(at);
        if (rest.some((b) => b !== 0)) this.refuse('tar-trailer', `the bundle's tar stream has data after its end at byte ${this.position + at}; a bundle holds exactly one file`);
        this.trailerBytes += rest.length;
        if (this.trailerBytes > MAX_TRAILER_BYTES) this.refuse('tar-trailer', `the bundle's tar stream goes on for more than ${MAX_TRAILER_BYTES} bytes after its end`);
        at = chunk.length;
        continue;
      }
      // Header-like phases work on whole 512-byte blocks.
      const need = BLOCK - this.pendingBytes;
      const take = Math.min(need, chunk.length - at);
      this.pending.push(chunk.subarray(at, at + take));
      this.pendingBytes += take;
      at += take;
      if (this.pendingBytes < BLOCK) continue;
      const block = Buffer.concat(this.pending, BLOCK);
      this.pending = [];
      this.pendingBytes = 0;
      await this.onBlock(block, this.position + at - BLOCK);
    }
    this.position += chunk.length;
  }

  /** The stream has ended: it must have held its one member, complete. */
  end(): TarMemberInfo {
    const phase = this.phase;
    if (phase.kind === 'data' || phase.kind === 'meta' || phase.kind === 'sparse-extension' || this.pendingBytes > 0) {
      this.refuse('tar-truncated', 'the bundle\'s tar stream ends inside its file; the bundle is truncated');
    }
    if (!this.member) this.refuse('tar-empty', 'the bundle\'s tar stream holds no file');
    return this.member;
  }

  private async onBlock(block: Buffer, where: number): Promise<void> {
    const phase = this.phase;
    if (phase.kind === 'meta') {
      phase.collected.push(block);
      phase.remaining -= BLOCK;
      if (phase.remaining <= 0) this.endMeta(phase);
      return;
    }
    if (phase.kind === 'sparse-extension') {
      const more = this.readSparseEntries(block, 0, SPARSE_IN_EXTENSION, phase.segments);
      if (block[504] === 0 || !more) await this.startSparseData(phase.info, phase.segments, phase.stored);
      return;
    }
    if (block.every((b) => b === 0)) {
      this.phase = { kind: 'trailer' };
      this.trailerBytes = BLOCK;
      return;
    }
    const header = parseTarHeader(block, where);
    switch (header.typeflag) {
      case 'L':
      case 'x':
      case 'g':
      case 'K':
        if (header.size > MAX_META_BYTES) this.refuse('tar-meta', `tar metadata of ${header.size} bytes at byte ${where} is over ${MAX_META_BYTES}`);
        if (header.size === 0) return;
        this.phase = { kind: 'meta', typeflag: header.typeflag, size: header.size, remaining: Math.ceil(header.size / BLOCK) * BLOCK, collected: [] };
        return;
      case '0':
      case '\0':
      case '7':
      case 'S':
        break;
      default:
        this.refuse('tar-member-type', `the bundle's tar stream holds a member of type '${header.typeflag.replace(/[^\x20-\x7e]/g, '?')}'; a bundle holds one regular file`);
    }
    if (this.member) this.refuse('tar-members', 'the bundle\'s tar stream holds more than one file; a bundle holds exactly one');
    const name = this.paxPath ?? this.longName ?? header.name;
    const stored = this.paxSize ?? header.size;
    this.longName = this.paxPath = this.paxSize = undefined;
    if (header.typeflag !== 'S') {
      await this.startMember({ name, size: stored, sparse: false }, stored);
      return;
    }
    // Old GNU sparse: the map starts in the header (offset 386), the real size at 483.
    const segments: Segment[] = [];
    const more = this.readSparseEntries(block, 386, SPARSE_IN_HEADER, segments);
    const info: TarMemberInfo = { name, size: parseTarNumber(block.subarray(483, 495), where), sparse: true };
    if (block[482] !== 0 && more) {
      this.phase = { kind: 'sparse-extension', info, segments, stored };
      return;
    }
    await this.startSparseData(info, segments, stored);
  }

  /** Reads up to `count` (offset, length) pairs; false when an empty entry ended the map early. */
  private readSparseEntries(block: Buffer, start: number, count: number, into: Segment[]): boolean {
    for (let i = 0; i < count; i++) {
      const at = start + i * 24;
      if (block[at] === 0) return false;
      const offset = parseTarNumber(block.subarray(at, at + 12), at);
      const length = parseTarNumber(block.subarray(at + 12, at + 24), at);
      if (into.length > 0 && offset < into[into.length - 1].offset + into[into.length - 1].length) {
        this.refuse('tar-sparse-map', 'the bundle\'s sparse tar member has overlapping or unordered segments');
      }
      if (into.length >= 1_000_000) this.refuse('tar-sparse-map', 'the bundle\'s sparse tar member has too many segments');
      into.push({ offset, length });
    }
    return true;
  }

  private async startSparseData(info: TarMemberInfo, segments: Segment[], stored: number): Promise<void> {
    const total = segments.reduce((sum, s) => sum + s.length, 0);
    if (total !== stored) this.refuse('tar-sparse-map', `the bundle's sparse tar member stores ${stored} bytes but its map adds up to ${total}`);
    const last = segments[segments.length - 1];
    if (last && last.offset + last.length > info.size) this.refuse('tar-sparse-map', 'the bundle\'s sparse tar member has a segment past its real size');
    this.segments = segments.filter((s) => s.length > 0);
    this.segmentLeft = 0;
    this.outputAt = 0;
    await this.startMember(info, stored);
  }

  private async startMember(info: TarMemberInfo, stored: number): Promise<void> {
    this.member = info;
    this.onMember(info);
    const padding = Math.ceil(stored / BLOCK) * BLOCK - stored;
    if (stored === 0) {
      await this.endMember(padding);
      return;
    }
    this.phase = { kind: 'data', remaining: stored, padding };
  }

  /** Hands on stored bytes; for a sparse member, with the holes before each segment as zeros. */
  private async emitStored(bytes: Buffer): Promise<void> {
    if (!this.member!.sparse) {
      await this.output.write(bytes);
      return;
    }
    let at = 0;
    while (at < bytes.length) {
      if (this.segmentLeft === 0) {
        const next = this.segments.shift()!;
        if (next.offset > this.outputAt) await this.output.writeZeros(next.offset - this.outputAt);
        this.outputAt = next.offset;
        this.segmentLeft = next.length;
      }
      const take = Math.min(this.segmentLeft, bytes.length - at);
      await this.output.write(bytes.subarray(at, at + take));
      at += take;
      this.segmentLeft -= take;
      this.outputAt += take;
    }
  }

  private async endMember(padding: number): Promise<void> {
    const member = this.member!;
    if (member.sparse && this.outputAt < member.size) await this.output.writeZeros(member.size - this.outputAt);
    this.phase = padding > 0 ? { kind: 'padding', remaining: padding } : { kind: 'header' };
  }

  private endMeta(phase: Extract<Phase, { kind: 'meta' }>): void {
    const data = Buffer.concat(phase.collected).subarray(0, phase.size);
    this.phase = { kind: 'header' };
    if (phase.typeflag === 'L') {
      const nul = data.indexOf(0);
      this.longName = data.toString('utf8', 0, nul < 0 ? data.length : nul);
    } else if (phase.typeflag === 'x') {
      const records = parsePax(data, this.position);
      if ([...records.keys()].some((k) => k.startsWith('GNU.sparse'))) {
        this.refuse('tar-pax-sparse', 'the bundle\'s tar stream uses a PAX sparse format; bundle the image with GNU tar format (tar --format=gnu)');
      }
      this.paxPath = records.get('path');
      const size = records.get('size');
      if (size !== undefined) {
        if (!/^\d{1,16}$/.test(size) || !Number.isSafeInteger(Number(size))) this.refuse('tar-pax', 'the bundle\'s tar PAX size is not a number');
        this.paxSize = Number(size);
      }
    }
  }

  private refuse(check: string, message: string): never {
    throw new ImageFormatError(check, message);
  }
}
