const { spawn, spawnSync } = require('child_process');
const { makeS3Client } = require('./dist/toolkit/io/object-storage');
const { CreateBucketCommand } = require('@aws-sdk/client-s3');
const { Upload } = require('@aws-sdk/lib-storage');
const fs = require('fs');
const worker = './dist/bench/convert-worker.js';
function run(cpu, job) {
  const r = spawnSync('taskset', ['-c', cpu, process.execPath, worker, JSON.stringify(job)], { encoding: 'utf8' });
  if (r.status) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}
(async () => {
  fs.rmSync('/dev/shm/pin-store', { recursive: true, force: true }); fs.mkdirSync('/dev/shm/pin-store');
  const child = spawn('taskset', ['-c', '1', process.execPath, '--single-threaded-gc', './dist/bench/s3-server-process.js', 'bench-store', '/dev/shm/pin-store'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const endpoint = await new Promise((res) => child.stdout.once('data', (d) => res(String(d).trim())));
  const s3 = makeS3Client({ endpoint, region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', forcePathStyle: true });
  await s3.send(new CreateBucketCommand({ Bucket: 'bench' }));
  for (const f of ['vmdk', 'raw']) await new Upload({ client: s3, params: { Bucket: 'bench', Key: 'in.' + f, Body: fs.createReadStream('/tmp/bm3/disk.' + f) }, partSize: 16 << 20, queueSize: 4 }).done();
  const cpuArg = process.argv[2] || '0';
  for (const [inp, fmt] of [['vmdk', 'raw'], ['raw', 'raw'], ['raw', 'vmdk']]) {
    for (let i = 0; i < 2; i++) {
      fs.rmSync('/tmp/pin-out', { force: true }); spawnSync('sync');
      const file = run(cpuArg, { input: '/tmp/bm3/disk.' + inp, output: '/tmp/pin-out', outputFormat: fmt });
      const s3r = run(cpuArg, { input: 's3://bench/in.' + inp, output: 's3://bench/out.' + fmt, outputFormat: fmt, s3Endpoint: endpoint, partSize: 8 << 20, queueSize: 4 });
      console.log(`${inp}->${fmt} cpu ${cpuArg}: file ${file.seconds.toFixed(2)} s (cpu ${file.cpuSeconds.toFixed(1)}), S3 ${s3r.seconds.toFixed(2)} s (cpu ${s3r.cpuSeconds.toFixed(1)}, rss ${(s3r.peakRssBytes / 2 ** 20).toFixed(0)}) ratio ${(s3r.seconds / file.seconds).toFixed(2)}`);
    }
  }
  s3.destroy(); child.kill(); fs.rmSync('/dev/shm/pin-store', { recursive: true, force: true }); fs.rmSync('/tmp/pin-out', { force: true });
})();
