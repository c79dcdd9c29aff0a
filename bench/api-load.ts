/**
 * Benchmark: the EC2 gateway's describe paths under load, with many tasks in the store.
 *
 * For each store (embedded SQLite, MongoDB) and each task count, the store is filled with tasks
 * of 100 accounts (every kind, spread over time), a gateway is started in a child process on
 * that store (accounts and keys read from it, as a shared service does), and this process
 * drives signed requests at it over loopback with a fixed number of requests in flight:
 *
 *   conv one   DescribeConversionTasks for one task of the caller
 *   conv 20    DescribeConversionTasks naming 20 tasks of the caller
 *   image one  DescribeImportImageTasks for one task of the caller
 *   image page DescribeImportImageTasks MaxResults=20 (the caller's newest)
 *   image deep DescribeImportImageTasks MaxResults=20 with the NextToken of the 10th page
 *
 * Each request is signed once (SigV4, Authorization header, as the SDKs sign) and replayed: the
 * gateway verifies every one in full, and the load generator spends its time sending. By default
 * the generator writes the request's bytes on keep-alive sockets and reads back only each
 * answer's status and length (the first answer is parsed and checked in full); `--client http`
 * drives node's http client instead, which costs about as much CPU per request as the gateway. Every
 * answer must be 200 with the task ids the case asked for. Each row is followed by the same
 * action run alone in this process (no HTTP, no signature, one call at a time): the part of a
 * request's cost that the number of tasks could change.
 *
 *   npm run bench:api-load [-- --tasks 3000,100000 --stores sqlite,mongo --seconds 5 --concurrency 16]
 *
 * On a shared machine a figure means little alone. `--baseline OTHER/dist/bench/api-load.js`
 * (another build of this bench, e.g. of main) starts that build's gateway on the same store
 * beside ours and drives the two turn by turn, case by case, the action alone too (loaded from
 * that build) in `--rounds` windows each (5 by default), then prints ours over the baseline. `--cases 'conv one,conv 20'` runs only those
 * cases; `--cpu-prof DIR` has our gateway child write a V8 CPU profile into DIR when it stops.
 *
 * MongoDB is MONGODB_URI when set (a fresh database per run, dropped afterwards), else jongodb
 * (test/helpers/mongo-server.ts). jongodb scans its whole collection for every query (no index
 * is used: finding one task by id among 8,000 took 86 ms here), so without MONGODB_URI the MongoDB
 * rows use --mongo-tasks (default 3000,10000) and show the test server's limits, not the store's.
 */
import { execFileSync, fork, type ChildProcess } from 'child_process';
import { randomBytes } from 'crypto';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { Agent, request as httpRequest } from 'http';
import { connect, type Socket } from 'net';
import { loadavg, tmpdir } from 'os';
import { dirname, join, resolve } from 'path';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { MongoClient } from 'mongodb';
import { createAccount, StoreAccountDirectory, type NewAccount } from '../gateway/accounts';
import { runAction } from '../gateway/actions';
import type { ActionContext } from '../gateway/actions/action';
import { QueryParams } from '../gateway/query-request';
import { createGateway } from '../gateway/server';
import { renderResponse } from '../gateway/xml';
import { openTaskStore } from '../tasks/open-store';
import type { TaskStore } from '../tasks/store';
import type { TaskDocument, TaskKind } from '../tasks/task';
import { startMongoServer } from '../test/helpers/mongo-server';

const ACCOUNTS = 100;
const KINDS: TaskKind[] = ['import-volume', 'import-instance', 'import-image', 'import-snapshot'];
const PAGE = 20;

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 && process.argv[at + 1] ? process.argv[at + 1] : fallback;
}

// ---- the gateway child ---------------------------------------------------------------------

async function serveChild(storeUrl: string, mongoDbName?: string): Promise<void> {
  // Exiting on SIGTERM (instead of dying of it) lets --cpu-prof write its profile.
  process.once('SIGTERM', () => process.exit(0));
  const tasks = await openTaskStore(storeUrl, mongoDbName ? { mongoDbName } : {});
  const gateway = createGateway({
    tasks,
    publish: async () => undefined,
    accounts: new StoreAccountDirectory(tasks),
    region: 'us-east-1',
    allowedObjectHosts: [],
    log: { info: () => undefined, warn: () => undefined, error: (obj, msg) => console.error(msg, obj) },
  });
  const { url } = await gateway.listen(0);
  process.send!({ url });
}

// ---- filling the store ------------------------------------------------------------------------

/** A finished task as the pipeline leaves it: request, artifacts, history. */
function taskDocument(id: string, kind: TaskKind, accountId: string, createdAt: Date): TaskDocument {
  const at = createdAt.toISOString();
  const imageSpec = kind === 'import-image' || kind === 'import-snapshot';
  const manifestUrl = `http://objects.example:9000/uploads/${id}/manifest.xml?X-Amz-Signature=${'0'.repeat(64)}`;
  return {
    id,
    kind,
    accountId,
    state: 'completed',
    statusMessage: '',
    progress: 100,
    bytesConverted: 1 << 30,
    request: {
      format: 'VMDK',
      bytes: 734003200,
      manifestUrl: imageSpec ? '' : manifestUrl,
      volumeSizeGiB: 8,
      availabilityZone: 'us-east-1a',
      ...(kind === 'import-instance' ? { instance: { instanceId: `i-${randomBytes(9).toString('hex').slice(0, 17)}`, architecture: 'x86_64' as const, platform: 'Windows' as const } } : {}),
      ...(imageSpec ? { importImage: { source: { bucket: 'disks', key: `${id}.vmdk` }, architecture: 'x86_64', platform: 'Linux' as const } } : {}),
    },
    artifacts: {
      image: { bucket: 'imaging-images', key: `images/${id}/disk.raw`, size: 1 << 30, sha256: 'ab'.repeat(32) },
      ...(imageSpec ? { snapshotId: `snap-${randomBytes(9).toString('hex').slice(0, 17)}` } : { volumeId: `vol-${randomBytes(9).toString('hex').slice(0, 17)}` }),
      ...(kind === 'import-image' ? { imageId: `ami-${randomBytes(9).toString('hex').slice(0, 17)}` } : {}),
    },
    history: [
      { at, from: null, to: 'pending-upload', message: 'Pending import-image upload' },
      { at, from: 'pending-upload', to: 'manifest-received' },
      { at, from: 'manifest-received', to: 'bundle-decrypted' },
      { at, from: 'bundle-decrypted', to: 'disk-converted' },
      { at, from: 'disk-converted', to: 'validated' },
      { at, from: 'validated', to: 'completed' },
    ],
    createdAt: at,
    updatedAt: at,
    expiresAt: new Date(createdAt.getTime() + 7 * 86400_000).toISOString(),
    version: 6,
  };
}

function taskId(kind: TaskKind): string {
  const hex = (n: number) => randomBytes(9).toString('hex').slice(0, n);
  switch (kind) {
    case 'import-volume': return `import-vol-${hex(8)}`;
    case 'import-instance': return `import-i-${hex(8)}`;
    case 'import-image': return `import-ami-${hex(17)}`;
    default: return `import-snap-${hex(17)}`;
  }
}

interface Filled {
  caller: NewAccount;
  /** The caller's tasks by kind, newest first. */
  mine: Record<TaskKind, string[]>;
  seconds: number;
}

/**
 * `count` tasks over ACCOUNTS accounts, every kind, one a second going back from now. The first
 * account is the caller. `insert` writes a batch: the store's own create for SQLite, a bulk
 * insert of the same documents for MongoDB (100,000 round trips would only time the loading).
 */
async function fill(store: TaskStore, count: number, insert: (batch: TaskDocument[]) => Promise<void>): Promise<Filled> {
  const started = Date.now();
  const accounts: NewAccount[] = [];
  for (let i = 0; i < ACCOUNTS; i++) accounts.push(await createAccount(store, `bench-${i}`));
  const mine = Object.fromEntries(KINDS.map((k) => [k, [] as string[]])) as Record<TaskKind, string[]>;
  const now = Date.now();
  let batch: TaskDocument[] = [];
  // Conversion task ids have 8 hex digits: among 50,000 of them a repeat is likely.
  const used = new Set<string>();
  for (let i = 0; i < count; i++) {
    const kind = KINDS[i % KINDS.length];
    const account = accounts[Math.floor(i / KINDS.length) % ACCOUNTS];
    let id = taskId(kind);
    while (used.has(id)) id = taskId(kind);
    used.add(id);
    const task = taskDocument(id, kind, account.accountId, new Date(now - i * 1000));
    if (account === accounts[0]) mine[kind].push(task.id);
    batch.push(task);
    if (batch.length === 1000) {
      await insert(batch);
      batch = [];
    }
  }
  if (batch.length) await insert(batch);
  return { caller: accounts[0], mine, seconds: (Date.now() - started) / 1000 };
}

// ---- load ---------------------------------------------------------------------------------------

interface Case {
  name: string;
  params: Record<string, string>;
  /** Task ids the answer must contain. */
  expect: string[];
}

interface Signed {
  path: string;
  headers: Record<string, string>;
  body: string;
}

async function sign(endpoint: URL, caller: NewAccount, params: Record<string, string>): Promise<Signed> {
  const body = new URLSearchParams({ Version: '2016-11-15', ...params }).toString().replace(/\+/g, '%20');
  const signer = new SignatureV4({ service: 'ec2', region: 'us-east-1', credentials: caller, sha256: Sha256 });
  const signed: { headers: Record<string, unknown> } = await signer.sign({
    method: 'POST', protocol: 'http:', hostname: endpoint.hostname, port: Number(endpoint.port), path: '/', query: {},
    headers: { host: endpoint.host, 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' }, body,
  } as any) as any;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(signed.headers)) headers[k] = String(v);
  headers['content-length'] = String(Buffer.byteLength(body));
  return { path: '/', headers, body };
}

function send(agent: Agent, endpoint: URL, signed: Signed): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ agent, host: endpoint.hostname, port: endpoint.port, method: 'POST', path: signed.path, headers: signed.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(signed.body);
  });
}

interface Result {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  requests: number;
  /** CPU time of the gateway process per answered request (HTTP rows only). */
  gatewayCpuMsPerRequest?: number;
}

/** One measuring window: every request's latency (ms), the window's length (s) and the CPU the gateway process used in it (s). */
interface Sample {
  latencies: number[];
  seconds: number;
  gatewayCpuSeconds?: number;
}

const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/**
 * CPU time (user + system) a process has used, from /proc: on a machine shared with other work
 * the gateway's CPU per request is the figure that does not move with the load.
 */
function cpuSecondsOf(pid: number): number {
  // Fields after the command name (which is in parentheses and may hold spaces): utime is the 12th, stime the 13th.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** The figures of several windows taken together: requests over their summed time, percentiles over all. */
function summarize(samples: Sample[]): Result {
  const latencies = samples.flatMap((s) => s.latencies).sort((a, b) => a - b);
  const seconds = samples.reduce((sum, s) => sum + s.seconds, 0);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  const cpu = samples.every((s) => s.gatewayCpuSeconds !== undefined) ? samples.reduce((sum, s) => sum + s.gatewayCpuSeconds!, 0) : undefined;
  return {
    requestsPerSecond: latencies.length / seconds, p50: at(0.5), p99: at(0.99), requests: latencies.length,
    ...(cpu !== undefined ? { gatewayCpuMsPerRequest: (cpu * 1000) / latencies.length } : {}),
  };
}

/**
 * A keep-alive connection that replays one request's bytes and reads each answer's status and
 * Content-Length, nothing more: a load generator that spends little of the CPU the gateway
 * shares with it (node's http client took about as long per request as the gateway did).
 */
class ReplayConnection {
  private socket!: Socket;
  private pending: Buffer = Buffer.alloc(0);
  private waiting?: { resolve(status: number): void; reject(err: Error): void };

  private constructor(private readonly bytes: Buffer) {}

  static open(endpoint: URL, signed: Signed): Promise<ReplayConnection> {
    const head = [`POST ${signed.path} HTTP/1.1`, ...Object.entries(signed.headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n');
    const connection = new ReplayConnection(Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(signed.body, 'utf8')]));
    return new Promise((resolve, reject) => {
      connection.socket = connect(Number(endpoint.port), endpoint.hostname, () => resolve(connection));
      connection.socket.setNoDelay(true);
      connection.socket.once('error', reject);
      connection.socket.on('error', (err) => connection.fail(err));
      connection.socket.on('close', () => connection.fail(new Error('the gateway closed the connection')));
      connection.socket.on('data', (chunk: Buffer) => connection.received(chunk));
    });
  }

  /** Sends the request once and resolves with the answer's HTTP status when all of it has arrived. */
  send(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(this.bytes);
    });
  }

  close(): void {
    this.waiting = undefined;
    this.socket.destroy();
  }

  private received(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const end = this.pending.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.pending.toString('latin1', 0, end);
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1]);
    if (!Number.isFinite(length)) return this.fail(new Error(`an answer without Content-Length: ${head.slice(0, 200)}`));
    if (this.pending.length < end + 4 + length) return;
    if (this.pending.length > end + 4 + length) return this.fail(new Error('more bytes than one answer'));
    this.pending = Buffer.alloc(0);
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.resolve(Number(head.slice(9, 12)));
  }

  private fail(err: Error): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(err);
  }
}

async function drive(endpoint: URL, gatewayPid: number, signed: Signed, check: Case, seconds: number, concurrency: number, client: 'raw' | 'http'): Promise<Sample> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const connections: ReplayConnection[] = [];
  try {
    // The first answer is read whole and checked; the rest only for their status.
    const first = await send(agent, endpoint, signed);
    const missing = check.expect.filter((id) => !first.body.includes(`<${check.name.startsWith('conv') ? 'conversionTaskId' : 'importTaskId'}>${id}<`));
    if (first.status !== 200 || missing.length) throw new Error(`${check.name}: HTTP ${first.status}, missing ${missing.join(', ')}\n${first.body.slice(0, 600)}`);
    if (client === 'raw') for (let i = 0; i < concurrency; i++) connections.push(await ReplayConnection.open(endpoint, signed));
    const latencies: number[] = [];
    let measuring = false;
    let stop = false;
    let failures = 0;
    const worker = async (i: number) => {
      while (!stop) {
        const t = process.hrtime.bigint();
        const status = client === 'raw' ? await connections[i].send() : (await send(agent, endpoint, signed)).status;
        if (status !== 200) failures++;
        if (measuring) latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
    };
    const workers = Array.from({ length: concurrency }, (_, i) => worker(i));
    await new Promise((r) => setTimeout(r, 1000)); // warm-up: connections open, statements prepared
    measuring = true;
    const started = process.hrtime.bigint();
    const cpuAtStart = cpuSecondsOf(gatewayPid);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    measuring = false;
    const gatewayCpuSeconds = cpuSecondsOf(gatewayPid) - cpuAtStart;
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    stop = true;
    await Promise.all(workers);
    if (failures) throw new Error(`${check.name}: ${failures} answers were not 200`);
    return { latencies, seconds: elapsed, gatewayCpuSeconds };
  } finally {
    agent.destroy();
    for (const c of connections) c.close();
  }
}

function startGateway(script: string, args: string[], execArgv: string[] = []): Promise<{ child: ChildProcess; url: URL }> {
  const child = fork(script, ['--serve', ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  return new Promise((resolve, reject) => {
    child.once('message', (m: { url: string }) => resolve({ child, url: new URL(m.url) }));
    child.once('exit', (code) => reject(new Error(`gateway exited with ${code}`)));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

async function cases(url: URL, filled: Filled): Promise<{ check: Case; signed: Signed }[]> {
  const { caller, mine } = filled;
  const conversions = [...mine['import-volume'], ...mine['import-instance']];
  const one = (name: string, params: Record<string, string>, expect: string[]): Case => ({ name, params, expect });
  const list: Case[] = [
    one('conv one', { Action: 'DescribeConversionTasks', 'ConversionTaskId.1': conversions[Math.floor(conversions.length / 2)] }, [conversions[Math.floor(conversions.length / 2)]]),
    one(`conv ${PAGE}`, { Action: 'DescribeConversionTasks', ...Object.fromEntries(conversions.slice(0, PAGE).map((id, i) => [`ConversionTaskId.${i + 1}`, id])) }, conversions.slice(0, PAGE)),
    one('image one', { Action: 'DescribeImportImageTasks', 'ImportTaskId.1': mine['import-image'][Math.floor(mine['import-image'].length / 2)] }, [mine['import-image'][Math.floor(mine['import-image'].length / 2)]]),
    one('image page', { Action: 'DescribeImportImageTasks', MaxResults: String(PAGE) }, mine['import-image'].slice(0, PAGE)),
  ];
  // The 10th page's token, fetched the way a client pages (when the caller has that many).
  const pages = 10;
  if (mine['import-image'].length > pages * PAGE) {
    const agent = new Agent({ keepAlive: false });
    let token: string | undefined;
    for (let i = 0; i < pages - 1; i++) {
      const page = await send(agent, url, await sign(url, caller, { Action: 'DescribeImportImageTasks', MaxResults: String(PAGE), ...(token ? { NextToken: token } : {}) }));
      token = /<nextToken>([^<]+)</.exec(page.body)?.[1];
      if (!token) throw new Error(`page ${i + 1} had no nextToken: ${page.body.slice(0, 400)}`);
    }
    list.push(one('image deep', { Action: 'DescribeImportImageTasks', MaxResults: String(PAGE), NextToken: token! }, mine['import-image'].slice((pages - 1) * PAGE, pages * PAGE)));
  }
  return Promise.all(list.map(async (check) => ({ check, signed: await sign(url, caller, check.params) })));
}

interface Row extends Result {
  store: string;
  tasks: number;
  name: string;
}

/** What the action-alone rows need of a build: ours, or the baseline's loaded from its dist. */
interface Build {
  /** '' for ours, ', baseline' for the other build: appended to the row names. */
  label: string;
  /** The build's api-load.js, forked with --serve for its gateway. */
  script: string;
  openTaskStore: typeof openTaskStore;
  runAction: typeof runAction;
  QueryParams: typeof QueryParams;
  renderResponse: typeof renderResponse;
}

const OURS: Build = { label: '', script: __filename, openTaskStore, runAction, QueryParams, renderResponse };

/** The other build whose dist/bench/api-load.js is `script`: its gateway and actions, not ours. */
function baselineBuild(script: string): Build {
  const dist = resolve(dirname(script), '..');
  /* eslint-disable @typescript-eslint/no-require-imports */
  return {
    label: ', baseline',
    script: resolve(script),
    openTaskStore: require(join(dist, 'tasks/open-store')).openTaskStore,
    runAction: require(join(dist, 'gateway/actions')).runAction,
    QueryParams: require(join(dist, 'gateway/query-request')).QueryParams,
    renderResponse: require(join(dist, 'gateway/xml')).renderResponse,
  };
  /* eslint-enable @typescript-eslint/no-require-imports */
}

/** Runs the case's action in this process, one call after another, on its own connection to the store. */
async function actionAlone(build: Build, p: Prepared, check: Case, seconds: number): Promise<Sample> {
  const store = await build.openTaskStore(p.childArgs[0], p.childArgs[1] ? { mongoDbName: p.childArgs[1] } : {});
  try {
    const ctx: ActionContext = {
      caller: { accountId: p.filled.caller.accountId, accessKeyId: p.filled.caller.accessKeyId },
      tasks: store, publish: async () => undefined, region: 'us-east-1', allowedObjectHosts: [], taskLifetimeMs: 86400_000, now: () => new Date(),
    };
    const { Action: action, Version: _version, ...rest } = check.params;
    const params = new build.QueryParams(Object.entries(rest));
    const latencies: number[] = [];
    const until = Date.now() + seconds * 1000;
    const started = process.hrtime.bigint();
    while (Date.now() < until) {
      const t = process.hrtime.bigint();
      build.renderResponse(action, 'request-id', await build.runAction(action, params, ctx));
      latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    return { latencies, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
  } finally {
    await store.close();
  }
}

interface Prepared {
  count: number;
  filled: Filled;
  childArgs: string[];
  cleanup(): Promise<void>;
}

/** A store of `count` tasks, closed again: the gateway child opens it itself. */
async function prepare(storeName: 'sqlite' | 'mongo', count: number, mongoUri: () => Promise<string>): Promise<Prepared> {
  if (storeName === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'bench-api-load-'));
    const url = `sqlite:${join(dir, 'tasks.db')}`;
    const store = await openTaskStore(url);
    try {
      const filled = await fill(store, count, async (batch) => {
        for (const task of batch) await store.create(task);
      });
      return { count, filled, childArgs: [url], cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
    } finally {
      await store.close();
    }
  }
  const uri = await mongoUri();
  const dbName = `bench_api_load_${randomBytes(4).toString('hex')}`;
  const store = await openTaskStore(uri, { mongoDbName: dbName });
  const client = new MongoClient(uri, { ignoreUndefined: true });
  await client.connect();
  const cleanup = async () => {
    await client.db(dbName).dropDatabase().catch(() => undefined);
    await client.close();
  };
  try {
    const collection = client.db(dbName).collection('tasks');
    const filled = await fill(store, count, async (batch) => {
      await collection.insertMany(batch.map(({ id, ...rest }) => ({ _id: id, ...rest })) as any[], { ordered: false });
    });
    return { count, filled, childArgs: [uri, dbName], cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  } finally {
    await store.close();
  }
}

interface StoreRun {
  storeName: 'sqlite' | 'mongo';
  counts: number[];
  seconds: number;
  concurrency: number;
  mongoUri: () => Promise<string>;
  /** Ours first, then the baseline when there is one; each case is driven on each in turn. */
  builds: Build[];
  /** Case names to run; all when empty. */
  only: string[];
  /** Node options for our gateway child (--cpu-prof …). */
  execArgv: string[];
  /** Measuring windows per case and build, taken in turns. */
  rounds: number;
  /** The load generator: raw replay of the signed bytes, or node's http client. */
  client: 'raw' | 'http';
}

/**
 * Every task count of one store, each with its own gateway child per build, driven case by case
 * with the counts (and builds) back to back: on a machine whose load comes and goes, the rows to
 * compare are measured minutes apart at most.
 */
async function runStore(run: StoreRun): Promise<Row[]> {
  const { storeName, seconds, concurrency } = run;
  const prepared: Prepared[] = [];
  const children: ChildProcess[] = [];
  try {
    for (const count of run.counts) {
      const p = await prepare(storeName, count, run.mongoUri);
      prepared.push(p);
      console.error(`${storeName}: ${count} tasks loaded in ${p.filled.seconds.toFixed(1)} s`);
    }
    const gateways: { build: Build; p: Prepared; url: URL; pid: number; cases: Awaited<ReturnType<typeof cases>> }[] = [];
    for (const p of prepared) {
      for (const build of run.builds) {
        const started = await startGateway(build.script, p.childArgs, build === OURS ? run.execArgv : []);
        children.push(started.child);
        gateways.push({ build, p, url: started.url, pid: started.child.pid!, cases: await cases(started.url, p.filled) });
      }
    }
    const names = [...new Set(gateways.flatMap((g) => g.cases.map((c) => c.check.name)))].filter((n) => run.only.length === 0 || run.only.includes(n));
    const rows: Row[] = [];
    for (const name of names) {
      for (const p of prepared) {
        const targets = gateways.filter((g) => g.p === p).map((g) => ({ ...g, found: g.cases.find((c) => c.check.name === name) }));
        if (targets.some((t) => !t.found)) continue;
        // With a baseline the builds take turns, `rounds` windows each, so that a change in the
        // machine's load while the case runs falls on both alike.
        const driven = new Map<Build, Sample[]>(targets.map((t) => [t.build, []]));
        const alone = new Map<Build, Sample[]>(targets.map((t) => [t.build, []]));
        for (let round = 0; round < run.rounds; round++) {
          for (const t of targets) driven.get(t.build)!.push(await drive(t.url, t.pid, t.found!.signed, t.found!.check, seconds / run.rounds, concurrency, run.client));
        }
        // The action alone on the same store, one call at a time in this process: no HTTP, no
        // signature, no other request waiting; what the store's queries and the rendering cost.
        for (let round = 0; round < run.rounds; round++) {
          for (const t of targets) alone.get(t.build)!.push(await actionAlone(t.build, p, t.found!.check, Math.min(seconds, 3) / run.rounds));
        }
        for (const t of targets) {
          const result = summarize(driven.get(t.build)!);
          rows.push({ store: storeName, tasks: p.count, name: `${name}${t.build.label}`, ...result });
          console.error(`  ${storeName} ${p.count} ${name}${t.build.label}: ${result.requestsPerSecond.toFixed(0)} req/s`);
        }
        for (const t of targets) rows.push({ store: storeName, tasks: p.count, name: `${name}, action alone${t.build.label}`, ...summarize(alone.get(t.build)!) });
      }
    }
    return rows;
  } finally {
    for (const child of children) await stopChild(child);
    for (const p of prepared) await p.cleanup();
  }
}

async function main(): Promise<void> {
  const loadAtStart = loadavg();
  const counts = option('tasks', '3000,100000').split(',').map(Number);
  const stores = option('stores', 'sqlite,mongo').split(',') as ('sqlite' | 'mongo')[];
  const seconds = Number(option('seconds', '5'));
  const concurrency = Number(option('concurrency', '16'));
  // jongodb, the MongoDB wire server the tests use, keeps no indexes: every find scans the
  // collection and every insert checks every document, so 100,000 tasks there would time the
  // test server, not our queries. Without MONGODB_URI the MongoDB rows stop at 10,000 tasks.
  const mongoCounts = option('mongo-tasks', process.env.MONGODB_URI ? counts.join(',') : '3000,10000').split(',').map(Number);
  let jongodb: Awaited<ReturnType<typeof startMongoServer>> | undefined;
  const mongoUri = async () => {
    if (process.env.MONGODB_URI) return process.env.MONGODB_URI;
    jongodb ??= await startMongoServer();
    return jongodb.uri;
  };
  const baseline = option('baseline', '');
  const builds = baseline ? [OURS, baselineBuild(baseline)] : [OURS];
  const only = option('cases', '').split(',').map((n) => n.trim()).filter(Boolean);
  const profileDir = option('cpu-prof', '');
  const execArgv = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const rounds = Number(option('rounds', baseline ? '5' : '1'));
  const client = option('client', 'raw') as 'raw' | 'http';
  if (client !== 'raw' && client !== 'http') throw new Error(`--client is raw or http, not ${client}`);
  const rows: Row[] = [];
  try {
    for (const storeName of stores) {
      const storeCounts = storeName === 'mongo' ? mongoCounts : counts;
      rows.push(...(await runStore({ storeName, counts: storeCounts, seconds, concurrency, mongoUri, builds, only, execArgv, rounds, client })));
    }
  } finally {
    await jongodb?.stop();
  }
  const mongoName = process.env.MONGODB_URI ? 'mongodb' : 'jongodb';
  if (!process.env.MONGODB_URI && stores.includes('mongo')) console.log('\nMongoDB rows: jongodb (no indexes: every query scans); set MONGODB_URI for a real MongoDB.');
  console.log(`\n${concurrency} requests in flight, ${seconds} s per row${rounds > 1 ? ` in ${rounds} windows taken in turns with the baseline` : ''} after 1 s of warm-up, gateway in its own process, load generator in this one (${client === 'raw' ? `the signed request's bytes replayed on ${concurrency} keep-alive connections` : "node's http client"})`);
  console.log('| store | tasks | request | requests/s | p50 ms | p99 ms | requests |');
  console.log('|---|---:|---|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.store === 'mongo' ? mongoName : 'sqlite'} | ${r.tasks.toLocaleString('en')} | ${r.name} | ${r.requestsPerSecond.toFixed(0)} | ${r.p50.toFixed(r.p50 < 10 ? 2 : 1)} | ${r.p99.toFixed(r.p99 < 10 ? 2 : 1)} | ${r.requests} |`);
  }
  if (baseline) {
    console.log(`\nOurs over the baseline (${baseline}), measured turn by turn in this run: requests/s (higher is better), p50 and p99 (lower is better)`);
    console.log('| store | tasks | request | requests/s | p50 | p99 | gateway CPU ms per request (ours, baseline) |');
    console.log('|---|---:|---|---:|---:|---:|---:|');
    for (const r of rows.filter((row) => !row.name.endsWith(', baseline'))) {
      const b = rows.find((row) => row.store === r.store && row.tasks === r.tasks && row.name === `${r.name}, baseline`);
      if (!b) continue;
      const ratio = (x: number, y: number) => `${(x / y).toFixed(2)}×`;
      const cpu = r.gatewayCpuMsPerRequest !== undefined && b.gatewayCpuMsPerRequest !== undefined
        ? `${ratio(r.gatewayCpuMsPerRequest, b.gatewayCpuMsPerRequest)} (${r.gatewayCpuMsPerRequest.toFixed(3)}, ${b.gatewayCpuMsPerRequest.toFixed(3)})`
        : '';
      console.log(`| ${r.store === 'mongo' ? mongoName : 'sqlite'} | ${r.tasks.toLocaleString('en')} | ${r.name} | ${ratio(r.requestsPerSecond, b.requestsPerSecond)} | ${ratio(r.p50, b.p50)} | ${ratio(r.p99, b.p99)} | ${cpu} |`);
    }
  }
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(', ');
  console.log(`load average (1, 5, 15 min) at the start ${load(loadAtStart)}, at the end ${load(loadavg())}`);
}

if (process.argv.includes('--serve')) {
  const at = process.argv.indexOf('--serve');
  serveChild(process.argv[at + 1], process.argv[at + 2]).catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
