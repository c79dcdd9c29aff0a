/**
 * Keys whose values never reach a log line, whatever object they are logged in: credentials,
 * signatures and connection strings (which may carry a password).
 *
 * Spread LOG_REDACTION_OPTIONS into a pino logger's options. A logged object is censored down to
 * two levels of nesting (`key`, `a.key`, `a.b.key`; an array's items count as the array) by a formatter that copies
 * only an object holding a secret; pino's own `redact` is kept for the top-level keys alone,
 * where it also covers a child logger's bindings. pino's redact with `*.key` and `*.*.key` paths
 * cost ~50 µs per line, more than the rest of an EC2 request (the gateway logs one a request).
 */
const SECRET_KEYS = ['secretAccessKey', 'sessionToken', 'authorization', 'Authorization', 'password', 'mongodbUri', 'signature', 'X-Amz-Signature', 'manifestUrl', 'getUrl', 'putUrl', 'deleteUrl'];
const SECRET = new Set(SECRET_KEYS);
const CENSOR = '[redacted]';
const DEPTH = 2;

export const LOG_REDACTION_OPTIONS = {
  redact: { paths: [...SECRET_KEYS, 'headers["x-amz-security-token"]'], censor: CENSOR },
  formatters: { log: censorSecrets },
};

/** `object` with every secret within DEPTH levels replaced by the censor; `object` itself (unchanged) when it holds none. */
export function censorSecrets(object: Record<string, unknown>): Record<string, unknown> {
  return censored(object, 0, '', 0) as Record<string, unknown>;
}

/** `hops` counts arrays too, so that an array holding itself ends the walk. */
function censored(value: unknown, depth: number, parentKey: string, hops: number): unknown {
  if (value === null || typeof value !== 'object' || hops > 2 * DEPTH + 2) return value;
  const isArray = Array.isArray(value);
  // Only plain objects and arrays: a Buffer, a Date or a class instance is logged as it is.
  if (!isArray && Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) return value;
  let copy: Record<string, unknown> | unknown[] | undefined;
  const source = value as Record<string, unknown>;
  for (const key of Object.keys(source)) {
    const child = source[key];
    let next = child;
    if (child !== undefined && (SECRET.has(key) || (parentKey === 'headers' && key === 'x-amz-security-token'))) next = CENSOR;
    // An array's items stand where the array stands: `parts[0].getUrl` is `parts.getUrl`.
    else if (isArray) next = censored(child, depth, parentKey, hops + 1);
    else if (depth < DEPTH) next = censored(child, depth + 1, key, hops + 1);
    if (next !== child) {
      copy ??= isArray ? [...(value as unknown[])] : { ...source };
      (copy as Record<string, unknown>)[key] = next;
    }
  }
  return copy ?? value;
}
