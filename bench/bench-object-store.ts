/**
 * A minimal S3-compatible object server for the benchmarks, and nothing else.
 *
 * Why: s3rver (our compatibility server for tests) md5s every byte it receives and copies every
 * part again on CompleteMultipartUpload; on the benchmark machine it moves ~80 MiB/s, so an
 * S3 → S3 conversion timed against it measures s3rver, not our engine. Real S3 is many servers
 * and is never the limit of one client. This server does as little per byte as it can on Node's
 * http module: a body is appended to a file (the page cache) as it arrives, and read back from it.
 *
 * What it does: path-style requests (http://host/bucket/key), exactly the calls our S3 source
 * and sink, lib-storage's Upload and `aws s3 cp` make: CreateBucket, HeadBucket, PutObject, HeadObject,
 * GetObject (whole, or one `Range: bytes=a-b` → 206), CreateMultipartUpload, UploadPart,
 * UploadPartCopy (our sink copies zero parts from a zero object), CompleteMultipartUpload,
 * AbortMultipartUpload, DeleteObject; errors as S3 XML. A completed multipart object is the
 * ordered list of its part files (a small record in memory): no byte is copied, and reads span
 * the parts; a copied part is a file of its own, its bytes copied from the source's files. Files
 * of removed objects are rewritten by later uploads rather than deleted. GET honours If-Match,
 * which our source pins its reads with, and UploadPartCopy x-amz-copy-source-if-match.
 *
 * What it leaves out, on purpose: signatures (any credentials pass); checksums (ETags are random
 * tokens, not MD5s: our client asks for checksums only WHEN_REQUIRED); aws-chunked bodies
 * (refused); other bucket calls, listings, copies other than UploadPartCopy, versions, ACLs,
 * virtual-host buckets; persistence (the records live in this process).
 */
import { randomBytes } from 'crypto';
import { closeSync, ftruncateSync, mkdirSync, openSync, readSync, rm, writeSync } from 'fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'http';
import type { AddressInfo } from 'net';
import { join } from 'path';

/** One file holding a run of an object's bytes: the whole object, or one part of it. */
interface Piece {
  file: string;
  size: number;
  /** GETs of an object holding this piece now: a removed piece is recycled once they are done. */
  readers: number;
  removed?: boolean;
}

interface StoredObject {
  pieces: Piece[];
  size: number;
  etag: string; // quoted, as sent in headers
  lastModified: Date;
  contentType: string;
}

interface MultipartUpload {
  bucket: string;
  key: string;
  contentType: string;
  parts: Map<number, Piece & { etag: string }>;
}

export interface BenchObjectStore {
  /** e.g. http://127.0.0.1:40123 */
  endpoint: string;
  close(): Promise<void>;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;
const READ_CHUNK = 1024 * 1024;
/** Files of removed pieces kept for reuse, in bytes; beyond this they are deleted. */
const MAX_SPARE_BYTES = 4 * 1024 ** 3;

class S3Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Starts the server on 127.0.0.1, keeping object bytes as files in `directory` (created if missing). */
export async function startBenchObjectStore(directory: string, port = 0): Promise<BenchObjectStore> {
  mkdirSync(directory, { recursive: true });
  const store = new ObjectStore(directory);
  // No request timeout: a multi-GiB PutObject may legitimately take minutes.
  const server = createServer({ requestTimeout: 0 }, (req, res) => {
    store.handle(req, res).catch((error: unknown) => sendError(req, res, error));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

class ObjectStore {
  private readonly buckets = new Map<string, Map<string, StoredObject>>();
  private readonly uploads = new Map<string, MultipartUpload>();
  /**
   * Files of removed objects and parts, overwritten by the next bodies. On the benchmark VM,
   * writing into pages the page cache already holds is far cheaper than into fresh ones (the
   * host backs a guest page on first touch): receiving 2 GiB costs this process ~2 CPU-s into
   * reused files and ~8 into new ones.
   */
  private readonly spares: Piece[] = [];
  private spareBytes = 0;

  constructor(private readonly directory: string) {}

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://bench');
    const [bucketName, ...keyPath] = url.pathname.slice(1).split('/');
    const bucket = decodeURIComponent(bucketName);
    const key = decodeURIComponent(keyPath.join('/'));
    const query = url.searchParams;
    if (!bucket) throw new S3Error(501, 'NotImplemented', 'ListBuckets is not implemented');
    if (!key) return this.createBucket(req, res, bucket);
    const objects = this.buckets.get(bucket);
    if (!objects) throw new S3Error(404, 'NoSuchBucket', `bucket ${bucket} does not exist`);
    const uploadId = query.get('uploadId');
    switch (req.method) {
      case 'GET':
      case 'HEAD':
        return this.getObject(req, res, objectOf(objects, key));
      case 'PUT':
        if (req.headers['x-amz-copy-source']) {
          if (!uploadId) throw new S3Error(501, 'NotImplemented', 'CopyObject is not implemented (UploadPartCopy is)');
          return this.uploadPartCopy(req, res, this.uploadOf(uploadId, bucket, key), Number(query.get('partNumber')));
        }
        if (uploadId) return this.uploadPart(req, res, this.uploadOf(uploadId, bucket, key), Number(query.get('partNumber')));
        return this.putObject(req, res, objects, key);
      case 'POST':
        if (query.has('uploads')) return this.createUpload(req, res, bucket, key);
        if (uploadId) return this.completeUpload(req, res, objects, uploadId, this.uploadOf(uploadId, bucket, key));
        break;
      case 'DELETE':
        if (uploadId) {
          const upload = this.uploadOf(uploadId, bucket, key);
          this.uploads.delete(uploadId);
          this.remove([...upload.parts.values()]);
        } else {
          this.remove(objects.get(key)?.pieces ?? []);
          objects.delete(key);
        }
        res.writeHead(204).end();
        return;
    }
    throw new S3Error(501, 'NotImplemented', `${req.method} ${url.search || 'object'} is not implemented`);
  }

  /** CreateBucket; creating one that exists succeeds, as in us-east-1. HeadBucket (the export stage checks its bucket). */
  private async createBucket(req: IncomingMessage, res: ServerResponse, bucket: string): Promise<void> {
    if (req.method === 'HEAD') {
      if (!this.buckets.has(bucket)) throw new S3Error(404, 'NoSuchBucket', `bucket ${bucket} does not exist`);
      return void res.writeHead(200).end();
    }
    if (req.method !== 'PUT') throw new S3Error(501, 'NotImplemented', `${req.method} on a bucket is not implemented`);
    req.resume(); // a CreateBucketConfiguration body, if any, says nothing we need
    if (!this.buckets.has(bucket)) this.buckets.set(bucket, new Map());
    res.writeHead(200, { Location: `/${bucket}` }).end();
  }

  private async getObject(req: IncomingMessage, res: ServerResponse, object: StoredObject): Promise<void> {
    const ifMatch = req.headers['if-match'];
    if (ifMatch && ifMatch !== '*' && unquote(ifMatch) !== unquote(object.etag)) {
      throw new S3Error(412, 'PreconditionFailed', 'the object does not match If-Match');
    }
    const range = parseRange(req.headers.range, object.size);
    const [start, end] = range ?? [0, object.size];
    const headers: Record<string, string | number> = {
      'Content-Length': end - start,
      'Content-Type': object.contentType,
      ETag: object.etag,
      'Last-Modified': object.lastModified.toUTCString(),
      'Accept-Ranges': 'bytes',
    };
    if (range) headers['Content-Range'] = `bytes ${start}-${end - 1}/${object.size}`;
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD') return void res.end();
    // The object may be replaced meanwhile; its files are not reused until this GET is done.
    for (const piece of object.pieces) piece.readers++;
    try {
      await sendBytes(object.pieces, start, end, res);
    } finally {
      for (const piece of object.pieces) if (--piece.readers === 0 && piece.removed) this.recycle(piece);
    }
  }

  private async putObject(req: IncomingMessage, res: ServerResponse, objects: Map<string, StoredObject>, key: string): Promise<void> {
    const piece = await this.receiveBody(req);
    const etag = newEtag();
    this.replace(objects, key, { pieces: [piece], size: piece.size, etag, lastModified: new Date(), contentType: contentTypeOf(req) });
    res.writeHead(200, { ETag: etag }).end();
  }

  private async createUpload(req: IncomingMessage, res: ServerResponse, bucket: string, key: string): Promise<void> {
    req.resume();
    const uploadId = randomBytes(16).toString('hex');
    this.uploads.set(uploadId, { bucket, key, contentType: contentTypeOf(req), parts: new Map() });
    sendXml(res, 200, 'InitiateMultipartUploadResult', { Bucket: bucket, Key: key, UploadId: uploadId });
  }

  private async uploadPart(req: IncomingMessage, res: ServerResponse, upload: MultipartUpload, partNumber: number): Promise<void> {
    checkPartNumber(partNumber);
    const etag = this.storePart(upload, partNumber, await this.receiveBody(req));
    res.writeHead(200, { ETag: etag }).end();
  }

  /**
   * UploadPartCopy: the part becomes a copy of a stored object's bytes (`x-amz-copy-source`, in
   * `x-amz-copy-source-range` or whole), if it matches `x-amz-copy-source-if-match`.
   */
  private async uploadPartCopy(req: IncomingMessage, res: ServerResponse, upload: MultipartUpload, partNumber: number): Promise<void> {
    checkPartNumber(partNumber);
    req.resume(); // no body
    const { bucket, key } = parseCopySource(String(req.headers['x-amz-copy-source']));
    const objects = this.buckets.get(bucket);
    if (!objects) throw new S3Error(404, 'NoSuchBucket', `bucket ${bucket} does not exist`);
    const source = objectOf(objects, key);
    const ifMatch = req.headers['x-amz-copy-source-if-match'];
    if (typeof ifMatch === 'string' && ifMatch !== '*' && unquote(ifMatch) !== unquote(source.etag)) {
      throw new S3Error(412, 'PreconditionFailed', 'the copy source does not match x-amz-copy-source-if-match');
    }
    const [start, end] = parseRange(req.headers['x-amz-copy-source-range'] as string | undefined, source.size) ?? [0, source.size];
    const etag = this.storePart(upload, partNumber, this.copyBytes(source.pieces, start, end));
    sendXml(res, 200, 'CopyPartResult', { ETag: etag, LastModified: new Date().toISOString() });
  }

  /** Records `piece` as part `partNumber` (replacing one uploaded before); returns its ETag. */
  private storePart(upload: MultipartUpload, partNumber: number, piece: Piece): string {
    const etag = newEtag();
    const replaced = upload.parts.get(partNumber);
    upload.parts.set(partNumber, { ...piece, etag });
    if (replaced) this.remove([replaced]);
    return etag;
  }

  /** The object becomes the listed part files, in order: a record, not a copy. */
  private async completeUpload(req: IncomingMessage, res: ServerResponse, objects: Map<string, StoredObject>, uploadId: string, upload: MultipartUpload): Promise<void> {
    const listed = parseCompletedParts(await readText(req));
    if (listed.length === 0) throw new S3Error(400, 'MalformedXML', 'the request lists no parts');
    const pieces = listed.map(({ partNumber, etag }, i) => {
      const part = upload.parts.get(partNumber);
      if (!part || unquote(etag) !== unquote(part.etag)) throw new S3Error(400, 'InvalidPart', `part ${partNumber} was not uploaded or its ETag differs`);
      if (i > 0 && partNumber <= listed[i - 1].partNumber) throw new S3Error(400, 'InvalidPartOrder', 'parts must be listed in ascending order');
      if (i < listed.length - 1 && part.size < MIN_PART_SIZE) throw new S3Error(400, 'EntityTooSmall', `part ${partNumber} is smaller than 5 MiB`);
      return part;
    });
    this.uploads.delete(uploadId);
    this.remove([...upload.parts.values()].filter((part) => !pieces.includes(part)));
    const etag = `"${randomBytes(16).toString('hex')}-${pieces.length}"`;
    const size = pieces.reduce((total, piece) => total + piece.size, 0);
    this.replace(objects, upload.key, { pieces, size, etag, lastModified: new Date(), contentType: upload.contentType });
    sendXml(res, 200, 'CompleteMultipartUploadResult', { Location: `/${upload.bucket}/${upload.key}`, Bucket: upload.bucket, Key: upload.key, ETag: etag });
  }

  private uploadOf(uploadId: string, bucket: string, key: string): MultipartUpload {
    const upload = this.uploads.get(uploadId);
    if (!upload || upload.bucket !== bucket || upload.key !== key) throw new S3Error(404, 'NoSuchUpload', `no upload ${uploadId} for ${bucket}/${key}`);
    return upload;
  }

  private replace(objects: Map<string, StoredObject>, key: string, object: StoredObject): void {
    const old = objects.get(key);
    objects.set(key, object);
    if (old) this.remove(old.pieces);
  }

  private remove(pieces: Piece[]): void {
    for (const piece of pieces) {
      piece.removed = true;
      if (piece.readers === 0) this.recycle(piece);
    }
  }

  private recycle(piece: Piece): void {
    if (this.spareBytes + piece.size > MAX_SPARE_BYTES) return rm(piece.file, { force: true }, () => undefined);
    this.spares.push(piece);
    this.spareBytes += piece.size;
  }

  /**
   * Writes the request body into a file of its own (a spare one if there is one) as it arrives,
   * by synchronous writes: the page cache takes them at memory speed, and a WriteStream's
   * thread-pool round trip and buffering per 64 KiB chunk cost more CPU than the write itself.
   */
  private async receiveBody(req: IncomingMessage): Promise<Piece> {
    if (/aws-chunked/.test(req.headers['content-encoding'] ?? '') || /^STREAMING-/.test(String(req.headers['x-amz-content-sha256'] ?? ''))) {
      req.resume();
      throw new S3Error(501, 'NotImplemented', 'aws-chunked bodies are not supported: send plain bodies (checksums WHEN_REQUIRED)');
    }
    const { piece, fd } = this.newPiece();
    try {
      for await (const chunk of req as AsyncIterable<Buffer>) {
        for (let at = 0; at < chunk.length; ) at += writeSync(fd, chunk, at);
        piece.size += chunk.length;
      }
      ftruncateSync(fd, piece.size); // a spare file may have been longer
      const expected = req.headers['content-length'];
      if (expected !== undefined && Number(expected) !== piece.size) throw new S3Error(400, 'IncompleteBody', `received ${piece.size} of ${expected} bytes`);
      return piece;
    } catch (error) {
      this.remove([piece]);
      throw error;
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Copies bytes [start, end) of an object made of `pieces` into a piece of its own, by
   * synchronous reads and writes through one reused buffer. Nothing is awaited, so no source
   * piece can be removed and recycled under the copy.
   */
  private copyBytes(pieces: Piece[], start: number, end: number): Piece {
    const { piece, fd } = this.newPiece();
    const buffer = readBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_CHUNK);
    try {
      for (const { piece: source, from, to } of piecesInRange(pieces, start, end)) {
        const sourceFd = openSync(source.file, 'r');
        try {
          for (let position = from; position < to; ) {
            const n = readSync(sourceFd, buffer, 0, Math.min(buffer.length, to - position), position);
            if (n === 0) throw new Error(`${source.file} is shorter than its record`);
            for (let at = 0; at < n; ) at += writeSync(fd, buffer, at, n - at);
            piece.size += n;
            position += n;
          }
        } finally {
          closeSync(sourceFd);
        }
      }
      ftruncateSync(fd, piece.size); // a spare file may have been longer
      return piece;
    } catch (error) {
      this.remove([piece]);
      throw error;
    } finally {
      closeSync(fd);
      readBuffers.push(buffer);
    }
  }

  /** An empty piece to write into, in a spare file if there is one (see spares), opened for writing. */
  private newPiece(): { piece: Piece; fd: number } {
    const spare = this.spares.pop();
    if (spare) this.spareBytes -= spare.size;
    const piece: Piece = { file: spare?.file ?? join(this.directory, randomBytes(12).toString('hex')), size: 0, readers: 0 };
    return { piece, fd: openSync(piece.file, spare ? 'r+' : 'w') };
  }
}

function checkPartNumber(partNumber: number): void {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10_000) throw new S3Error(400, 'InvalidArgument', 'partNumber must be 1..10000');
}

/** The bucket and key of an `x-amz-copy-source` header: `[/]bucket/key[?versionId=…]`, URL-encoded. */
function parseCopySource(header: string): { bucket: string; key: string } {
  const path = header.replace(/^\//, '').split('?')[0];
  const slash = path.indexOf('/');
  if (slash <= 0 || slash === path.length - 1) throw new S3Error(400, 'InvalidArgument', `x-amz-copy-source ${header} is not bucket/key`);
  return { bucket: decodeURIComponent(path.slice(0, slash)), key: decodeURIComponent(path.slice(slash + 1)) };
}

function objectOf(objects: Map<string, StoredObject>, key: string): StoredObject {
  const object = objects.get(key);
  if (!object) throw new S3Error(404, 'NoSuchKey', `no object ${key}`);
  return object;
}

/** The pieces that hold bytes [start, end) of an object, each with the byte range [from, to) within its own file. */
function* piecesInRange(pieces: Piece[], start: number, end: number): Generator<{ piece: Piece; from: number; to: number }> {
  let pieceStart = 0;
  for (const piece of pieces) {
    const pieceEnd = pieceStart + piece.size;
    if (pieceEnd > start && pieceStart < end) yield { piece, from: Math.max(start, pieceStart) - pieceStart, to: Math.min(end, pieceEnd) - pieceStart };
    pieceStart = pieceEnd;
    if (pieceStart >= end) return;
  }
}

/** Read buffers, reused from response to response. */
const readBuffers: Buffer[] = [];

/**
 * Sends bytes [start, end) of an object made of `pieces`, read from each piece file in turn by
 * synchronous reads into two reused buffers: a buffer is read into again once the socket has
 * taken it. (A ReadStream allocates a fresh buffer per read and goes through the thread pool,
 * which costs more CPU than the copy itself.)
 */
async function sendBytes(pieces: Piece[], start: number, end: number, res: ServerResponse): Promise<void> {
  const owned = 2;
  const free = Array.from({ length: owned }, () => readBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_CHUNK));
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const waitForBuffer = (): Promise<void> => new Promise((resolve) => (wake = resolve));
  res.once('close', () => {
    if (!res.writableFinished) failure ??= new Error('the client closed the connection');
    wake?.();
  });
  for (const { piece, from, to } of piecesInRange(pieces, start, end)) {
    const fd = openSync(piece.file, 'r');
    try {
      for (let position = from; position < to; ) {
        while (free.length === 0 && !failure) await waitForBuffer();
        if (failure) throw failure;
        const buffer = free.pop()!;
        const n = readSync(fd, buffer, 0, Math.min(buffer.length, to - position), position);
        if (n === 0) throw new Error(`${piece.file} is shorter than its record`);
        position += n;
        res.write(buffer.subarray(0, n), (error) => {
          if (error) failure ??= error;
          free.push(buffer);
          wake?.();
        });
      }
    } finally {
      closeSync(fd);
    }
  }
  while (free.length < owned && !failure) await waitForBuffer();
  if (failure) throw failure;
  readBuffers.push(...free);
  res.end();
}

/**
 * `bytes=a-b`, `bytes=a-` or `bytes=-n` as [start, end) clamped to the object; undefined for no
 * (or a multi-range, which S3 ignores) Range header. A range starting past the end is InvalidRange.
 */
function parseRange(header: string | undefined, size: number): [number, number] | undefined {
  const match = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (match[1] === '') {
    start = Math.max(0, size - Number(match[2]));
    end = size;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size : Math.min(size, Number(match[2]) + 1);
  }
  if (start >= size || start >= end) {
    throw new S3Error(416, 'InvalidRange', `the range ${header} is not satisfiable for ${size} bytes`, { 'Content-Range': `bytes */${size}` });
  }
  return [start, end];
}

/** PartNumber and ETag of each <Part> in a CompleteMultipartUpload body, in the order listed. */
function parseCompletedParts(xml: string): { partNumber: number; etag: string }[] {
  return [...xml.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map(([, part]) => ({
    partNumber: Number(/<PartNumber>\s*(\d+)\s*<\/PartNumber>/.exec(part)?.[1]),
    etag: (/<ETag>([\s\S]*?)<\/ETag>/.exec(part)?.[1] ?? '').replace(/&quot;|&#34;/g, '"'),
  }));
}

async function readText(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function newEtag(): string {
  return `"${randomBytes(16).toString('hex')}"`;
}

function unquote(etag: string): string {
  return etag.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
}

function contentTypeOf(req: IncomingMessage): string {
  return req.headers['content-type'] ?? 'application/octet-stream';
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function sendXml(res: ServerResponse, status: number, root: string, fields: Record<string, string>): void {
  const body = Object.entries(fields)
    .map(([name, value]) => `<${name}>${escapeXml(value)}</${name}>`)
    .join('');
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${body}</${root}>`;
  res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(xml) }).end(xml);
}

/** S3 errors as S3 sends them (HEAD responses carry no body); anything else is an InternalError. */
function sendError(req: IncomingMessage, res: ServerResponse, error: unknown): void {
  const s3Error = error instanceof S3Error ? error : new S3Error(500, 'InternalError', (error as Error)?.message ?? String(error));
  if (res.headersSent) {
    res.destroy(); // a body was under way: cut it, so the client sees a short read, not a short object
    return;
  }
  req.resume();
  if (req.method === 'HEAD') {
    res.writeHead(s3Error.status, s3Error.headers).end();
    return;
  }
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${s3Error.code}</Code><Message>${escapeXml(s3Error.message)}</Message><Resource>${escapeXml(req.url ?? '')}</Resource></Error>`;
  res.writeHead(s3Error.status, { ...s3Error.headers, 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(xml) }).end(xml);
}
