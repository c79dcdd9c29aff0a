/**
 * The OVA manifest (".mf"): one line per file, "SHA256(name)= hex" (SHA1 and SHA512 too; OVF
 * DSP0243 §5.1). The OVF descriptor is small and read whole anyway, so its digest is verified
 * on open; disk digests would need a full extra read of each disk and are left to the caller.
 */
import { createHash } from 'crypto';
import { refusal } from '../safety-checks';
import { ovaChecks } from './checks';

export const MAX_MANIFEST_BYTES = 64 * 1024;

const ALGORITHMS: Record<string, string> = { SHA1: 'sha1', SHA256: 'sha256', SHA512: 'sha512' };
const LINE = /^(SHA1|SHA256|SHA512)\(([^()]+)\)\s*=\s*([0-9a-fA-F]+)$/;

export interface ManifestEntry { algorithm: string; name: string; digest: string }

export function parseManifest(text: string): Map<string, ManifestEntry> {
  const entries = new Map<string, ManifestEntry>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const match = LINE.exec(line);
    if (!match) throw refusal(ovaChecks.manifest, `OVA manifest line ${i + 1} is not "ALGORITHM(file)= digest"; the package is damaged`);
    const [, algorithm, name, digest] = match;
    entries.set(name, { algorithm, name, digest: digest.toLowerCase() });
  });
  return entries;
}

export function verifyDigest(entry: ManifestEntry, bytes: Buffer): void {
  const actual = createHash(ALGORITHMS[entry.algorithm]).update(bytes).digest('hex');
  if (actual !== entry.digest) {
    throw refusal(ovaChecks.manifestDigest, `OVA manifest's ${entry.algorithm} digest of ${JSON.stringify(entry.name)} does not match its contents; the package is damaged or was altered`);
  }
}
