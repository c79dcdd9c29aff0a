/**
 * Dynamic validation through `imaging serve` in-process: `imaging import-image --boot-check-marker`
 * sends ImportImage with the extension parameters BootCheck/BootCheckMarker; the disk (SYSLINUX,
 * the host's Debian kernel and a busybox initramfs on partition 1, a Debian-shaped root on
 * partition 2 for the static checks) passes validate, is booted under qemu by the boot-check
 * stage (TCG, bounded by IMAGING_BOOT_CHECK_TIMEOUT_SECONDS) to its marker, and becomes an image;
 * `describe-import-image-tasks --json` shows the guest report and the boot verdict with the
 * console's last lines, and boto3 reads Platform/Architecture/BootMode from the report (skipping
 * the elements EC2 does not have).
 */
import type { RunningService } from '../../cli/serve';
import { tempDir } from '../helpers/disk-corpus';
import { workspace } from '../helpers/guest-images';
import { BOOT_MARKER, makeLinuxBootDisk } from '../helpers/boot-disk';
import { boto3Call } from '../helpers/ec2-clients';
import { runCli, startTestService, type Endpoints } from './import-driver';

let service: RunningService;
let endpoints: Endpoints;
let disk: string;

beforeAll(async () => {
  const dir = tempDir('e2e-boot-check-');
  disk = makeLinuxBootDisk(workspace('e2e-boot-disk-'), 'linux-boot', { debianRoot: true });
  // TCG: the same speed class on every CI host (a nested /dev/kvm can be slower); off by default
  // for imports that do not ask (IMAGING_BOOT_CHECK=on-request).
  ({ service, endpoints } = await startTestService(dir, { bootCheckAccelerator: 'tcg', bootCheckTimeoutSeconds: '240', bootCheckMemoryMb: '256' }));
}, 120_000);

afterAll(async () => {
  await service?.stop();
});

test('import-image --boot-check-marker: booted to the marker, the verdict and console on the task, an image made', async () => {
  const { stdout } = await runCli(endpoints, ['import-image', disk, '--format', 'raw', '--bucket', 'boot-images', '--boot-check-marker', BOOT_MARKER, '--wait', '--json', '--no-progress']);
  const done = JSON.parse(stdout);
  console.log(`boot check through imaging serve: ${done.bootCheck?.message}`);
  expect(done).toMatchObject({ status: 'completed', platform: 'Linux', architecture: 'x86_64', bootMode: 'legacy-bios' });
  expect(done.imageId).toMatch(/^ami-[0-9a-f]{17}$/);
  expect(done.validation.verdict).toEqual({ accepted: true, message: 'accepted: Debian GNU/Linux 12 (bookworm), x86_64, boots with legacy BIOS, kernel 6.1.0-18-amd64' });
  expect(done.bootCheck).toMatchObject({ booted: true, reached: 'marker', accelerator: 'tcg' });
  expect(done.bootCheck.message).toMatch(/^booted to the marker "IMAGING-BOOT-CHECK: init reached" in \d+\.\d s$/);
  expect(done.bootCheck.console).toContain(BOOT_MARKER);

  const described = (await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImportImageTasks', { ImportTaskIds: [done.importTaskId] })).ImportImageTasks[0];
  expect(described).toMatchObject({ Status: 'completed', Platform: 'Linux', Architecture: 'x86_64', BootMode: 'legacy-bios', ImageId: done.imageId });
  const image = (await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImages', { ImageIds: [done.imageId] })).Images[0];
  expect(image).toMatchObject({ Architecture: 'x86_64', BootMode: 'legacy-bios', PlatformDetails: 'Linux/UNIX' });

  // Without the parameter the same disk is not booted (on-request is the default).
  const plain = JSON.parse((await runCli(endpoints, ['import-image', 's3://boot-images/linux-boot.raw', '--format', 'raw', '--wait', '--json', '--no-progress'])).stdout);
  expect(plain.status).toBe('completed');
  expect(plain.bootCheck).toBeUndefined();
}, 600_000);
