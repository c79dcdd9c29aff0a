/**
 * The S3 endpoint `imaging serve` embeds when none is configured: s3rver storing under the data
 * dir, behind a front that s3rver lacks (issue 11, item 2). Every request must be signed (SigV4
 * header or presigned, S3 SigV2 header or presigned) by a known key; a body whose SHA-256 the
 * signature declares is checked before s3rver stores a byte of it. Each bucket belongs to the
 * account that created it (a record kept in the store directory) and only that account and the
 * service reach it; the image store is the service's alone. The service's keys reach everything.
 */
import { createHash, randomUUID } from 'crypto';
import { chmodSync, createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, type WriteStream } from 'fs';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'http';
import { createServer as createHttpsServer } from 'https';
import type { AddressInfo } from 'net';
import { join } from 'path';
import { Readable } from 'stream';
import { applyConnectionLimits, type ConnectionLimits, connectionLimitsFromEnv } from '../gateway/connection-limits';
import type { RawRequest } from '../gateway/query-request';
import { headerValue } from '../gateway/signing-common';
import { AwsChunkedDecoder, trailerChecksum } from './aws-chunked';
import { authenticateS3, S3Error, UNSIGNED_PAYLOAD, type S3Caller, type S3KeyLookup } from './s3-auth';

interface S3rverApp {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  middleware: ((ctx: { req: unknown }, next: () => Promise<void>) => Promise<void>)[];
  logger?: { exceptions?: { unhandle(): void }; close(): void };
}
// s3rver ships no type declarations; this is the part of its API we use.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver: new (options: Record<string, unknown>) => S3rverApp = require('s3rver');
// s3rver looks keys up in a process-wide registry and refuses keys it does not know, even with
// mismatched signatures allowed; a key we have verified is added to it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const s3rverAccounts: { DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void }; registry: Map<string, unknown> } = require('s3rver/lib/models/account');

export interface EmbeddedS3 {
  endpoint: string;
  stop(): Promise<void>;
}

export interface S3Key {
  accessKeyId: string;
  secretAccessKey: string;
  accountId?: string;
}

export interface EmbeddedS3Options {
  host: string;
  port: number;
  directory: string;
  /** The service's own keys: they reach every bucket. */
  serviceKeys: S3Key[];
  /** Accounts' keys (the EC2 API's account store); an account reaches only buckets it created. */
  lookupKey?: S3KeyLookup;
  /** The image store: readable and writable by the service's keys only, whoever its record names. */
  imageBucket?: string;
  connectionLimits?: Partial<ConnectionLimits>;
  /** A certificate (chain) and its key, PEM: the endpoint serves HTTPS; absent, plain HTTP. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /**
   * Buckets recorded as the service's (other than the image store) become this account's: a
   * store from before the service had a key of its own, when an account's key served as both.
   */
  formerServiceBucketsOwner?: string;
}

/** Bodies up to this size are checked in memory; larger ones are spooled to a private file. */
const IN_MEMORY_BODY_BYTES = 1024 * 1024;
const OWNERS_FILE = '.imaging-bucket-owners.json';
const SERVICE_ACCOUNT = 'service';

export async function startEmbeddedS3(options: EmbeddedS3Options): Promise<EmbeddedS3> {
  const { host } = options;
  // Objects are the users' disk images and the service's outputs: private to the service's user.
  // s3rver takes no file mode, so the process umask is narrowed; existing files are narrowed too.
  process.umask(process.umask() | 0o077);
  mkdirSync(options.directory, { recursive: true, mode: 0o700 });
  makePrivate(options.directory);
  const spoolDir = `${options.directory}.spool`;
  rmSync(spoolDir, { recursive: true, force: true });
  mkdirSync(spoolDir, { recursive: true, mode: 0o700 });

  const serviceKeys = new Map(options.serviceKeys.map((k) => [k.accessKeyId, { accountId: SERVICE_ACCOUNT, secretAccessKey: k.secretAccessKey }]));
  const lookup: S3KeyLookup = async (id) => serviceKeys.get(id) ?? (await options.lookupKey?.(id));
  const owners = new BucketOwners(join(options.directory, OWNERS_FILE));
  if (options.formerServiceBucketsOwner !== undefined) owners.reassign(SERVICE_ACCOUNT, options.formerServiceBucketsOwner, options.imageBucket);

  const s3 = new S3rver({ silent: true, directory: options.directory, vhostBuckets: false, allowMismatchedSignatures: true });
  const verifiedBodies = new WeakMap<IncomingMessage, { body: Readable; headers?: IncomingHttpHeaders }>();
  // Hands s3rver the checked copy of a body instead of the socket stream.
  s3.middleware.unshift(async (ctx, next) => {
    const checked = verifiedBodies.get(ctx.req as IncomingMessage);
    if (checked) ctx.req = Object.assign(checked.body, { headers: checked.headers ?? (ctx.req as IncomingMessage).headers });
    await next();
  });
  const s3rverHandle = s3.callback();

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = rawRequestOf(req);
    const caller = await authenticateS3(raw, lookup);
    const isService = caller.accountId === SERVICE_ACCOUNT && serviceKeys.has(caller.accessKeyId);
    const target = targetOf(raw);
    const createsBucket = target.bucket !== undefined && target.isBucket && raw.method === 'PUT' && !raw.rawQuery;
    if (!isService) {
      if (target.bucket === undefined) return listOwnBuckets(res, owners.ownedBy(caller.accountId));
      if (target.bucket === options.imageBucket || !createsBucket) authorize(caller, target.bucket, owners, options.imageBucket);
      const copySource = req.headers['x-amz-copy-source'];
      if (typeof copySource === 'string') authorize(caller, decodeURIComponent(copySource.replace(/^\//, '').split('/')[0]), owners, options.imageBucket);
    }
    if (createsBucket) {
      const bucket = target.bucket!;
      // A bucket with no record that exists already predates the record: the service's.
      const owner = owners.get(bucket) ?? (owners.bucketExists(bucket) ? SERVICE_ACCOUNT : undefined);
      if (owner !== undefined && owner !== caller.accountId && !isService) {
        throw new S3Error('BucketAlreadyExists', 'The requested bucket name is not available. Choose a different name and try again.', 409);
      }
      if (owner === undefined) {
        owners.set(bucket, caller.accountId);
        res.once('finish', () => {
          if (res.statusCode !== 200 && !owners.bucketExists(bucket)) owners.delete(bucket);
        });
      }
    }
    if (target.bucket !== undefined && target.isBucket && raw.method === 'DELETE' && !raw.rawQuery) {
      res.once('finish', () => {
        if (res.statusCode === 204) owners.delete(target.bucket!);
      });
    }
    if (caller.streamingTrailer) verifiedBodies.set(req, await unchunkedBody(req, spoolDir));
    else if (caller.payloadSha256 !== undefined) verifiedBodies.set(req, { body: await checkedBody(req, caller.payloadSha256, spoolDir) });
    const secret = (await lookup(caller.accessKeyId))!.secretAccessKey;
    if (!s3rverAccounts.registry.has(caller.accessKeyId)) s3rverAccounts.DUMMY_ACCOUNT.createKeyPair(caller.accessKeyId, secret);
    s3rverHandle(req, res);
  }

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    serve(req, res).catch((err) => sendError(req, res, err));
  };
  // An https server has the http server's timeouts and events; only the sockets are TLS.
  const server: Server = options.tls ? (createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handle) as unknown as Server) : createServer(handle);
  applyConnectionLimits(server, { ...connectionLimitsFromEnv('s3'), ...options.connectionLimits });
  let address: AddressInfo;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    address = server.address() as AddressInfo;
  } catch (err) {
    throw new Error(`cannot start the embedded S3 endpoint on ${host}:${options.port}: ${(err as Error).message}`);
  }
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    endpoint: `${options.tls ? 'https' : 'http'}://${shownHost}:${address.port}`,
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      s3.logger?.exceptions?.unhandle();
      s3.logger?.close();
      rmSync(spoolDir, { recursive: true, force: true });
    },
  };
}

function rawRequestOf(req: IncomingMessage): RawRequest {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return { method: (req.method ?? 'GET').toUpperCase(), path: q < 0 ? url : url.slice(0, q), rawQuery: q < 0 ? '' : url.slice(q + 1), headers: req.headers, body: Buffer.alloc(0) };
}

/** Path-style addressing: /bucket/key. */
function targetOf(raw: RawRequest): { bucket?: string; isBucket: boolean } {
  const path = raw.path.replace(/^\/+/, '');
  if (path === '') return { isBucket: false };
  const slash = path.indexOf('/');
  const bucketPart = slash < 0 ? path : path.slice(0, slash);
  let bucket: string;
  try {
    bucket = decodeURIComponent(bucketPart);
  } catch {
    throw new S3Error('InvalidBucketName', 'The specified bucket is not valid.', 400);
  }
  return { bucket, isBucket: slash < 0 || slash === path.length - 1 };
}

function authorize(caller: S3Caller, bucket: string, owners: BucketOwners, imageBucket: string | undefined): void {
  if (bucket === imageBucket) throw new S3Error('AccessDenied', `Access Denied: bucket ${bucket} is the service's image store; read your images through the EC2 API`, 403);
  const owner = owners.get(bucket);
  // No record: a bucket from before ownership was kept, the service's; or none at all, which
  // only CreateBucket may name (anything else gets s3rver's NoSuchBucket).
  if (owner === undefined ? owners.bucketExists(bucket) : owner !== caller.accountId) {
    throw new S3Error('AccessDenied', 'Access Denied', 403);
  }
}

/** Which account created each bucket, kept beside the buckets (a file name no bucket can have). */
class BucketOwners {
  private readonly owners: Map<string, string>;
  private readonly root: string;

  constructor(private readonly path: string) {
    this.root = join(path, '..');
    this.owners = new Map(existsSync(path) ? Object.entries(JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>) : []);
  }

  get(bucket: string): string | undefined {
    return this.owners.get(bucket);
  }

  bucketExists(bucket: string): boolean {
    return existsSync(join(this.root, bucket));
  }

  ownedBy(accountId: string): { name: string; created: Date }[] {
    return [...this.owners]
      .filter(([bucket, owner]) => owner === accountId && this.bucketExists(bucket))
      .map(([name]) => ({ name, created: statSync(join(this.root, name)).birthtime }));
  }

  set(bucket: string, accountId: string): void {
    this.owners.set(bucket, accountId);
    this.save();
  }

  /** Gives `from`'s buckets, and the buckets with no record, to `to` (all but `except`). */
  reassign(from: string, to: string, except: string | undefined): void {
    const unrecorded = readdirSync(this.root, { withFileTypes: true }).filter((e) => e.isDirectory() && !this.owners.has(e.name)).map((e) => e.name);
    const moved = [...[...this.owners].filter(([, owner]) => owner === from).map(([bucket]) => bucket), ...unrecorded].filter((bucket) => bucket !== except);
    for (const bucket of moved) this.owners.set(bucket, to);
    if (moved.length) this.save();
  }

  delete(bucket: string): void {
    if (this.owners.delete(bucket)) this.save();
  }

  private save(): void {
    const temp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(temp, JSON.stringify(Object.fromEntries(this.owners), null, 1), { mode: 0o600 });
    renameSync(temp, this.path);
  }
}

/** A request body read whole, in memory or in a private spool file, for s3rver to read again. */
interface HeldBody {
  length: number;
  open(): Readable;
  discard(): void;
}

/** Reads `source` whole into memory or (past IN_MEMORY_BODY_BYTES) a private spool file, showing `inspect` every chunk. */
async function holdBody(source: AsyncIterable<Buffer>, spoolDir: string, inspect: (chunk: Buffer) => void): Promise<HeldBody> {
  const chunks: Buffer[] = [];
  let length = 0;
  let spool: { path: string; stream: WriteStream } | undefined;
  try {
    for await (const chunk of source) {
      inspect(chunk);
      length += chunk.length;
      if (!spool && length > IN_MEMORY_BODY_BYTES) {
        const path = join(spoolDir, randomUUID());
        spool = { path, stream: createWriteStream(path, { mode: 0o600 }) };
        for (const c of chunks.splice(0)) spool.stream.write(c);
      }
      if (spool) {
        if (!spool.stream.write(chunk)) await new Promise<void>((r) => spool!.stream.once('drain', () => r()));
      } else {
        chunks.push(Buffer.from(chunk));
      }
    }
    if (spool) await new Promise<void>((resolve, reject) => spool!.stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
  } catch (err) {
    if (spool) {
      spool.stream.destroy();
      rmSync(spool.path, { force: true });
    }
    throw err;
  }
  const path = spool?.path;
  return {
    length,
    open: () => {
      if (!path) return Readable.from(chunks.length ? [Buffer.concat(chunks)] : []);
      const stream = createReadStream(path);
      stream.once('close', () => rmSync(path, { force: true }));
      return stream;
    },
    discard: () => void (path && rmSync(path, { force: true })),
  };
}

/** The body for s3rver, only if its SHA-256 is the one the signature covers. */
async function checkedBody(req: IncomingMessage, expectedSha256: string, spoolDir: string): Promise<Readable> {
  const hash = createHash('sha256');
  const held = await holdBody(req as AsyncIterable<Buffer>, spoolDir, (chunk) => hash.update(chunk));
  if (hash.digest('hex') !== expectedSha256) {
    held.discard();
    throw new S3Error('XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.", 400);
  }
  return held.open();
}

/**
 * An aws-chunked body with a checksum trailer, decoded for s3rver (with headers that describe the
 * decoded bytes), only if its length is the declared one and its checksum the trailer's.
 */
async function unchunkedBody(req: IncomingMessage, spoolDir: string): Promise<{ body: Readable; headers: IncomingHttpHeaders }> {
  const trailerName = headerValue(req.headers, 'x-amz-trailer')?.trim().toLowerCase();
  const checksum = trailerName ? trailerChecksum(trailerName) : undefined;
  if (trailerName && !checksum) throw new S3Error('InvalidRequest', `The trailer ${trailerName} is not supported; use x-amz-checksum-crc32, -crc32c, -sha1 or -sha256`, 400);
  const decoder = new AwsChunkedDecoder();
  const held = await holdBody(decoder.decode(req as AsyncIterable<Buffer>), spoolDir, (chunk) => checksum?.update(chunk));
  const refuse = (error: S3Error) => {
    held.discard();
    return error;
  };
  const declared = headerValue(req.headers, 'x-amz-decoded-content-length');
  if (declared !== undefined && Number(declared) !== held.length) {
    throw refuse(new S3Error('IncompleteBody', `The body holds ${held.length} bytes, not the ${declared} x-amz-decoded-content-length declares`, 400));
  }
  if (trailerName && checksum) {
    const sent = decoder.trailers.get(trailerName);
    if (sent === undefined) throw refuse(new S3Error('InvalidRequest', `The body ended without the trailer ${trailerName} that x-amz-trailer announced`, 400));
    const computed = checksum.digest();
    if (sent !== computed) throw refuse(new S3Error('BadDigest', `The ${trailerName} you specified did not match the calculated checksum.`, 400));
  }
  const headers: IncomingHttpHeaders = { ...req.headers, 'content-length': String(held.length), 'x-amz-content-sha256': UNSIGNED_PAYLOAD };
  const encodings = (headerValue(req.headers, 'content-encoding') ?? '').split(',').map((e) => e.trim()).filter((e) => e && e !== 'aws-chunked');
  if (encodings.length) headers['content-encoding'] = encodings.join(', ');
  else delete headers['content-encoding'];
  delete headers['x-amz-decoded-content-length'];
  delete headers['x-amz-trailer'];
  delete headers['transfer-encoding'];
  return { body: held.open(), headers };
}

function listOwnBuckets(res: ServerResponse, buckets: { name: string; created: Date }[]): void {
  const xml =
    '<?xml version="1.0" encoding="UTF-8"?>\n<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>123456789000</ID><DisplayName>owner</DisplayName></Owner><Buckets>' +
    buckets.map((b) => `<Bucket><Name>${escapeXml(b.name)}</Name><CreationDate>${b.created.toISOString()}</CreationDate></Bucket>`).join('') +
    '</Buckets></ListAllMyBucketsResult>';
  res.writeHead(200, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(xml) });
  res.end(xml);
}

function sendError(req: IncomingMessage, res: ServerResponse, err: unknown): void {
  const error = err instanceof S3Error ? err : new S3Error('InternalError', 'We encountered an internal error. Please try again.', 500);
  if (!(err instanceof S3Error)) console.error('embedded S3 request failed', err);
  if (res.headersSent) return void res.destroy();
  const requestId = randomUUID();
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${error.code}</Code><Message>${escapeXml(error.message)}</Message><RequestId>${requestId}</RequestId></Error>`;
  // A refused upload is not read: close the connection rather than drain a body we will not keep.
  const unread = !req.complete;
  res.writeHead(error.status, {
    'Content-Type': 'application/xml',
    'Content-Length': req.method === 'HEAD' ? 0 : Buffer.byteLength(xml),
    'x-amz-request-id': requestId,
    ...(unread ? { Connection: 'close' } : {}),
  });
  res.end(req.method === 'HEAD' ? undefined : xml);
}

const escapeXml = (text: string) => text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** Narrows a store written by an older version: directories 0700, files 0600. */
function makePrivate(directory: string): void {
  chmodSync(directory, 0o700);
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) makePrivate(path);
    else if (entry.isFile()) chmodSync(path, 0o600);
  }
}
