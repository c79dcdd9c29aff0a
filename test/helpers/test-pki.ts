/**
 * A private CA and a server certificate for 127.0.0.1 made by openssl, for the TLS tests; and a
 * TLS-terminating proxy that puts a plain-HTTP test server (s3rver) behind that certificate.
 */
import { execFileSync } from 'child_process';
import { join } from 'path';
import { connect, type AddressInfo, type Socket } from 'net';
import { createServer } from 'tls';
import { readFileSync } from 'fs';

export interface TestPki {
  /** The CA's certificate (PEM file): what a client is told to trust. */
  ca: string;
  /** The server's certificate (CN and SAN 127.0.0.1, localhost), signed by the CA. */
  cert: string;
  key: string;
}

export function makeTestPki(into: string): TestPki {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: into, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Imaging Test CA');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  execFileSync('sh', ['-c', 'printf "subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n" > server.ext'], { cwd: into });
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext');
  return { ca: join(into, 'ca.pem'), cert: join(into, 'server.pem'), key: join(into, 'server.key') };
}

export interface RunningTlsProxy {
  /** e.g. https://127.0.0.1:40123 */
  endpoint: string;
  /** TLS connections completed so far (handshake done). */
  connections(): number;
  stop(): Promise<void>;
}

/** Serves TLS with the PKI's server certificate on a free port, passing the bytes to 127.0.0.1:targetPort. */
export async function startTlsProxy(pki: TestPki, targetPort: number): Promise<RunningTlsProxy> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer({ cert: readFileSync(pki.cert), key: readFileSync(pki.key) }, (client) => {
    connections++;
    const upstream = connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => (s === client ? upstream : client).destroy());
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
