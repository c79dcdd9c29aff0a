/**
 * Capabilities that depend on a tool on the machine: a stage whose tool is missing reports not
 * ready for that capability only (/readyz/<capability> answers 503, /readyz stays 200), so the
 * rest of its work goes on and an operator sees what is missing.
 */
import { accessSync, constants } from 'fs';
import { delimiter, join } from 'path';
import type { ReadinessCheck } from './admin-server';

export interface ToolCapability {
  /** The capability's name on /readyz/<name>. */
  capability: string;
  /** The executable it needs, found on PATH. */
  tool: string;
}

/** What each stage needs beyond Node: a stage not named needs nothing. */
export const STAGE_TOOLS: Readonly<Record<string, readonly ToolCapability[]>> = {
  // Dynamic validation boots the converted disk (the boot-check stage, toolkit/inspect/boot-check.ts).
  'boot-check': [{ capability: 'dynamic-validation', tool: 'qemu-system-x86_64' }],
};

/** The full path of `tool` on `path`, or undefined. */
export function findOnPath(tool: string, path: string | undefined): string | undefined {
  for (const dir of (path ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The capability checks of one stage, looking on `path` (the process's PATH). */
export function toolCapabilityChecks(stage: string, path: string | undefined = process.env.PATH): ReadinessCheck[] {
  return (STAGE_TOOLS[stage] ?? []).map(({ capability, tool }) => ({
    name: capability,
    capability: true,
    check: async () => {
      if (!findOnPath(tool, path)) throw new Error(`${tool} is not installed (not on PATH): this stage cannot do ${capability}`);
    },
  }));
}
