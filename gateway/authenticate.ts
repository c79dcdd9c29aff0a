/**
 * Picks the signature scheme a request uses and proves who sent it: SigV4 in the Authorization
 * header, SigV4 presigned in the query string, or SigV2 parameters. Unsigned requests are refused.
 */
import type { AccountDirectory } from './accounts';
import { Ec2Error } from './errors';
import type { QueryRequest } from './query-request';
import { type Caller, headerValue, type VerifyOptions } from './signing-common';
import { hasSigV2Params, verifySigV2 } from './sigv2';
import { hasSigV4Header, hasSigV4Query, verifySigV4 } from './sigv4';

export async function authenticate(request: QueryRequest, accounts: AccountDirectory, options: VerifyOptions = {}): Promise<Caller> {
  const { raw, params } = request;
  const authorization = headerValue(raw.headers, 'authorization');
  if (authorization !== undefined) {
    if (hasSigV4Header(raw)) return verifySigV4(raw, accounts, options);
    const scheme = authorization.trim().split(/\s+/)[0] || '(empty)';
    throw new Ec2Error('IncompleteSignature', `Authorization scheme ${scheme} is not supported; sign requests with AWS Signature Version 4`);
  }
  if (hasSigV4Query(raw)) return verifySigV4(raw, accounts, options);
  if (hasSigV2Params(params)) return verifySigV2(raw, params, accounts, options);
  throw new Ec2Error('AuthFailure', 'The request is not signed. Sign it with AWS Signature Version 4 using the access key and secret of your account');
}
