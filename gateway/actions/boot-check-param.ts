/**
 * Extension parameters of ImportImage and ImportInstance (EC2 has neither; SDKs that check
 * parameters against EC2's model cannot send them, our CLI and any raw Query client can):
 *   BootCheck=true         boot the converted disk under qemu before it becomes an image or an
 *                          instance (the boot-check stage; the operator's IMAGING_BOOT_CHECK may
 *                          turn it off, or on for every import)
 *   BootCheckMarker=TEXT   a line on the guest's serial console that means it is up; default a
 *                          login prompt or cloud-init's "finished" line. Implies BootCheck=true.
 */
import type { BootCheckRequest } from '../../tasks/task';
import { Ec2Error, invalidValue } from '../errors';
import type { QueryParams } from '../query-request';

const MAX_MARKER_CHARS = 200;

export function bootCheckRequest(params: QueryParams): BootCheckRequest | undefined {
  const wanted = params.boolean('BootCheck');
  const marker = params.string('BootCheckMarker') || undefined;
  if (marker !== undefined && (marker.length > MAX_MARKER_CHARS || [...marker].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f))) {
    throw invalidValue('BootCheckMarker', marker.slice(0, 20), `It must be one line of at most ${MAX_MARKER_CHARS} characters.`);
  }
  if (wanted === false && marker !== undefined) throw new Ec2Error('InvalidParameterCombination', 'BootCheckMarker is the line a boot check waits for; leave it out with BootCheck=false');
  if (wanted !== true && marker === undefined) return undefined;
  return marker !== undefined ? { marker } : {};
}
