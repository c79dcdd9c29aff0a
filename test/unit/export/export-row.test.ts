/**
 * The export row of the pipeline table stands apart from the import chain: the state machine
 * lets an export task go only from export-requested to completed (or end early), and no import
 * state leads into it. The request's formats map to the toolkit's writers.
 */
import { rowConsuming, rowOf } from '../../../pipeline/table';
import { canTransition, nextStates } from '../../../tasks/state-machine';
import { exportWriterName } from '../../../functions/export/export-stage';
import { stageByName } from '../../../functions/stages';

test('export-requested moves only to completed, and nothing of the import chain reaches it', () => {
  expect(nextStates('export-requested')).toEqual(['completed']);
  expect(canTransition('export-requested', 'completed')).toBe(true);
  expect(canTransition('export-requested', 'validated')).toBe(false);
  expect(canTransition('export-requested', 'cancelled')).toBe(true);
  for (const state of ['pending-upload', 'manifest-received', 'bundle-decrypted', 'disk-converted', 'validated', 'boot-checked'] as const) {
    expect(canTransition(state, 'export-requested')).toBe(false);
  }
  // register still completes imports.
  expect(canTransition('boot-checked', 'completed')).toBe(true);
});

test('the export row is consumed by the export stage and its event by none', () => {
  expect(rowOf('export')).toMatchObject({ consumes: 'io.imaging.export.requested', emits: 'io.imaging.exported', expects: 'export-requested', movesTo: 'completed' });
  expect(stageByName('export').consumes).toBe('io.imaging.export.requested');
  expect(rowConsuming('io.imaging.exported')).toBeUndefined();
});

test('DiskImageFormat, ContainerFormat and the VHD type pick the writer', () => {
  expect(exportWriterName({ diskImageFormat: 'VMDK' })).toBe('vmdk');
  expect(exportWriterName({ diskImageFormat: 'VMDK', containerFormat: 'ova' })).toBe('ova');
  expect(exportWriterName({ diskImageFormat: 'VHD', vhdType: 'dynamic' })).toBe('vhd');
  expect(exportWriterName({ diskImageFormat: 'VHD', vhdType: 'fixed' })).toBe('vhd-fixed');
  expect(exportWriterName({ diskImageFormat: 'RAW' })).toBe('raw');
});
