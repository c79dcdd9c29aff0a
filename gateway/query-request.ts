/**
 * An EC2 Query request, read once from the wire: parameters from the query string (GET) or the
 * form-encoded body (POST), with typed accessors so actions never touch raw strings twice.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'http';
import { Ec2Error, invalidValue, missingParameter } from './errors';

export const MAX_BODY_BYTES = 1024 * 1024;
const MAX_PARAMETERS = 1000;

/** The bytes of the request exactly as they came, which signature checks need. */
export interface RawRequest {
  method: string;
  /** Path as sent, still percent-encoded, without the query string. */
  path: string;
  /** Query string as sent, without the leading '?'. */
  rawQuery: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface QueryRequest {
  raw: RawRequest;
  params: QueryParams;
  action: string;
  version?: string;
}

/** Reads the body, refusing (before buffering it all) anything larger than `limit`. */
export function readRawRequest(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<RawRequest> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const base = { method: (req.method ?? 'GET').toUpperCase(), path: q < 0 ? url : url.slice(0, q), rawQuery: q < 0 ? '' : url.slice(q + 1), headers: req.headers };
  const tooLarge = () => new Ec2Error('InvalidParameterValue', `The request body is larger than ${limit} bytes; EC2 Query requests are small, send image data to object storage instead`, 413);
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) return reject(tooLarge());
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => failed || resolve({ ...base, body: Buffer.concat(chunks) }));
    req.on('error', (err) => failed || ((failed = true), reject(err)));
  });
}

const FORM_TYPE = 'application/x-www-form-urlencoded';

/** Collects the parameters of a GET or POST Query request and picks out Action and Version. */
export function parseQueryRequest(raw: RawRequest): QueryRequest {
  if (raw.method !== 'GET' && raw.method !== 'POST') {
    throw new Ec2Error('UnsupportedOperation', `HTTP method ${raw.method} is not supported; send EC2 Query requests as GET or POST`, 405);
  }
  const entries = [...new URLSearchParams(raw.rawQuery)];
  if (raw.method === 'POST' && raw.body.length > 0) {
    const contentType = String(raw.headers['content-type'] ?? FORM_TYPE).split(';')[0].trim().toLowerCase();
    if (contentType !== FORM_TYPE) {
      throw new Ec2Error('InvalidParameterValue', `Content-Type ${contentType} is not supported; send the parameters as ${FORM_TYPE}`, 415);
    }
    entries.push(...new URLSearchParams(raw.body.toString('utf8')));
  }
  const params = new QueryParams(entries);
  const action = params.string('Action');
  if (!action) throw missingParameter('Action');
  return { raw, params, action, version: params.string('Version') };
}

/** Parameter accessors that fail with the EC2 error a client expects. */
export class QueryParams {
  private readonly values = new Map<string, string>();

  constructor(entries: Iterable<[string, string]>) {
    for (const [name, value] of entries) {
      // One value per name: two would let the signed and the acted-on value differ.
      if (this.values.has(name)) throw new Ec2Error('InvalidParameter', `The parameter ${name} is given more than once`);
      this.values.set(name, value);
      if (this.values.size > MAX_PARAMETERS) throw new Ec2Error('InvalidParameter', `The request has more than ${MAX_PARAMETERS} parameters`);
    }
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  entries(): [string, string][] {
    return [...this.values];
  }

  string(name: string): string | undefined {
    return this.values.get(name);
  }

  requiredString(name: string): string {
    const value = this.values.get(name);
    if (value === undefined || value === '') throw missingParameter(name);
    return value;
  }

  /** A whole number ≥ 1 that is exactly representable (EC2 `long` parameters). */
  positiveInteger(name: string): number | undefined {
    const text = this.values.get(name);
    if (text === undefined) return undefined;
    const value = Number(text);
    if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < 1) {
      throw invalidValue(name, text, 'It must be a positive whole number.');
    }
    return value;
  }

  requiredPositiveInteger(name: string): number {
    if (!this.has(name) || this.values.get(name) === '') throw missingParameter(name);
    return this.positiveInteger(name)!;
  }

  boolean(name: string): boolean | undefined {
    const text = this.values.get(name);
    if (text === undefined) return undefined;
    const lower = text.toLowerCase();
    if (lower === 'true') return true;
    if (lower === 'false') return false;
    throw invalidValue(name, text, 'It must be true or false.');
  }

  /** Values of `Name.1`, `Name.2`, … in index order (the Query encoding of a list). */
  list(name: string): string[] {
    const indexed: [number, string][] = [];
    const pattern = new RegExp(`^${name.replace(/\./g, '\\.')}\\.(\\d+)$`);
    for (const [key, value] of this.values) {
      const match = pattern.exec(key);
      if (!match) continue;
      const index = Number(match[1]);
      if (index < 1) throw new Ec2Error('InvalidParameter', `List parameter ${key} is invalid; list indexes start at 1`);
      indexed.push([index, value]);
    }
    return indexed.sort((a, b) => a[0] - b[0]).map(([, value]) => value);
  }
}
