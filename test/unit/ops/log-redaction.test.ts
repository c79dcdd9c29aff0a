import { Writable } from 'stream';
import pino from 'pino';
import { LOG_REDACTION } from '../../../ops/log-redaction';

test('credentials, signatures and presigned URLs are censored wherever they are logged', () => {
  const lines: string[] = [];
  const sink = new Writable({ write: (chunk, _enc, done) => void (lines.push(String(chunk)), done()) });
  const log = pino({ redact: LOG_REDACTION }, sink);
  log.info({ taskId: 'import-vol-1', secretAccessKey: 'S1', storage: { secretAccessKey: 'S2', accessKeyId: 'AK' }, request: { manifestUrl: 'http://x/?X-Amz-Signature=abc' } }, 'line');
  log.child({ stage: 'convert' }).warn({ part: { getUrl: 'http://x/?sig' }, headers: { authorization: 'AWS4 sig' } }, 'line');
  const text = lines.join('');
  for (const secret of ['S1', 'S2', 'X-Amz-Signature=abc', 'http://x/?sig', 'AWS4 sig']) expect(text).not.toContain(secret);
  expect(text).toContain('"taskId":"import-vol-1"');
  expect(text).toContain('"accessKeyId":"AK"');
  expect(text).toContain('[redacted]');
});
