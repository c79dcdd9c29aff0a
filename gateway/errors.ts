/**
 * EC2 errors as clients see them: a code from EC2's vocabulary, a message a user can act on, and
 * the HTTP status EC2 uses for it. Anything else thrown inside the gateway becomes InternalError.
 */

export type Ec2ErrorCode =
  | 'AuthFailure'
  | 'SignatureDoesNotMatch'
  | 'IncompleteSignature'
  | 'RequestExpired'
  | 'MissingParameter'
  | 'InvalidParameterValue'
  | 'InvalidParameter'
  | 'InvalidAction'
  | 'UnsupportedOperation'
  | 'DryRunOperation'
  | 'InvalidConversionTaskId'
  | 'InvalidConversionTaskId.Malformed'
  | 'IncorrectState'
  | 'IdempotentParameterMismatch'
  | 'InvalidParameterCombination'
  | 'InvalidPaginationToken'
  | 'InvalidFilter'
  | 'InvalidAMIID.NotFound'
  | 'InvalidAMIID.Malformed'
  | 'InvalidSnapshot.NotFound'
  | 'InvalidSnapshotID.Malformed'
  | 'InvalidVolume.NotFound'
  | 'InvalidVolumeID.Malformed'
  | 'InvalidID'
  | 'InvalidInstanceID.NotFound'
  | 'InvalidInstanceID.Malformed'
  | 'InvalidTagKey.Malformed'
  | 'TagLimitExceeded'
  | 'InvalidSnapshot.InUse'
  | 'NotExportable'
  | 'InvalidExportTaskID.NotFound'
  | 'InvalidBundleID.NotFound'
  | 'BundlingInProgress'
  | 'ResourceLimitExceeded'
  | 'InvalidManifest'
  | 'InvalidAMIName.Duplicate'
  | 'InvalidAMIName.Malformed'
  | 'Unavailable'
  | 'InternalError';

const DEFAULT_STATUS: Record<Ec2ErrorCode, number> = {
  AuthFailure: 401,
  SignatureDoesNotMatch: 403,
  IncompleteSignature: 400,
  RequestExpired: 400,
  MissingParameter: 400,
  InvalidParameterValue: 400,
  InvalidParameter: 400,
  InvalidAction: 400,
  UnsupportedOperation: 400,
  DryRunOperation: 412,
  InvalidConversionTaskId: 400,
  'InvalidConversionTaskId.Malformed': 400,
  IncorrectState: 400,
  IdempotentParameterMismatch: 400,
  InvalidParameterCombination: 400,
  InvalidPaginationToken: 400,
  InvalidFilter: 400,
  'InvalidAMIID.NotFound': 400,
  InvalidManifest: 400,
  'InvalidAMIName.Duplicate': 400,
  'InvalidAMIName.Malformed': 400,
  'InvalidAMIID.Malformed': 400,
  'InvalidSnapshot.NotFound': 400,
  'InvalidSnapshotID.Malformed': 400,
  'InvalidVolume.NotFound': 400,
  'InvalidVolumeID.Malformed': 400,
  InvalidID: 400,
  'InvalidInstanceID.NotFound': 400,
  'InvalidInstanceID.Malformed': 400,
  'InvalidTagKey.Malformed': 400,
  TagLimitExceeded: 400,
  'InvalidSnapshot.InUse': 400,
  NotExportable: 400,
  'InvalidExportTaskID.NotFound': 400,
  'InvalidBundleID.NotFound': 400,
  BundlingInProgress: 400,
  ResourceLimitExceeded: 400,
  // Retryable: SDKs retry it with back-off.
  Unavailable: 503,
  InternalError: 500,
};

export class Ec2Error extends Error {
  readonly httpStatus: number;

  constructor(
    readonly code: Ec2ErrorCode,
    message: string,
    httpStatus?: number,
  ) {
    super(message);
    this.name = 'Ec2Error';
    this.httpStatus = httpStatus ?? DEFAULT_STATUS[code];
  }
}

export const DRY_RUN_MESSAGE = 'Request would have succeeded, but DryRun flag is set.';

/** What a client sees for a failure we did not anticipate: nothing about our internals. */
export const INTERNAL_ERROR_MESSAGE =
  'An internal error has occurred. Retry the request; if it keeps failing, report the request ID to the service operator.';

export const missingParameter = (name: string) =>
  new Ec2Error('MissingParameter', `The request must contain the parameter ${name}`);

export const invalidValue = (name: string, value: string, why: string) =>
  new Ec2Error('InvalidParameterValue', `Value (${value}) for parameter ${name} is invalid. ${why}`);

/** Turns anything thrown into an Ec2Error; `internal` is true when the original must be logged. */
export function asEc2Error(err: unknown): { error: Ec2Error; internal: boolean } {
  if (err instanceof Ec2Error) return { error: err, internal: err.code === 'InternalError' };
  return { error: new Ec2Error('InternalError', INTERNAL_ERROR_MESSAGE), internal: true };
}
