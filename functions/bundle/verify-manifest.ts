/**
 * The manifest stage's work for a bundle (RegisterImage): read the manifest from the owner's
 * bucket, parse it, and verify its RSA-SHA1 signature over the raw machine_configuration + image
 * text against the owner's signing certificates. Each refusal says what is wrong: UNSIGNED (and
 * not accepted here), no certificate registered, a certificate of another account, or a manifest
 * changed after signing. What the decrypt stage needs is recorded from the verified text only.
 *
 * A manifest signed with the cloud key is one BundleInstance made (the service holds no user's
 * private key, so it signs its own bundles): it is accepted only for the account its <user>
 * names, the account that bundled, so a copy of another account's bundle does not register.
 */
import { createHash, X509Certificate } from 'crypto';
import type { TaskDocument, VerifiedBundle } from '../../tasks/task';
import { listSigningCertificates } from '../../tasks/signing-certificates';
import type { SigningCertificateRecord } from '../../tasks/task';
import { MAX_BUNDLE_MANIFEST_BYTES, parseBundleManifest, signatureRefusal, verifyBundleSignature, type BundleManifest } from '../../toolkit/bundle/bundle-manifest';
import { cloudCertificate } from '../../toolkit/bundle/cloud-key';
import { ClientError } from '../errors';
import type { StageContext } from '../stage';
import { readAccountObject, withAccountS3 } from './account-objects';

const OTHER_ACCOUNT_MESSAGE =
  'the bundle manifest is signed with a certificate registered for another account, not yours; bundle with your own key and certificate, or register your certificate with `imaging cert add`';

const CLOUD_OTHER_ACCOUNT_MESSAGE =
  'the bundle manifest was made by BundleInstance for another account (its <user> is not yours); only the account that bundled an instance can register its bundle';

/** The cloud certificate's fingerprint when the manifest is signed with the cloud key (a BundleInstance bundle). */
function signedByCloud(ctx: StageContext, manifest: BundleManifest): string | undefined {
  if (!ctx.config.cloudPrivateKey) return undefined;
  const cert = cloudCertificate(ctx.config.cloudPrivateKey);
  return verifyBundleSignature(manifest, [cert]).ok ? new X509Certificate(cert).fingerprint256 : undefined;
}

/** Whether a signature that matches none of the owner's certificates matches one of another account's. */
async function signedByAnotherAccount(ctx: StageContext, accountId: string, verify: (pems: string[]) => boolean): Promise<boolean> {
  const all = (await ctx.tasks.listResources({ kind: 'signing-certificate' })) as SigningCertificateRecord[];
  return verify(all.filter((c) => c.accountId !== accountId).map((c) => c.pem));
}

export async function verifyBundleManifest(ctx: StageContext, task: TaskDocument): Promise<VerifiedBundle> {
  const bundle = task.request.bundle;
  if (!bundle) throw new Error(`task ${task.id} has no bundle registration`);
  const body = await withAccountS3(ctx, task.accountId, 'the bundle manifest', (s3) =>
    readAccountObject(s3, bundle.bucket, bundle.manifestKey, MAX_BUNDLE_MANIFEST_BYTES, 'the bundle manifest'));
  const manifest = parseBundleManifest(body);
  let signedBy: string;
  if (!manifest.signature) {
    if (!ctx.config.acceptUnsignedBundles) throw new ClientError(signatureRefusal({ ok: false, reason: 'unsigned' }));
    signedBy = 'UNSIGNED';
  } else {
    const certificates = await listSigningCertificates(ctx.tasks, task.accountId);
    const verdict = verifyBundleSignature(manifest, certificates.map((c) => c.pem));
    const byCloud = verdict.ok ? undefined : signedByCloud(ctx, manifest);
    if (byCloud) {
      if (manifest.user !== task.accountId) throw new ClientError(CLOUD_OTHER_ACCOUNT_MESSAGE);
      signedBy = byCloud;
    } else if (!verdict.ok) {
      if (await signedByAnotherAccount(ctx, task.accountId, (pems) => verifyBundleSignature(manifest, pems).ok)) throw new ClientError(OTHER_ACCOUNT_MESSAGE);
      throw new ClientError(signatureRefusal(verdict));
    } else {
      signedBy = certificates.find((c) => c.pem === verdict.certificate)?.fingerprint ?? createHash('sha256').update(verdict.certificate).digest('hex');
    }
  }
  if (manifest.imageType !== bundle.imageType) {
    throw new ClientError(`the bundle manifest now says the image is a ${manifest.imageType} image, but it was a ${bundle.imageType} image when RegisterImage was called; register it again`);
  }
  return verifiedBundle(manifest, bundle.manifestKey, signedBy);
}

/** What the decrypt stage is handed of a verified manifest: its parts live next to it (same bucket, same key prefix). */
export function verifiedBundle(manifest: BundleManifest, manifestKey: string, signedBy: string): VerifiedBundle {
  const dir = manifestKey.includes('/') ? manifestKey.slice(0, manifestKey.lastIndexOf('/') + 1) : '';
  return {
    imageType: manifest.imageType,
    size: manifest.size,
    tarSha1: manifest.tarSha1,
    ec2EncryptedKey: manifest.ec2EncryptedKey,
    ec2EncryptedIv: manifest.ec2EncryptedIv,
    parts: manifest.parts.map((p) => ({ index: p.index, key: dir + p.filename, sha1: p.sha1 })),
    signedBy,
  };
}
