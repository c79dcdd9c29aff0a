/**
 * A task document as EC2's ConversionTask structure. Under importVolume (and each
 * importInstance volume item) we also render elements EC2 does not have (imageLocation,
 * imageSha256, progress, the validate stage's report as validation and the boot check's as
 * bootCheck): SDKs skip unknown
 * elements, and our own CLI reads them.
 */
import { ec2ConversionState } from '../../tasks/state-machine';
import type { TaskDocument } from '../../tasks/task';
import type { XmlObject } from '../xml';
import { bootCheckXml, validationXml } from './guest-report-xml';

export function conversionTaskXml(task: TaskDocument): XmlObject {
  const volume = volumeDetailXml(task);
  return {
    conversionTaskId: task.id,
    expirationTime: task.expiresAt,
    ...(task.kind === 'import-instance' ? { importInstance: importInstanceXml(task, volume) } : { importVolume: volume }),
    state: ec2ConversionState(task),
    statusMessage: task.statusMessage,
  };
}

/** The instance and its one volume; the volume item carries the task's status as EC2 reports it per volume. */
function importInstanceXml(task: TaskDocument, volume: XmlObject): XmlObject {
  const instance = task.request.instance;
  return {
    description: instance?.description,
    instanceId: instance?.instanceId,
    platform: instance?.platform,
    volumes: [{ ...volume, status: ec2ConversionState(task), statusMessage: task.statusMessage }],
  };
}

function volumeDetailXml(task: TaskDocument): XmlObject {
  const image = task.artifacts.image;
  return {
    availabilityZone: task.request.availabilityZone,
    bytesConverted: task.bytesConverted,
    description: task.request.description,
    image: {
      format: task.request.format,
      size: task.request.bytes,
      importManifestUrl: task.request.manifestUrl,
      checksum: image?.sha256,
    },
    volume: { size: task.request.volumeSizeGiB, id: task.artifacts.volumeId },
    imageLocation: image ? `s3://${image.bucket}/${image.key}` : undefined,
    imageSha256: image?.sha256,
    progress: task.progress,
    validation: task.artifacts.validation ? validationXml(task.artifacts.validation) : undefined,
    bootCheck: task.artifacts.bootCheck ? bootCheckXml(task.artifacts.bootCheck) : undefined,
  };
}
