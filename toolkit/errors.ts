/**
 * A refusal of a user's image. `check` names the safety check that failed (it shows up in
 * logs and --json output); `message` tells the user what is wrong with their image, and is
 * what a task's status message shows after "ClientError: ".
 */
export class ImageFormatError extends Error {
  constructor(
    readonly check: string,
    message: string,
  ) {
    super(message);
    this.name = 'ImageFormatError';
  }
}
