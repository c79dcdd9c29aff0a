/**
 * `imaging serve` stops in time (issue #10 item 5/9): with hundreds of imports waiting for an
 * upload that never comes, SIGTERM ends the process within 10 s, and Ctrl-C (SIGINT to the
 * whole process group, as a terminal sends it) does the same for `npm start`. Real processes,
 * driven through the EC2 API by @aws-sdk/client-ec2.
 */
import { join } from 'path';
import { ImportVolumeCommand } from '@aws-sdk/client-ec2';
import { tempDir } from '../helpers/disk-corpus';
import { sdkClient } from '../helpers/ec2-clients';
import { startServeProcess, type RunningServe } from '../helpers/serve-process';

jest.setTimeout(240_000);

const ROOT = join(__dirname, '../..');
const creds = { accessKeyId: 'AKIASHUTDOWN00001', secretAccessKey: 'shutdown-secret-key-0123456789abcd', region: 'us-east-1' };

type Started = RunningServe & { s3: string };

async function start(command: string, args: string[], dir: string): Promise<Started> {
  const service = await startServeProcess([], {
    command: [command, args],
    cwd: ROOT,
    // Its own process group, so that a "Ctrl-C" can go to all of it at once.
    detached: true,
    env: {
      PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir, TMPDIR: process.env.TMPDIR ?? '/tmp',
      IMAGING_DATA_DIR: join(dir, 'data'), IMAGING_PORT: '0', IMAGING_S3_PORT: '0', IMAGING_ADMIN_PORT: '0', IMAGING_LOG_LEVEL: 'warn',
      IMAGING_UPLOAD_POLL_MS: '200', IMAGING_ACCESS_KEY_ID: creds.accessKeyId, IMAGING_SECRET_ACCESS_KEY: creds.secretAccessKey, IMAGING_ACCOUNT_ID: '123456789012',
      // Hundreds of open imports from one account: lift the per-account cap (default 20).
      IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT: '1000',
    },
    embeddedS3: true,
    // `npm start` builds first: minutes on a loaded machine.
    startMs: 200_000,
  });
  groups.push(service.pid);
  return service as Started;
}

/** `count` ImportVolume calls whose manifests are never uploaded: every task waits for its upload. */
async function waitingImports(service: Started, count: number): Promise<void> {
  const ec2 = sdkClient(service.ec2, creds);
  for (let at = 0; at < count; at += 25) {
    await Promise.all(
      Array.from({ length: Math.min(25, count - at) }, (_, i) =>
        ec2.send(new ImportVolumeCommand({
          Image: { Format: 'RAW', Bytes: 2 ** 20, ImportManifestUrl: new URL(`/never-uploaded/manifest-${at + i}.xml`, service.s3).href },
          Volume: { Size: 1 },
          AvailabilityZone: 'z',
        })),
      ),
    );
  }
  ec2.destroy();
}

const groups: number[] = [];
afterAll(() => {
  // A failed test must not leave a service running.
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Sends `signal` to the whole process group; resolves with how long the group took to exit. */
async function stopGroup(service: Started, signal: NodeJS.Signals): Promise<{ ms: number; code: number | string }> {
  const at = Date.now();
  process.kill(-service.child.pid!, signal);
  const killer = setTimeout(() => process.kill(-service.child.pid!, 'SIGKILL'), 30_000);
  const code = await service.exited;
  clearTimeout(killer);
  return { ms: Date.now() - at, code };
}

test('imaging serve with 300 imports waiting for their upload stops within 10 s of SIGTERM', async () => {
  const dir = tempDir('serve-shutdown-');
  const service = await start(process.execPath, [join(ROOT, 'dist/cli/main.js'), 'serve'], dir);
  await waitingImports(service, 300);
  // Let the manifest stage take tasks in and start waiting.
  await new Promise((r) => setTimeout(r, 1500));
  const stopped = await stopGroup(service, 'SIGTERM');
  expect(stopped.ms).toBeLessThan(10_000);
  expect(stopped.code).toBe(0);
});

test('Ctrl-C on npm start with imports waiting for their upload stops it within 10 s', async () => {
  const dir = tempDir('npm-start-shutdown-');
  const service = await start('npm', ['start', '--silent'], dir);
  await waitingImports(service, 50);
  await new Promise((r) => setTimeout(r, 1500));
  const stopped = await stopGroup(service, 'SIGINT');
  expect(stopped.ms).toBeLessThan(10_000);
});
