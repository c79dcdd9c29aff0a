/**
 * Keys whose values never reach a log line, whatever object they are logged in: credentials,
 * signatures and connection strings (which may carry a password). pino censors them by path.
 */
const SECRET_KEYS = ['secretAccessKey', 'sessionToken', 'authorization', 'Authorization', 'password', 'mongodbUri', 'signature', 'X-Amz-Signature', 'manifestUrl', 'getUrl', 'putUrl', 'deleteUrl'];

export const LOG_REDACTION = {
  paths: [...SECRET_KEYS, ...SECRET_KEYS.map((k) => `*.${k}`), ...SECRET_KEYS.map((k) => `*.*.${k}`), 'headers["x-amz-security-token"]', '*.headers.authorization'],
  censor: '[redacted]',
};
