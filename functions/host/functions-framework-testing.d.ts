// The framework publishes `./testing` only through package.json "exports", which this project's
// `moduleResolution: node` does not read; this declares the part of it we use.
declare module '@google-cloud/functions-framework/testing' {
  import type { Server } from 'http';
  /** An HTTP server (not yet listening) that invokes the function registered under `functionName`. */
  export function getTestServer(functionName: string): Server;
}
