/** Retries an operation that can fail transiently (a dropped connection, a 503), with backoff. */
export async function withRetries<T>(
  operation: (attempt: number) => Promise<T>,
  options: { attempts: number; baseDelayMs: number; isTransient: (error: unknown) => boolean },
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (attempt >= options.attempts || !options.isTransient(error)) throw error;
      const delay = options.baseDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random());
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
