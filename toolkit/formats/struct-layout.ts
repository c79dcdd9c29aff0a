/**
 * Declarative on-disk structures: a format module lists its fields once (offset, type, size)
 * and decodes or encodes a whole structure from that table, so the layout can be checked against
 * the spec at a glance instead of being scattered through offset arithmetic.
 *
 * u64 fields decode to `number`: any value above 2^53 cannot be a valid offset or size in a file
 * we can read, so the precision lost there only ever makes an out-of-bounds value stay out of bounds.
 */
export type FieldType = 'u8' | 'u16' | 'u32' | 'u64' | 'bytes' | 'ascii';

export interface FieldSpec {
  readonly offset: number;
  readonly type: FieldType;
  /** Length for 'bytes' and 'ascii' fields. */
  readonly size?: number;
}

export type StructLayout = Readonly<Record<string, FieldSpec>>;
export type Endianness = 'be' | 'le';

type ValueOf<T extends FieldType> = T extends 'bytes' ? Buffer : T extends 'ascii' ? string : number;
export type Decoded<L extends StructLayout> = { [K in keyof L]: ValueOf<L[K]['type']> };

export function decodeStruct<L extends StructLayout>(buf: Buffer, layout: L, endian: Endianness): Decoded<L> {
  const out: Record<string, unknown> = {};
  for (const [name, field] of Object.entries(layout)) {
    const o = field.offset;
    switch (field.type) {
      case 'u8': out[name] = buf.readUInt8(o); break;
      case 'u16': out[name] = endian === 'be' ? buf.readUInt16BE(o) : buf.readUInt16LE(o); break;
      case 'u32': out[name] = endian === 'be' ? buf.readUInt32BE(o) : buf.readUInt32LE(o); break;
      case 'u64': out[name] = Number(endian === 'be' ? buf.readBigUInt64BE(o) : buf.readBigUInt64LE(o)); break;
      case 'bytes': out[name] = Buffer.from(buf.subarray(o, o + (field.size ?? 0))); break;
      case 'ascii': out[name] = buf.toString('latin1', o, o + (field.size ?? 0)); break;
    }
  }
  return out as Decoded<L>;
}

/** Writes the given fields into `buf` (fields not given are left as they are). */
export function encodeStruct<L extends StructLayout>(buf: Buffer, layout: L, values: Partial<Decoded<L>>, endian: Endianness): Buffer {
  for (const [name, value] of Object.entries(values as Record<string, unknown>)) {
    const field = layout[name];
    if (!field || value === undefined) continue;
    const o = field.offset;
    switch (field.type) {
      case 'u8': buf.writeUInt8(value as number, o); break;
      case 'u16': endian === 'be' ? buf.writeUInt16BE(value as number, o) : buf.writeUInt16LE(value as number, o); break;
      case 'u32': endian === 'be' ? buf.writeUInt32BE(value as number, o) : buf.writeUInt32LE(value as number, o); break;
      case 'u64': {
        const big = BigInt(value as number);
        endian === 'be' ? buf.writeBigUInt64BE(big, o) : buf.writeBigUInt64LE(big, o);
        break;
      }
      case 'bytes': (value as Buffer).copy(buf, o, 0, field.size ?? 0); break;
      case 'ascii': buf.write((value as string).padEnd(field.size ?? 0, '\0'), o, field.size ?? 0, 'latin1'); break;
    }
  }
  return buf;
}

/** Inclusive-exclusive byte range inside a file, for bounds and overlap checks. */
export interface ByteRange { start: number; end: number; what: string }

export function rangesOverlap(a: ByteRange, b: ByteRange): boolean {
  return a.start < b.end && b.start < a.end;
}
