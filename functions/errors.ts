/**
 * A problem with the user's input that no retry can fix. The task fails at once and its
 * status message reads "ClientError: <message>", as EC2 VM Import reports such failures.
 */
export class ClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClientError';
  }
}

/**
 * A fault of the service itself (a wrong setting, an unreachable dependency), never the user's:
 * the event is retried, the fault is logged at error level for the operator, and a task that
 * runs out of attempts reads "ServerError: <message>".
 */
export class ServerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServerError';
  }
}
