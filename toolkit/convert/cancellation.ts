/** Thrown when a conversion stops because its AbortSignal fired; not a fault of the image. */
export class ConversionCancelledError extends Error {
  constructor(message = 'the conversion was cancelled') {
    super(message);
    this.name = 'ConversionCancelledError';
  }
}

export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new ConversionCancelledError();
}

/**
 * Settles like `promise`, or rejects with ConversionCancelledError as soon as `signal` fires.
 *
 * Deliberately not Promise.race against one long-lived "cancelled" promise: every race leaves a
 * reaction on that promise holding its result, so a long conversion would keep every buffer it
 * ever read alive. Here the listener goes away as soon as the race is decided.
 */
export function unlessCancelled<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(new ConversionCancelledError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new ConversionCancelledError());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
