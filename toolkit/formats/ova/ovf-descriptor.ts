/**
 * The OVF descriptor of an OVA: read the disk list from it (References/File + DiskSection/Disk,
 * DMTF DSP0243 OVF 1.x), and write a minimal valid OVF 1.0 envelope for one disk.
 * The descriptor is untrusted: no DOCTYPE (so no entity expansion), every referenced file name
 * must be a plain name inside the package, never a path or a URL.
 * Spec: https://www.dmtf.org/standards/ovf
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { refusal } from '../safety-checks';
import { ovaChecks } from './checks';

export const MAX_OVF_BYTES = 4 * 1024 * 1024;

export interface OvfFile { id: string; href: string; size?: number }
export interface OvfDisk { diskId: string; file: OvfFile; capacityBytes?: number; format: string }
export interface OvfDescriptor { files: OvfFile[]; disks: OvfDisk[]; name?: string }

type Node = Record<string, unknown>;

const ARRAYS = new Set(['Envelope.References.File', 'Envelope.DiskSection.Disk', 'Envelope.VirtualSystem']);

export function parseOvf(text: string): OvfDescriptor {
  if (/<!DOCTYPE/i.test(text)) {
    throw refusal(ovaChecks.ovfDoctype, 'OVF descriptor declares a DOCTYPE, which OVF never needs; export the OVA again');
  }
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    throw refusal(ovaChecks.ovfXml, `OVF descriptor is not well-formed XML (line ${valid.err.line}: ${valid.err.msg})`);
  }
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '@',
    removeNSPrefix: true,
    processEntities: false,
    parseAttributeValue: false,
    parseTagValue: false,
    isArray: (_name, jpath) => ARRAYS.has(String(jpath)),
  });
  const envelope = (parser.parse(text) as Node).Envelope as Node | undefined;
  if (!envelope || typeof envelope !== 'object') {
    throw refusal(ovaChecks.ovfEnvelope, 'OVF descriptor has no Envelope element; only OVF 1.x packages are accepted');
  }
  const files = asArray((envelope.References as Node | undefined)?.File).map(readFile);
  const seen = new Set<string>();
  for (const file of files) {
    if (seen.has(file.id)) throw refusal(ovaChecks.ovfFile, `OVF References lists the file id ${quote(file.id)} twice`);
    seen.add(file.id);
  }
  const disks: OvfDisk[] = [];
  for (const disk of asArray((envelope.DiskSection as Node | undefined)?.Disk)) {
    const fileRef = attr(disk, 'fileRef');
    if (fileRef === undefined) continue; // a blank disk the hypervisor creates; it holds no data
    const file = files.find((f) => f.id === fileRef);
    if (!file) throw refusal(ovaChecks.ovfFile, `OVF disk ${quote(attr(disk, 'diskId') ?? '?')} refers to file id ${quote(fileRef)}, which References does not list`);
    disks.push({
      diskId: attr(disk, 'diskId') ?? '',
      file,
      capacityBytes: capacityInBytes(attr(disk, 'capacity'), attr(disk, 'capacityAllocationUnits')),
      format: attr(disk, 'format') ?? '',
    });
  }
  const system = asArray(envelope.VirtualSystem)[0];
  const name = system ? (typeof system.Name === 'string' ? system.Name : attr(system, 'id')) : undefined;
  return { files, disks, name };
}

function readFile(node: Node): OvfFile {
  const id = attr(node, 'id');
  const href = attr(node, 'href');
  if (!id || href === undefined) throw refusal(ovaChecks.ovfFile, 'OVF References has a File without ovf:id or ovf:href');
  checkHref(href);
  if (attr(node, 'compression') !== undefined && attr(node, 'compression') !== 'identity') {
    throw refusal(ovaChecks.fileCompression, `OVF file ${quote(href)} is compressed (${quote(attr(node, 'compression')!)}); export the OVA without file compression`);
  }
  if (attr(node, 'chunkSize') !== undefined) {
    throw refusal(ovaChecks.fileChunked, `OVF file ${quote(href)} is split into chunks; export the OVA without chunking`);
  }
  const sizeText = attr(node, 'size');
  let size: number | undefined;
  if (sizeText !== undefined) {
    if (!/^\d{1,16}$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) throw refusal(ovaChecks.ovfFile, `OVF file ${quote(href)} has a size that is not a number`);
    size = Number(sizeText);
  }
  return { id, href, size };
}

/** A file reference must name a member of this package: no directories, no parent, no URL. */
export function checkHref(href: string): void {
  if (href === '' || href === '.' || href === '..' || /[/\\:]/.test(href) || href.includes('..') || /[\x00-\x1f]/.test(href)) {
    throw refusal(
      ovaChecks.href,
      `OVF descriptor refers to ${quote(href)}; an OVA may only refer to files inside itself by plain name`,
    );
  }
}

/** "byte", or "byte * 2^N" (the form OVF tools write); anything else is left unknown. */
function capacityInBytes(capacity: string | undefined, units: string | undefined): number | undefined {
  if (capacity === undefined || !/^\d{1,20}$/.test(capacity)) return undefined;
  const unit = (units ?? 'byte').replace(/\s+/g, '');
  const power = unit === 'byte' ? 0 : /^byte\*2\^(\d{1,2})$/.exec(unit)?.[1];
  if (power === undefined) return undefined;
  const bytes = Number(capacity) * 2 ** Number(power);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

function attr(node: Node, name: string): string | undefined {
  const value = node[`@${name}`];
  return typeof value === 'string' ? value : undefined;
}

function asArray(value: unknown): Node[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).filter((v): v is Node => typeof v === 'object' && v !== null);
}

function quote(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(clean.length > 80 ? `${clean.slice(0, 80)}...` : clean);
}

export interface OvfForOneDisk {
  name: string;
  vmdkName: string;
  vmdkSize: number;
  capacityBytes: number;
  /** Bytes of the disk that hold data (optional OVF hint). */
  populatedSize?: number;
  /**
   * Pads the File element after its size with spaces to this many digits' worth, so the
   * descriptor's length does not depend on the size: a writer can emit it before the VMDK's size
   * is known and rewrite it in place afterwards.
   */
  sizeDigits?: number;
}

/**
 * A minimal OVF 1.0 envelope: one file, one streamOptimized disk on an LSI Logic SCSI
 * controller, one virtual system with 1 CPU and 1 GiB. Importers read the disk from it; the
 * hardware is a neutral default (EC2 picks the instance type at import, not from here).
 */
export function buildOvf(d: OvfForOneDisk): string {
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  const populated = d.populatedSize === undefined ? '' : ` ovf:populatedSize="${d.populatedSize}"`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="${esc(d.vmdkName)}" ovf:id="file1" ovf:size="${d.vmdkSize}"${' '.repeat(Math.max(0, (d.sizeDigits ?? 0) - String(d.vmdkSize).length))}/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="${d.capacityBytes}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"${populated}/>
  </DiskSection>
  <VirtualSystem ovf:id="${esc(d.name)}">
    <Info>A virtual machine</Info>
    <Name>${esc(d.name)}</Name>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>${esc(d.name)}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-07</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>1 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>1</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>1024MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>1024</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`;
}
