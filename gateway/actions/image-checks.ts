/**
 * Checks that every call making an image shares (RegisterImage, CopyImage, and the kernel
 * extension parameters of ImportImage / ImportInstance): a new image's name, and the kernel or
 * ramdisk a machine image is to boot with.
 */
import { BUNDLE_IMAGE_PREFIX } from '../../tasks/ids';
import type { ImageRecord } from '../../tasks/task';
import { Ec2Error } from '../errors';
import type { ActionContext } from './action';

/** EC2's rule for AMI names: 3-128 of letters, digits, ( ) [ ] . / - ' @ _ and spaces. */
const IMAGE_NAME = /^[A-Za-z0-9()[\]./\-'@_ ]{3,128}$/;

/**
 * A name for a new image of the caller: well formed, and not the name of another of its images
 * (but for one `sameRequest` says the call itself made, as a retry with its ClientToken).
 */
export async function checkNewImageName(ctx: ActionContext, name: string, sameRequest: (taken: ImageRecord) => boolean = () => false): Promise<void> {
  if (!IMAGE_NAME.test(name)) throw new Ec2Error('InvalidAMIName.Malformed', `AMI names must be 3-128 characters of letters, digits, ( ) [ ] . / - ' @ _ and spaces; got "${name.slice(0, 140)}"`);
  const images = (await ctx.tasks.listResources({ kind: 'image', accountId: ctx.caller.accountId })) as ImageRecord[];
  if (images.some((i) => i.name === name && i.state !== 'failed' && !sameRequest(i))) throw new Ec2Error('InvalidAMIName.Duplicate', `AMI name ${name} is already in use by an image of your account`);
}

/** A kernel (or ramdisk) a machine image is to boot with: an image of that type of the caller's own, not failed. */
export async function checkAssociation(ctx: ActionContext, param: string, id: string, wanted: 'kernel' | 'ramdisk'): Promise<void> {
  if (!/^(ami|emi|eki|eri|aki|ari)-([0-9a-f]{8}|[0-9a-f]{17})$/.test(id)) throw new Ec2Error('InvalidAMIID.Malformed', `Invalid id: "${id}" (expecting "${BUNDLE_IMAGE_PREFIX[wanted]}-...")`);
  const found = await ctx.tasks.getResource(id);
  if (!found || found.kind !== 'image' || found.accountId !== ctx.caller.accountId) {
    throw new Ec2Error('InvalidAMIID.NotFound', `The ${wanted} image '${id}' (${param}) does not exist`);
  }
  const type = found.imageType ?? 'machine';
  if (type !== wanted) throw new Ec2Error('InvalidParameterValue', `${param} ${id} is a ${type} image, not a ${wanted} image; register the ${wanted} with its own bundle (type ${wanted}) and name that image`);
  if (found.state === 'failed') throw new Ec2Error('InvalidParameterValue', `${param} ${id} is a ${wanted} image whose registration failed`);
}
