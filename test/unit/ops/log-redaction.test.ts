import { Writable } from 'stream';
import pino from 'pino';
import { censorSecrets, LOG_REDACTION_OPTIONS } from '../../../ops/log-redaction';

function capture() {
  const lines: string[] = [];
  const sink = new Writable({ write: (chunk, _enc, done) => void (lines.push(String(chunk)), done()) });
  return { log: pino({ ...LOG_REDACTION_OPTIONS }, sink), text: () => lines.join('') };
}

test('credentials, signatures and presigned URLs are censored wherever they are logged', () => {
  const { log, text } = capture();
  log.info({ taskId: 'import-vol-1', secretAccessKey: 'S1', storage: { secretAccessKey: 'S2', accessKeyId: 'AK' }, request: { manifestUrl: 'http://x/?X-Amz-Signature=abc' } }, 'line');
  log.child({ stage: 'convert' }).warn({ part: { getUrl: 'http://x/?sig' }, headers: { authorization: 'AWS4 sig' } }, 'line');
  for (const secret of ['S1', 'S2', 'X-Amz-Signature=abc', 'http://x/?sig', 'AWS4 sig']) expect(text()).not.toContain(secret);
  expect(text()).toContain('"taskId":"import-vol-1"');
  expect(text()).toContain('"accessKeyId":"AK"');
  expect(text()).toContain('[redacted]');
});

test('two levels down, in arrays too, a session token under headers, and a child logger\'s bindings', () => {
  const { log, text } = capture();
  log.info({ manifest: { parts: [{ getUrl: 'G0', key: 'k/part0' }, { deleteUrl: 'D1' }] }, headers: { 'x-amz-security-token': 'T1' }, req: { headers: { authorization: 'A1' } } }, 'line');
  log.child({ sessionToken: 'T2', part: 'gateway' }).info({ ok: true }, 'line');
  for (const secret of ['G0', 'D1', 'T1', 'A1', 'T2']) expect(text()).not.toContain(secret);
  expect(text()).toContain('"key":"k/part0"');
  expect(text()).toContain('"part":"gateway"');
});

test('the logged object is never changed, and one without secrets is passed on as it is', () => {
  const entry = { requestId: 'r', action: 'DescribeConversionTasks', nested: { list: [1, { x: 2 }] }, data: Buffer.from('secretAccessKey') };
  expect(censorSecrets(entry)).toBe(entry);
  const withSecret = { storage: { secretAccessKey: 'S', region: 'r' }, other: { a: 1 } };
  const out = censorSecrets(withSecret) as typeof withSecret;
  expect(out).toEqual({ storage: { secretAccessKey: '[redacted]', region: 'r' }, other: { a: 1 } });
  expect(withSecret.storage.secretAccessKey).toBe('S');
  expect(out.other).toBe(withSecret.other);
});

test('an array that holds itself is walked a few levels and logged, not followed for ever', () => {
  const loop: unknown[] = [{ getUrl: 'G' }];
  loop.push(loop);
  const out = censorSecrets({ parts: loop }) as { parts: unknown[] };
  expect(out.parts[0]).toEqual({ getUrl: '[redacted]' });
});
