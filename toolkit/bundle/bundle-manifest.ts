/**
 * The EC2 machine-image bundle manifest (version 2007-10-10), as written by ec2-bundle-image and
 * euca-bundle-image: see ../shared/reference/FORMATS.md §2. The signature covers the raw text of
 * `<machine_configuration>…</machine_configuration>` followed at once by `<image>…</image>`, so
 * the two sections are cut out of the document exactly as they appear and every field is read
 * from that same text: what is verified is what is acted on.
 */
import { createVerify, X509Certificate } from 'crypto';
import { XMLParser } from 'fast-xml-parser';
import { ManifestError } from './import-manifest';

export type BundleImageType = 'machine' | 'kernel' | 'ramdisk';

export interface BundlePart {
  index: number;
  filename: string;
  /** SHA-1 of the part's bytes, lowercase hex. */
  sha1: string;
}

export interface BundleManifest {
  version: string;
  bundler?: { name?: string; version?: string; release?: string };
  architecture: string;
  kernelId?: string;
  ramdiskId?: string;
  productCodes: string[];
  blockDeviceMappings: { virtual: string; device: string }[];
  name: string;
  user?: string;
  imageType: BundleImageType;
  /** SHA-1 of the uncompressed tar stream, lowercase hex. */
  tarSha1: string;
  /** Size of the image file in bytes, once unbundled. */
  size: number;
  /** Size of the encrypted bundle (all parts) in bytes, when the producer wrote it. */
  bundledSize?: number;
  /** RSA-wrapped AES key and IV for the cloud (hex). */
  ec2EncryptedKey: string;
  ec2EncryptedIv: string;
  userEncryptedKey?: string;
  userEncryptedIv?: string;
  parts: BundlePart[];
  /** Hex RSA-SHA1 signature, or undefined when the producer wrote UNSIGNED. */
  signature?: string;
  /** The exact text the signature covers. */
  signedText: string;
}

/** Manifests are small; a larger document is refused before parsing. */
export const MAX_BUNDLE_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_BUNDLE_PARTS = 100_000;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  processEntities: false,
  isArray: (name) => ['part', 'mapping', 'block_device_mapping', 'product_code'].includes(name),
});

type Node = Record<string, unknown>;

function fail(message: string): never {
  throw new ManifestError(`the bundle manifest ${message}`);
}

/** The one occurrence of `<tag>…</tag>` in `body`, raw; a second one is refused (a signature could cover one and the parser read the other). */
function rawSection(body: string, tag: string): string {
  const open = new RegExp(`<${tag}(\\s[^>]*)?>`, 'g');
  const opens = [...body.matchAll(open)];
  if (opens.length === 0) fail(`has no <${tag}> element`);
  if (opens.length > 1) fail(`has ${opens.length} <${tag}> elements; exactly one is allowed`);
  const start = opens[0].index!;
  const closeTag = `</${tag}>`;
  const end = body.indexOf(closeTag, start);
  if (end < 0 || body.indexOf(closeTag, end + 1) >= 0) fail(`has no single closing </${tag}>`);
  return body.slice(start, end + closeTag.length);
}

function text(node: unknown, what: string): string {
  if (typeof node === 'string') return node;
  if (node && typeof node === 'object' && '#text' in (node as Node)) return String((node as Node)['#text']);
  return fail(`has no ${what}`);
}

function optionalText(node: unknown): string | undefined {
  if (node === undefined || node === null || node === '') return undefined;
  if (typeof node === 'object' && !('#text' in (node as Node))) return undefined;
  return text(node, '');
}

function wholeNumber(node: unknown, what: string): number {
  const s = text(node, what);
  if (!/^\d{1,16}$/.test(s)) fail(`field ${what} "${s.slice(0, 40)}" is not a whole number`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) fail(`field ${what} ${s} is too large`);
  return n;
}

function hex(node: unknown, what: string, length?: number): string {
  const s = text(node, what).toLowerCase();
  if (!/^[0-9a-f]+$/.test(s) || (length !== undefined && s.length !== length)) {
    fail(`field ${what} is not ${length ? `${length} hex digits` : 'hex'}`);
  }
  return s;
}

function sha1Digest(node: unknown, what: string): string {
  if (node && typeof node === 'object') {
    const algorithm = (node as Node)['@algorithm'];
    if (algorithm !== undefined && String(algorithm).toUpperCase() !== 'SHA1') fail(`${what} uses digest algorithm ${String(algorithm)}; only SHA1 is defined`);
  }
  return hex(node, what, 40);
}

/** Parses a bundle manifest. Checks the document's shape; the signature is checked by verifyBundleSignature. */
export function parseBundleManifest(xml: string | Buffer): BundleManifest {
  const body = typeof xml === 'string' ? xml : xml.toString('utf8');
  if (Buffer.byteLength(body) > MAX_BUNDLE_MANIFEST_BYTES) fail(`is larger than ${MAX_BUNDLE_MANIFEST_BYTES} bytes`);
  // Comments, CDATA and declarations could show the parser one text and the signature another.
  if (/<!DOCTYPE|<!ENTITY|<!--|<!\[CDATA\[/i.test(body)) fail('must not contain a DOCTYPE, entities, comments or CDATA sections');
  const machineText = rawSection(body, 'machine_configuration');
  const imageText = rawSection(body, 'image');
  let doc: Node;
  try {
    doc = parser.parse(body, true) as Node;
  } catch (err) {
    return fail(`is not well-formed XML: ${(err as Error).message}`);
  }
  const manifest = doc.manifest as Node | undefined;
  if (!manifest || typeof manifest !== 'object') fail('has no <manifest> root element');
  const version = text(manifest.version, '<version>');
  if (version !== '2007-10-10') fail(`version is ${version}; only 2007-10-10 is understood`);

  const machine = (manifest.machine_configuration ?? {}) as Node;
  const image = manifest.image as Node;
  if (!image || typeof image !== 'object') fail('has no <image> element');

  const imageType = text(image.type ?? 'machine', '<image><type>') as BundleImageType;
  if (!['machine', 'kernel', 'ramdisk'].includes(imageType)) fail(`image type is "${imageType}"; expected machine, kernel or ramdisk`);
  const encryptedKey = image.ec2_encrypted_key as Node | string | undefined;
  if (encryptedKey && typeof encryptedKey === 'object' && encryptedKey['@algorithm'] && String(encryptedKey['@algorithm']).toUpperCase() !== 'AES-128-CBC') {
    fail(`key algorithm is ${String(encryptedKey['@algorithm'])}; only AES-128-CBC is defined`);
  }

  const partsNode = image.parts as Node | undefined;
  const partList = (partsNode?.part ?? []) as Node[];
  if (partList.length === 0) fail('lists no parts');
  if (partList.length > MAX_BUNDLE_PARTS) fail(`lists ${partList.length} parts; at most ${MAX_BUNDLE_PARTS} are accepted`);
  const declaredCount = partsNode?.['@count'];
  if (declaredCount !== undefined && Number(declaredCount) !== partList.length) fail(`says it has ${String(declaredCount)} parts but lists ${partList.length}`);
  const parts = partList.map((p) => {
    const index = wholeNumber(p['@index'], 'part index');
    const filename = text(p.filename, `part ${index} filename`);
    // Part names are keys next to the manifest; a path could reach another prefix or bucket.
    if (!/^[A-Za-z0-9._+-][A-Za-z0-9._+=@-]*$/.test(filename) || filename.includes('..')) fail(`part ${index} has an unsafe filename "${filename.slice(0, 80)}"`);
    return { index, filename, sha1: sha1Digest(p.digest, `part ${index} digest`) };
  });
  parts.sort((a, b) => a.index - b.index);
  parts.forEach((p, i) => {
    if (p.index !== i) fail(`part indexes must run 0..${parts.length - 1} without gaps; found ${p.index} at position ${i}`);
  });

  const mappingsNode = (machine.block_device_mapping ?? machine.block_device_mappings) as unknown;
  const mappingNodes: Node[] = [];
  for (const m of Array.isArray(mappingsNode) ? mappingsNode : mappingsNode ? [mappingsNode] : []) {
    const inner = (m as Node).mapping ?? (m as Node).block_device_mapping;
    if (Array.isArray(inner)) mappingNodes.push(...(inner as Node[]));
    else if ((m as Node).virtual !== undefined) mappingNodes.push(m as Node);
  }
  const signatureText = text(manifest.signature ?? '', '<signature>');
  const bundlerNode = manifest.bundler as Node | undefined;
  const productCodesNode = machine.product_codes as Node | undefined;
  return {
    version,
    bundler: bundlerNode
      ? { name: optionalText(bundlerNode.name), version: optionalText(bundlerNode.version), release: optionalText(bundlerNode.release) }
      : undefined,
    architecture: text(machine.architecture ?? 'x86_64', '<architecture>'),
    kernelId: optionalText(machine.kernel_id),
    ramdiskId: optionalText(machine.ramdisk_id),
    productCodes: ((productCodesNode?.product_code ?? []) as unknown[]).map((c) => text(c, 'product code')),
    blockDeviceMappings: mappingNodes.map((m) => ({ virtual: text(m.virtual, 'mapping virtual'), device: text(m.device, 'mapping device') })),
    name: text(image.name, '<image><name>'),
    user: optionalText(image.user),
    imageType,
    tarSha1: sha1Digest(image.digest, '<image><digest>'),
    size: wholeNumber(image.size, '<image><size>'),
    bundledSize: image.bundled_size === undefined ? undefined : wholeNumber(image.bundled_size, '<image><bundled_size>'),
    ec2EncryptedKey: hex(image.ec2_encrypted_key, '<ec2_encrypted_key>'),
    ec2EncryptedIv: hex(image.ec2_encrypted_iv, '<ec2_encrypted_iv>'),
    userEncryptedKey: image.user_encrypted_key === undefined ? undefined : hex(image.user_encrypted_key, '<user_encrypted_key>'),
    userEncryptedIv: image.user_encrypted_iv === undefined ? undefined : hex(image.user_encrypted_iv, '<user_encrypted_iv>'),
    parts,
    signature: signatureText.toUpperCase() === 'UNSIGNED' || signatureText === '' ? undefined : hex(signatureText, '<signature>'),
    signedText: machineText + imageText,
  };
}

export type SignatureVerdict =
  | { ok: true; certificate: string }
  | { ok: false; reason: 'unsigned' | 'no-certificates' | 'mismatch' };

/**
 * Checks the manifest's RSA-SHA1 signature against each of the owner's signing certificates
 * (PEM); the first that verifies is named in the verdict.
 */
export function verifyBundleSignature(manifest: BundleManifest, certificatesPem: string[]): SignatureVerdict {
  if (!manifest.signature) return { ok: false, reason: 'unsigned' };
  if (certificatesPem.length === 0) return { ok: false, reason: 'no-certificates' };
  const signature = Buffer.from(manifest.signature, 'hex');
  for (const pem of certificatesPem) {
    let publicKey;
    try {
      publicKey = new X509Certificate(pem).publicKey;
    } catch {
      continue;
    }
    const verifier = createVerify('RSA-SHA1');
    verifier.update(manifest.signedText, 'utf8');
    if (verifier.verify(publicKey, signature)) return { ok: true, certificate: pem };
  }
  return { ok: false, reason: 'mismatch' };
}

/** The message a user sees for a signature verdict that is not ok. */
export function signatureRefusal(verdict: Exclude<SignatureVerdict, { ok: true }>): string {
  switch (verdict.reason) {
    case 'unsigned':
      return 'the bundle manifest is UNSIGNED; sign it with a certificate registered for your account, or ask the administrator to accept unsigned bundles';
    case 'no-certificates':
      return 'the bundle manifest is signed but your account has no signing certificate registered; register it with `imaging cert add`';
    case 'mismatch':
      return 'the bundle manifest signature does not verify against any signing certificate of your account: the manifest was changed after signing, or it was signed with another key';
  }
}
