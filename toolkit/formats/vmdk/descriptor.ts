/**
 * The VMDK text descriptor, embedded in a sparse extent or standing alone as a ".vmdk" text
 * file. It is parsed with a strict line grammar, then a policy admits exactly the one shape we
 * accept: one SPARSE extent, in the file itself, of createType monolithicSparse or
 * streamOptimized, with no parent. Anything naming another file is refused before it can be
 * opened (CVE-2022-47951, CVE-2024-40767: descriptors that point qemu at host files).
 * Spec: VMware "Virtual Disk Format 5.0", "The Descriptor File".
 */
import { refusal } from '../safety-checks';
import { vmdkChecks } from './checks';

export const MAX_DESCRIPTOR_BYTES = 1024 * 1024;

export type ExtentAccess = 'RW' | 'RDONLY' | 'NOACCESS';

export interface DescriptorExtent {
  access: ExtentAccess;
  sectors: bigint;
  type: string; // SPARSE, FLAT, ZERO, VMFS, VMFSSPARSE, ...
  fileName?: string;
  offset?: bigint;
  line: number;
}

export interface VmdkDescriptor {
  /** Top-level keys (version, CID, parentCID, createType, ...), unquoted. */
  fields: Map<string, string>;
  /** ddb.* keys, unquoted. */
  ddb: Map<string, string>;
  extents: DescriptorExtent[];
}

export const ACCEPTED_CREATE_TYPES = ['monolithicSparse', 'streamOptimized'] as const;
export type AcceptedCreateType = (typeof ACCEPTED_CREATE_TYPES)[number];

// <access> <size in sectors> <type> ["file name" [offset]]
const EXTENT_LINE = /^(RW|RDONLY|NOACCESS)[ \t]+(\d{1,20})[ \t]+([A-Z]+)(?:[ \t]+"([^"]*)"(?:[ \t]+(\d{1,20}))?)?[ \t]*$/;
// key = value, where value is "quoted" or a bare token
const KEY_VALUE_LINE = /^([A-Za-z][A-Za-z0-9_.-]*)[ \t]*=[ \t]*(?:"([^"]*)"|([^"\s]*))[ \t]*$/;

const USER_ADVICE = 'export the disk as a single streamOptimized VMDK (or OVA) and import that file';

/** Parses the grammar only; `checkDescriptorPolicy` decides whether we accept what it says. */
export function parseDescriptor(text: string): VmdkDescriptor {
  if (Buffer.byteLength(text, 'utf8') > MAX_DESCRIPTOR_BYTES) {
    throw refusal(vmdkChecks.descriptorSize, `VMDK descriptor is larger than ${MAX_DESCRIPTOR_BYTES} bytes; ${USER_ADVICE}`);
  }
  const fields = new Map<string, string>();
  const ddb = new Map<string, string>();
  const extents: DescriptorExtent[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    const extent = EXTENT_LINE.exec(line);
    if (extent) {
      extents.push({
        access: extent[1] as ExtentAccess,
        sectors: BigInt(extent[2]),
        type: extent[3],
        fileName: extent[4],
        offset: extent[5] === undefined ? undefined : BigInt(extent[5]),
        line: i + 1,
      });
      continue;
    }
    const pair = KEY_VALUE_LINE.exec(line);
    if (pair) {
      const key = pair[1];
      const value = pair[2] ?? pair[3];
      const target = key.startsWith('ddb.') ? ddb : fields;
      if (target.has(key)) {
        throw refusal(vmdkChecks.descriptorSyntax, `VMDK descriptor line ${i + 1} repeats the key ${key}; the descriptor is malformed`);
      }
      target.set(key, value);
      continue;
    }
    throw refusal(
      vmdkChecks.descriptorSyntax,
      `VMDK descriptor line ${i + 1} is not a comment, a key = value pair or an extent line; the descriptor is malformed`,
    );
  }
  return { fields, ddb, extents };
}

/**
 * Admits only a self-contained sparse disk. `capacitySectors` is the sparse header's capacity
 * when the descriptor is embedded (undefined for a standalone descriptor file, which is always
 * refused after its createType has been reported).
 */
export function checkDescriptorPolicy(descriptor: VmdkDescriptor, capacitySectors?: bigint): AcceptedCreateType {
  const createType = descriptor.fields.get('createType');
  if (createType === undefined) {
    throw refusal(vmdkChecks.createType, `VMDK descriptor has no createType; ${USER_ADVICE}`);
  }
  if (!(ACCEPTED_CREATE_TYPES as readonly string[]).includes(createType)) {
    throw refusal(
      vmdkChecks.createType,
      `VMDK createType ${printable(createType)} is not accepted; export the disk as streamOptimized (or monolithicSparse)`,
    );
  }
  // Names first: a descriptor pointing at another file is the attack this policy exists for.
  for (const extent of descriptor.extents) {
    const name = extent.fileName;
    if (name !== undefined && (name === '' || /[/\\]/.test(name) || name === '.' || name === '..' || /[\x00-\x1f]/.test(name))) {
      throw refusal(
        vmdkChecks.extentFile,
        `VMDK descriptor names the file ${printable(name)}; a VMDK may only describe itself, ${USER_ADVICE}`,
      );
    }
  }
  for (const extent of descriptor.extents) {
    if (extent.type !== 'SPARSE') {
      throw refusal(
        vmdkChecks.extentType,
        `VMDK extent type ${printable(extent.type)} (descriptor line ${extent.line}) is not accepted; only a single SPARSE extent is, ${USER_ADVICE}`,
      );
    }
  }
  if (descriptor.extents.length !== 1) {
    throw refusal(
      vmdkChecks.extentCount,
      `VMDK descriptor lists ${descriptor.extents.length} extents; exactly one is accepted, ${USER_ADVICE}`,
    );
  }
  const [extent] = descriptor.extents;
  if (extent.fileName === undefined || extent.offset !== undefined) {
    throw refusal(vmdkChecks.descriptorSyntax, `VMDK SPARSE extent line ${extent.line} must name its file and carry no offset`);
  }
  if (extent.access === 'NOACCESS') {
    throw refusal(vmdkChecks.extentAccess, 'VMDK extent is marked NOACCESS, so its data may not be read; export the disk again');
  }
  const parentCID = descriptor.fields.get('parentCID');
  if ((parentCID !== undefined && parentCID.toLowerCase() !== 'ffffffff') || descriptor.fields.has('parentFileNameHint')) {
    throw refusal(
      vmdkChecks.parent,
      'VMDK is a delta (snapshot) disk that needs its parent; consolidate the snapshots and export the whole disk as streamOptimized',
    );
  }
  if (capacitySectors !== undefined && extent.sectors !== capacitySectors) {
    throw refusal(
      vmdkChecks.extentSize,
      `VMDK descriptor extent has ${extent.sectors} sectors but the sparse header says ${capacitySectors}; the file is inconsistent`,
    );
  }
  return createType as AcceptedCreateType;
}

/** Quotes user-controlled text for a message without letting it carry control characters or run on. */
function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(clean.length > 80 ? `${clean.slice(0, 80)}...` : clean);
}

/** A standalone descriptor file starts with this comment (and is refused, after reading why). */
export const DESCRIPTOR_FILE_SIGNATURE = '# Disk DescriptorFile';
