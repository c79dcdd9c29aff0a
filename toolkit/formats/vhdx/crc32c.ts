/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of VHDX headers, region
 * tables and log entries. Table-driven, one byte at a time: it only ever runs over a few
 * 64 KiB structures per image.
 */
const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32c(data: Buffer, initial = 0): number {
  let crc = ~initial >>> 0;
  for (let i = 0; i < data.length; i++) crc = TABLE[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return ~crc >>> 0;
}

/** The VHDX rule: CRC-32C of the whole structure with its 4-byte checksum field taken as zero. */
export function vhdxChecksum(structure: Buffer, checksumOffset: number): number {
  const copy = Buffer.from(structure);
  copy.fill(0, checksumOffset, checksumOffset + 4);
  return crc32c(copy);
}
