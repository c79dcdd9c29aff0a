/**
 * What a ranged GET can fail with. Every error says whether asking again may help (`transient`):
 * the caller (HttpRangeSource's retries) decides on that alone.
 */

/** The server answered with a status other than 206 (a 200 means it ignored the Range header). */
export class HttpStatusError extends Error {
  override name = 'HttpStatusError';
  /** Worth another try: 5xx, 429 (too many requests), 408 (request timeout). */
  readonly transient: boolean;

  constructor(
    readonly status: number,
    /** S3's <Code> from an XML error body, e.g. 'NoSuchKey', 'SlowDown'. */
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
    this.transient = status >= 500 || status === 429 || status === 408;
  }
}

/**
 * The exchange broke before a whole response arrived: connection refused or reset, timeout, a body
 * shorter than announced, bytes that are not a well-formed response. Always worth another try.
 */
export class BrokenResponseError extends Error {
  override name = 'BrokenResponseError';
  readonly transient = true;

  constructor(
    message: string,
    /** The socket error's code (ECONNRESET, ETIMEDOUT, …) when there was one. */
    readonly code?: string,
  ) {
    super(message);
  }
}

/**
 * A 206 for bytes other than the ones asked for. Asking again will not help: the object (or the
 * server's idea of it) differs from what the caller expects.
 */
export class RangeMismatchError extends Error {
  override name = 'RangeMismatchError';
  readonly transient = false;
}

/**
 * This process ran out of something of its own (file descriptors: EMFILE, ENFILE; memory for a
 * socket: ENOBUFS, ENOMEM). Not the server's fault and not worth a blind retry: retrying only
 * piles more sockets on a process that has none left. It is the service's failure (a server-side
 * error), never the user's.
 */
export class LocalResourceError extends Error {
  override name = 'LocalResourceError';
  readonly transient = false;
  readonly local = true;

  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

const LOCAL_RESOURCE_CODES: Record<string, string> = {
  EMFILE: 'this process has no file descriptors left (EMFILE)',
  ENFILE: 'the system has no file descriptors left (ENFILE)',
  ENOBUFS: 'the system has no socket buffers left (ENOBUFS)',
  ENOMEM: 'the system has no memory left for a socket (ENOMEM)',
};

/** A LocalResourceError for an error whose code says this process ran out of something, else undefined. */
export function localResourceError(error: unknown, what: string): LocalResourceError | undefined {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string' || !(code in LOCAL_RESOURCE_CODES)) return undefined;
  return new LocalResourceError(`${what}: ${LOCAL_RESOURCE_CODES[code]}`, code);
}

/** The text of the first <name>…</name> in an S3 XML error body, entities decoded. */
export function xmlErrorElement(xml: string, name: string): string | undefined {
  const match = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
  if (!match) return undefined;
  const entities: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
  return match[1].replace(/&(amp|lt|gt|quot|apos);/g, (_, entity: string) => entities[entity]).trim();
}

/** An HttpStatusError for a non-206 answer, with S3's <Code> and <Message> when its body has them. */
export function httpStatusError(status: number, reason: string, body: string): HttpStatusError {
  const code = xmlErrorElement(body, 'Code');
  const message = xmlErrorElement(body, 'Message');
  const summary = code ? `${code}${message ? `: ${message}` : ''}` : reason;
  return new HttpStatusError(status, code, `HTTP ${status}${summary ? ` ${summary}` : ''}`);
}
