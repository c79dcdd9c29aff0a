/**
 * The aws-chunked body encoding with an unsigned payload and a checksum trailer
 * (x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER), which botocore 1.36+ and other
 * SDKs send for PutObject/UploadPart over https by default:
 *
 *   <size in hex>\r\n<size bytes>\r\n ... 0\r\n<trailer-name>:<value>\r\n\r\n
 *
 * s3rver would store the framing as the object's bytes; the embedded S3 decodes it first and
 * checks the trailing checksum over the decoded bytes.
 * https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html
 */
import { createHash, type Hash } from 'crypto';
import { crc32 } from 'zlib';
import { S3Error } from './s3-auth';

const MAX_LINE = 4096;
const malformed = (why: string) => new S3Error('IncompleteBody', `The aws-chunked request body is malformed: ${why}`, 400);

/** Decodes an aws-chunked body; after the last chunk, `trailers` holds the trailer lines (names lower-cased). */
export class AwsChunkedDecoder {
  readonly trailers = new Map<string, string>();

  async *decode(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    let buf: Buffer = Buffer.alloc(0);
    let state = 'size' as 'size' | 'data' | 'data-end' | 'trailer' | 'done';
    let remaining = 0;
    for await (const chunk of source) {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        if (state === 'size' || state === 'trailer') {
          const end = buf.indexOf('\r\n');
          if (end < 0) {
            if (buf.length > MAX_LINE) throw malformed('a chunk header or trailer line is too long');
            break;
          }
          const line = buf.subarray(0, end).toString('latin1');
          buf = buf.subarray(end + 2);
          if (state === 'size') {
            const hex = line.split(';')[0].trim();
            if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw malformed(`chunk size ${JSON.stringify(hex.slice(0, 20))} is not hexadecimal`);
            remaining = parseInt(hex, 16);
            state = remaining === 0 ? 'trailer' : 'data';
          } else if (line === '') {
            state = 'done';
          } else {
            const colon = line.indexOf(':');
            if (colon <= 0) throw malformed(`trailer line ${JSON.stringify(line.slice(0, 40))} has no name`);
            this.trailers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
          }
        } else if (state === 'data') {
          if (buf.length === 0) break;
          const take = Math.min(remaining, buf.length);
          yield buf.subarray(0, take);
          remaining -= take;
          buf = buf.subarray(take);
          if (remaining === 0) state = 'data-end';
        } else if (state === 'data-end') {
          if (buf.length < 2) break;
          if (buf[0] !== 0x0d || buf[1] !== 0x0a) throw malformed('a chunk is longer than its declared size');
          buf = buf.subarray(2);
          state = 'size';
        } else {
          if (buf.length > 0) throw malformed('bytes after the final trailer');
          break;
        }
      }
    }
    // Some clients end the trailer section without the final empty line.
    if (state !== 'done' && !(state === 'trailer' && buf.length === 0)) throw malformed('the body ended before its last chunk');
  }
}

const CRC32C_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** A running checksum of the kind a trailer names (x-amz-checksum-crc32, -crc32c, -sha1, -sha256). */
export interface TrailerChecksum {
  update(data: Buffer): void;
  /** Base64, as the trailer carries it. */
  digest(): string;
}

const crcDigest = (value: number) => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0);
  return out.toString('base64');
};

export function trailerChecksum(name: string): TrailerChecksum | undefined {
  switch (name) {
    case 'x-amz-checksum-crc32': {
      let value = 0;
      return { update: (d) => void (value = crc32(d, value)), digest: () => crcDigest(value) };
    }
    case 'x-amz-checksum-crc32c': {
      let c = ~0;
      return {
        update: (d) => {
          for (let i = 0; i < d.length; i++) c = CRC32C_TABLE[(c ^ d[i]) & 0xff] ^ (c >>> 8);
        },
        digest: () => crcDigest(~c),
      };
    }
    case 'x-amz-checksum-sha1':
    case 'x-amz-checksum-sha256': {
      const hash: Hash = createHash(name.endsWith('sha1') ? 'sha1' : 'sha256');
      return { update: (d) => void hash.update(d), digest: () => hash.digest('base64') };
    }
    default:
      return undefined;
  }
}
