/**
 * The admin port every process serves: /healthz (the process is alive), /readyz (what it
 * depends on answers) and /metrics (Prometheus text format). Readiness checks are of two kinds:
 * `required` ones (NATS, the task store, object storage) make /readyz answer 503 when they fail;
 * capability checks (a tool one kind of work needs, like qemu-system for dynamic validation)
 * are reported by name and answer on /readyz/<capability>, so a missing tool takes out only
 * the work that needs it.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'http';
import type { AddressInfo } from 'net';
import type { Registry } from 'prom-client';

export interface ReadinessCheck {
  name: string;
  /** Resolves when ready; rejects (or times out) when not. */
  check(): Promise<void>;
  /** A capability check does not make the whole process unready. */
  capability?: boolean;
}

export interface AdminServerOptions {
  registry: Registry;
  checks: ReadinessCheck[];
  /** Per-check time limit (default 2 s): a dependency that does not answer is not ready. */
  checkTimeoutMs?: number;
}

export interface RunningAdminServer {
  url: string;
  close(): Promise<void>;
}

interface CheckResult {
  name: string;
  ready: boolean;
  capability: boolean;
  error?: string;
}

async function runCheck(check: ReadinessCheck, timeoutMs: number): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check.check(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { name: check.name, ready: true, capability: !!check.capability };
  } catch (err) {
    return { name: check.name, ready: false, capability: !!check.capability, error: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

export function adminRequestHandler(options: AdminServerOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const timeoutMs = options.checkTimeoutMs ?? 2000;
  const json = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body) + '\n';
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
    res.end(text);
  };
  return async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'only GET' });
    if (path === '/healthz') return json(res, 200, { status: 'alive' });
    if (path === '/metrics') {
      const text = await options.registry.metrics();
      res.writeHead(200, { 'Content-Type': options.registry.contentType, 'Content-Length': Buffer.byteLength(text) });
      return void res.end(text);
    }
    if (path === '/readyz' || path.startsWith('/readyz/')) {
      const capability = path.slice('/readyz/'.length);
      const selected = capability ? options.checks.filter((c) => c.name === capability) : options.checks;
      if (capability && selected.length === 0) return json(res, 404, { error: `no readiness check named ${capability}` });
      const results = await Promise.all(selected.map((c) => runCheck(c, timeoutMs)));
      const ready = results.every((r) => r.ready || (r.capability && !capability));
      return json(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks: results });
    }
    json(res, 404, { error: 'not found; try /healthz, /readyz or /metrics' });
  };
}

export async function startAdminServer(port: number, host: string, options: AdminServerOptions): Promise<RunningAdminServer> {
  const handle = adminRequestHandler(options);
  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.maxConnections = 256;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return {
    url: `http://${shown}:${address.port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
