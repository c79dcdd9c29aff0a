/**
 * The validate stage's guest report and the boot check's verdict as extra elements of an
 * answer (<validation>, <bootCheck>): EC2 has no such elements, so SDKs skip them, and our CLI
 * reads them back (cli/commands/conversion-tasks.ts validationView, bootCheckView). Lists become
 * <item> lists; numbers and booleans travel as text.
 */
import type { BootCheckResult, ValidationReport } from '../../tasks/task';
import type { XmlObject } from '../xml';

export function validationXml(report: ValidationReport): XmlObject {
  return {
    purpose: report.purpose,
    sizeBytes: report.sizeBytes,
    partitionTable: report.partitionTable,
    os: report.os ? { ...report.os } : undefined,
    kernels: report.kernels?.map((kernel) => ({ ...kernel })),
    bootMode: report.bootMode,
    architecture: report.architecture,
    filesystems: report.filesystems?.map((fs) => ({ ...fs })),
    findings: report.findings?.map((finding) => ({ ...finding })),
    verdict: report.verdict ? { ...report.verdict } : undefined,
    bytesRead: report.bytesRead,
  };
}

export function bootCheckXml(result: BootCheckResult): XmlObject {
  return {
    booted: result.booted,
    reached: result.reached,
    message: result.message,
    accelerator: result.accelerator,
    elapsedMs: result.elapsedMs,
    console: result.console,
  };
}
