import type { Stage } from './stage';
import { PIPELINE, STAGE_NAMES, isStageName, type StageName } from '../pipeline/table';
import { manifestStage } from './manifest/manifest-stage';
import { decryptStage } from './decrypt/decrypt-stage';
import { convertStage } from './convert/convert-stage';
import { validateStage } from './validate/validate-stage';
import { bootCheckStage } from './boot-check/boot-check-stage';
import { registerStage } from './register/register-stage';
import { exportStage } from './export/export-stage';

/**
 * The handler of every row of the pipeline table (pipeline/table.ts). Keyed by the table's stage
 * names, so a row without a handler, or a handler without a row, does not compile.
 */
const HANDLERS: { readonly [S in StageName]: Stage<S> } = {
  manifest: manifestStage,
  decrypt: decryptStage,
  convert: convertStage,
  validate: validateStage,
  'boot-check': bootCheckStage,
  register: registerStage,
  export: exportStage,
};

/** Every pipeline stage, in the table's order. */
export const ALL_STAGES: readonly Stage[] = PIPELINE.map((row) => HANDLERS[row.stage]);

export function stageByName(name: string): Stage {
  if (!isStageName(name)) throw new Error(`unknown stage "${name}"; one of ${STAGE_NAMES.join(', ')}`);
  return HANDLERS[name];
}
