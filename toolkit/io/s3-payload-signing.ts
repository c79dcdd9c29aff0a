import type { BuildMiddleware, MiddlewareStack } from '@smithy/types';
import type { PutObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';

/** Marks a request's body UNSIGNED-PAYLOAD, which the SigV4 signer then takes as the body's hash. */
const unsignedPayload: BuildMiddleware<object, object> = (next) => async (args) => {
  const request = args.request as { headers?: Record<string, string> };
  if (request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  return next(args);
};

/** Unless `signPayload`, marks the request's body UNSIGNED-PAYLOAD, which the signer then takes as the body's hash. */
export function withPayloadSigning<C extends PutObjectCommand | UploadPartCommand>(command: C, signPayload: boolean): C {
  if (!signPayload) (command.middlewareStack as MiddlewareStack<object, object>).add(unsignedPayload, { step: 'build', name: 'imagingUnsignedPayload' });
  return command;
}
