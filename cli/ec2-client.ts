/**
 * A small EC2 Query client for the `imaging` commands: SigV4-signed form POSTs, XML answers
 * parsed into plain objects. Our own client (rather than an SDK) so that the commands can read
 * the service's extension fields (image location and checksum) that SDKs drop.
 */
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@aws-crypto/sha256-js';
import { XMLParser } from 'fast-xml-parser';
import type { AwsCredentials } from './credentials';

export class Ec2RequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(`${code}: ${message}`);
    this.name = 'Ec2RequestError';
  }
}

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  isArray: (name) => name === 'item',
});

export class Ec2Client {
  constructor(
    private readonly endpoint: string,
    private readonly region: string,
    private readonly credentials: AwsCredentials,
  ) {}

  /** Calls an action; returns the parsed body of <ActionResponse>. */
  async call(action: string, params: Record<string, string | number | undefined>): Promise<Record<string, any>> {
    const url = new URL(this.endpoint);
    const form = new URLSearchParams({ Action: action, Version: '2016-11-15' });
    for (const [k, v] of Object.entries(params)) if (v !== undefined) form.append(k, String(v));
    const body = form.toString();
    const signer = new SignatureV4({ service: 'ec2', region: this.region, credentials: this.credentials, sha256: Sha256 });
    const signed = await signer.sign({
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port ? Number(url.port) : undefined,
      path: url.pathname || '/',
      headers: { host: url.host, 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
      body,
    });
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', headers: signed.headers as Record<string, string>, body });
    } catch (err) {
      throw new Error(`cannot reach the EC2 endpoint ${this.endpoint}: ${(err as Error).cause ?? (err as Error).message}`);
    }
    const text = await res.text();
    let doc: Record<string, any>;
    try {
      doc = parser.parse(text);
    } catch {
      throw new Error(`the EC2 endpoint answered HTTP ${res.status} with something that is not XML`);
    }
    if (!res.ok || doc.Response?.Errors) {
      const error = doc.Response?.Errors?.Error ?? {};
      throw new Ec2RequestError(error.Code ?? `HTTP${res.status}`, error.Message ?? text.slice(0, 200), res.status);
    }
    const response = doc[`${action}Response`];
    if (!response) throw new Error(`the EC2 endpoint's answer has no ${action}Response`);
    return response;
  }
}
