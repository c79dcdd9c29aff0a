import { checkDescriptorPolicy, parseDescriptor } from '../../../toolkit/formats/vmdk/descriptor';
import { ImageFormatError } from '../../../toolkit/errors';

// The shape VMware ESX / ovftool exports (names and ids made up).
const vmwareStyle = [
  '# Disk DescriptorFile',
  'version=1',
  'encoding="UTF-8"',
  'CID=5a3bc1d2',
  'parentCID=ffffffff',
  'isNativeSnapshot="no"',
  'createType="streamOptimized"',
  '',
  '# Extent description',
  'RW 41943040 SPARSE "My VM-disk1.vmdk"',
  '',
  '# The Disk Data Base',
  '#DDB',
  '',
  'ddb.adapterType = "lsilogic"',
  'ddb.geometry.cylinders = "2610"',
  'ddb.geometry.heads = "255"',
  'ddb.geometry.sectors = "63"',
  'ddb.longContentID = "0123456789abcdef0123456789abcdef"',
  'ddb.thin-provisioned = "1"',
  'ddb.uuid = "60 00 C2 9b 12 34 56 78-9a bc de f0 12 34 56 78"',
  'ddb.virtualHWVersion = "8"',
  '',
].join('\r\n');

function check(text: string, capacity?: bigint): string {
  try {
    checkDescriptorPolicy(parseDescriptor(text), capacity);
  } catch (error) {
    expect(error).toBeInstanceOf(ImageFormatError);
    return (error as ImageFormatError).check;
  }
  return 'accepted';
}

describe('VMDK descriptor grammar and policy', () => {
  it('accepts a VMware-style streamOptimized descriptor with CRLF line ends', () => {
    const parsed = parseDescriptor(vmwareStyle);
    expect(parsed.fields.get('createType')).toBe('streamOptimized');
    expect(parsed.ddb.get('ddb.uuid')).toBe('60 00 C2 9b 12 34 56 78-9a bc de f0 12 34 56 78');
    expect(parsed.extents).toEqual([{ access: 'RW', sectors: 41943040n, type: 'SPARSE', fileName: 'My VM-disk1.vmdk', offset: undefined, line: 10 }]);
    expect(checkDescriptorPolicy(parsed, 41943040n)).toBe('streamOptimized');
  });

  it('refuses what the policy forbids, each with its own check', () => {
    expect(check(vmwareStyle.replace('RW 41943040', 'NOACCESS 41943040'))).toBe('vmdk-extent-access');
    expect(check(vmwareStyle.replace('CID=5a3bc1d2', 'CID=5a3bc1d2\r\nCID=00000000'))).toBe('vmdk-descriptor-syntax');
    expect(check(vmwareStyle.replace('"My VM-disk1.vmdk"', '"C:\\\\disks\\\\a.vmdk"'))).toBe('vmdk-extent-file');
    expect(check(vmwareStyle.replace('"My VM-disk1.vmdk"', '".."'))).toBe('vmdk-extent-file');
    expect(check(vmwareStyle.replace('SPARSE "My VM-disk1.vmdk"', 'ZERO'))).toBe('vmdk-extent-type');
    expect(check(vmwareStyle.replace('SPARSE "My VM-disk1.vmdk"', 'VMFSSPARSE "x.vmdk"'))).toBe('vmdk-extent-type');
    expect(check(vmwareStyle.replace('createType="streamOptimized"', 'createType="twoGbMaxExtentFlat"'))).toBe('vmdk-create-type');
    expect(check(vmwareStyle.replace('createType="streamOptimized"', ''))).toBe('vmdk-create-type');
    expect(check(vmwareStyle, 8n)).toBe('vmdk-extent-size');
    expect(check(`${vmwareStyle}${'# padding\n'.repeat(110_000)}`)).toBe('vmdk-descriptor-size');
  });

  it('quotes user text in messages without control characters', () => {
    try {
      checkDescriptorPolicy(parseDescriptor(vmwareStyle.replace('"My VM-disk1.vmdk"', '"/dev/sda\u001b[2J"')));
      throw new Error('expected a refusal');
    } catch (error) {
      expect((error as Error).message).toContain('"/dev/sda?[2J"');
    }
  });
});
