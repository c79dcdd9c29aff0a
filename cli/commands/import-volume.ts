/**
 * `imaging import-volume FILE`: what euca-import-volume does. Split the file into parts, upload
 * them (in parallel, with a progress bar), write the EC2 import manifest with presigned URLs,
 * and call ImportVolume with the manifest's presigned URL.
 */
import { createReadStream, statSync } from 'fs';
import { basename } from 'path';
import { randomBytes } from 'crypto';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { SingleBar, Presets } from 'cli-progress';
import { buildImportManifest, partRanges, type ManifestFileFormat } from '../../toolkit/bundle/import-manifest';
import type { ClientContext } from '../client-options';
import { ensureBucket } from '../../toolkit/io/object-storage';
import { FileSource } from '../../toolkit/io/file-source';
import { openImage } from '../../toolkit/formats/registry';
import { ImageFormatError } from '../../toolkit/errors';
import type { FormatName } from '../../toolkit/formats/format';

export interface ImportVolumeOptions {
  format: ManifestFileFormat;
  bucket: string;
  prefix?: string;
  volumeSizeGiB?: number;
  partSizeMiB: number;
  description?: string;
  availabilityZone?: string;
  /** Lifetime of the presigned URLs (SigV4 allows at most 7 days). */
  expiresSeconds: number;
  progress: boolean;
  concurrency: number;
}

const GiB = 1024 ** 3;

/** Told how far an upload has come, after each part: what a progress bar shows. */
export interface UploadProgress {
  update(uploadedBytes: number, uploadedParts: number, totalParts: number): void;
}

/** An upload's progress as one bar of its own on stderr (import-volume, and an instance's single disk). */
export function uploadBar(size: number, parts: number): UploadProgress & { stop(): void } {
  const bar = new SingleBar({ format: 'uploading |{bar}| {percentage}% {value}/{total} MiB | {parts}', stopOnComplete: true }, Presets.shades_classic);
  bar.start(Math.ceil(size / 2 ** 20), 0, { parts: `0/${parts} parts` });
  return {
    update: (bytes, done, total) => bar.update(mebibytesDone(bytes, size), { parts: `${done}/${total} parts` }),
    stop: () => bar.stop(),
  };
}

/** Whole MiB uploaded, for a bar whose total is the size rounded up: full once every byte is. */
export function mebibytesDone(bytes: number, size: number): number {
  return bytes >= size ? Math.ceil(size / 2 ** 20) : Math.floor(bytes / 2 ** 20);
}

async function uploadParts(s3: S3Client, file: string, bucket: string, prefix: string, size: number, partSize: number, options: ImportVolumeOptions, progress?: UploadProgress) {
  const ranges = partRanges(size, partSize);
  let uploadedBytes = 0;
  let uploadedParts = 0;
  let next = 0;
  const keys: string[] = ranges.map((r) => `${prefix}${basename(file)}.part.${r.index}`);
  const worker = async () => {
    while (next < ranges.length) {
      const r = ranges[next++];
      const length = r.end - r.start + 1;
      // Skip parts already there with the right size: re-running the command resumes an upload.
      const existing = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: keys[r.index] })).catch(() => undefined);
      if (existing?.ContentLength !== length) {
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys[r.index], Body: createReadStream(file, { start: r.start, end: r.end }), ContentLength: length }));
      }
      uploadedBytes += length;
      uploadedParts++;
      progress?.update(uploadedBytes, uploadedParts, ranges.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, ranges.length) }, worker));
  return ranges.map((r) => ({ ...r, key: keys[r.index] }));
}

const FORMAT_NAMES: Record<ManifestFileFormat, FormatName> = { RAW: 'raw', VMDK: 'vmdk', VHD: 'vhd' };

async function virtualSizeOf(file: string, format: ManifestFileFormat): Promise<number> {
  const source = await FileSource.open(file);
  try {
    const reader = await openImage(source, { claimedFormat: FORMAT_NAMES[format] });
    await reader.close();
    return format === 'RAW' ? source.size : reader.info.virtualSize;
  } catch (err) {
    if (err instanceof ImageFormatError) throw new Error(`${file}: ${err.message}`);
    throw err;
  } finally {
    await source.close();
  }
}

export function manifestKeyFor(prefix: string, file: string): string {
  return `${prefix}${basename(file)}.manifest.xml`;
}

export interface UploadedImport {
  manifestUrl: string;
  size: number;
  volumeSizeGiB: number;
  prefix: string;
}

/** A disk checked and ready to upload: its size, the volume it asks for and where its parts go. */
export interface PreparedUpload {
  file: string;
  format: ManifestFileFormat;
  size: number;
  partSize: number;
  parts: number;
  volumeSizeGiB: number;
  prefix: string;
}

/**
 * Checks the image before anything is uploaded: a wrong format or an unsafe file is refused
 * here, and the volume's default size comes from the virtual disk, not the (compressed) file.
 */
export async function prepareUpload(file: string, options: Pick<ImportVolumeOptions, 'format' | 'prefix' | 'volumeSizeGiB' | 'partSizeMiB'>): Promise<PreparedUpload> {
  const size = statSync(file).size;
  if (size === 0) throw new Error(`${file} is empty`);
  const partSize = Math.round(options.partSizeMiB * 2 ** 20);
  if (!(partSize >= 1)) throw new Error(`part size ${options.partSizeMiB} MiB is not a positive number`);
  const prefix = options.prefix ?? `${basename(file)}.${randomBytes(4).toString('hex')}/`;
  const virtualSize = await virtualSizeOf(file, options.format);
  const volumeSizeGiB = options.volumeSizeGiB ?? Math.max(1, Math.ceil(virtualSize / GiB));
  return { file, format: options.format, size, partSize, parts: partRanges(size, partSize).length, volumeSizeGiB, prefix };
}

/** Uploads a prepared disk's parts and its manifest; returns the manifest's presigned URL. */
export async function uploadPrepared(ctx: ClientContext, prepared: PreparedUpload, options: ImportVolumeOptions, progress?: UploadProgress): Promise<UploadedImport> {
  const { file, size, partSize, prefix, volumeSizeGiB } = prepared;
  const { s3 } = ctx;
  await ensureBucket(s3, options.bucket);
  const parts = await uploadParts(s3, file, options.bucket, prefix, size, partSize, options, progress);
  const sign = (command: GetObjectCommand | HeadObjectCommand | DeleteObjectCommand) => getSignedUrl(s3, command, { expiresIn: options.expiresSeconds });
  const manifestKey = manifestKeyFor(prefix, file);
  const manifest = buildImportManifest({
    version: '2010-11-15',
    fileFormat: prepared.format,
    size,
    volumeSizeGiB,
    selfDestructUrl: await sign(new DeleteObjectCommand({ Bucket: options.bucket, Key: manifestKey })),
    parts: await Promise.all(parts.map(async (p) => ({
      ...p,
      headUrl: await sign(new HeadObjectCommand({ Bucket: options.bucket, Key: p.key })),
      getUrl: await sign(new GetObjectCommand({ Bucket: options.bucket, Key: p.key })),
      deleteUrl: await sign(new DeleteObjectCommand({ Bucket: options.bucket, Key: p.key })),
    }))),
  });
  await s3.send(new PutObjectCommand({ Bucket: options.bucket, Key: manifestKey, Body: manifest, ContentType: 'application/xml' }));
  const manifestUrl = await sign(new GetObjectCommand({ Bucket: options.bucket, Key: manifestKey }));
  return { manifestUrl, size, volumeSizeGiB, prefix };
}

/** Checks, then uploads the parts and the manifest (with a progress bar when asked); returns the manifest's presigned URL for ImportVolume. */
export async function uploadImportImage(ctx: ClientContext, file: string, options: ImportVolumeOptions): Promise<UploadedImport> {
  const prepared = await prepareUpload(file, options);
  const bar = options.progress ? uploadBar(prepared.size, prepared.parts) : undefined;
  try {
    return await uploadPrepared(ctx, prepared, options, bar);
  } finally {
    bar?.stop();
  }
}

export async function importVolume(ctx: ClientContext, file: string, options: ImportVolumeOptions): Promise<{ conversionTaskId: string; manifestUrl: string }> {
  const uploaded = await uploadImportImage(ctx, file, options);
  const response = await ctx.ec2.call('ImportVolume', {
    'Image.Format': options.format,
    'Image.Bytes': uploaded.size,
    'Image.ImportManifestUrl': uploaded.manifestUrl,
    'Volume.Size': uploaded.volumeSizeGiB,
    AvailabilityZone: options.availabilityZone,
    Description: options.description,
  });
  return { conversionTaskId: String(response.conversionTask?.conversionTaskId), manifestUrl: uploaded.manifestUrl };
}
