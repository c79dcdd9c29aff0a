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
