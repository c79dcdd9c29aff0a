/**
 * `imaging import-instance --disk FILE[,format=…][,description=…][,volume-size=GiB]`: what each
 * value says, what it takes from the command's defaults, and the values it refuses.
 */
import { diskOf, parseDiskSpec } from '../../../cli/commands/import-instance';
import { mebibytesDone } from '../../../cli/commands/import-volume';

test('a file alone takes the defaults; its own keys win over them', () => {
  expect(parseDiskSpec('boot.vmdk', { format: 'VMDK', description: 'all', volumeSizeGiB: 4 })).toEqual({ file: 'boot.vmdk', format: 'VMDK', description: 'all', volumeSizeGiB: 4 });
  expect(parseDiskSpec('data.raw,format=raw,description=data disk,volume-size=8', { format: 'VMDK', description: 'all', volumeSizeGiB: 4 })).toEqual({ file: 'data.raw', format: 'RAW', description: 'data disk', volumeSizeGiB: 8 });
});

test('file= names a file with a comma: it comes last and takes the rest', () => {
  expect(parseDiskSpec('format=vhd,file=logs.vhd', {})).toEqual({ file: 'logs.vhd', format: 'VHD' });
  expect(parseDiskSpec('format=VHD,description=x,file=a,b.vhd', {})).toEqual({ file: 'a,b.vhd', format: 'VHD', description: 'x' });
  expect(parseDiskSpec('file=a,b.raw', { format: 'RAW' })).toEqual({ file: 'a,b.raw', format: 'RAW' });
});

test.each([
  ['data.raw', /data\.raw: no format; give --format/],
  ['data.raw,format=qcow2', /format qcow2 is not one of RAW, VMDK, VHD/],
  ['data.raw,format=RAW,volume-size=1.5', /volume-size 1\.5 is not a whole number of GiB/],
  ['data.raw,format=RAW,size=2', /"size=2" is not one of file=, format=, description=, volume-size=/],
  ['format=RAW', /no file named/],
])('%s is refused', (spec, message) => {
  expect(() => parseDiskSpec(spec, {})).toThrow(message);
});

test('a FILE argument needs a format from --format', () => {
  expect(diskOf('boot.vmdk', { format: 'VMDK' })).toEqual({ file: 'boot.vmdk', format: 'VMDK' });
  expect(() => diskOf('boot.vmdk', {})).toThrow(/boot\.vmdk: no format/);
});

test('an upload bar is full once every byte is uploaded, whole MiB before', () => {
  const size = 3 * 2 ** 20 + 512;
  expect([mebibytesDone(2 ** 20, size), mebibytesDone(3 * 2 ** 20, size), mebibytesDone(size, size)]).toEqual([1, 3, 4]);
});
