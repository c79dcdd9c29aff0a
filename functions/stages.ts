import type { Stage } from './stage';
import { manifestStage } from './manifest/manifest-stage';
import { decryptStage } from './decrypt/decrypt-stage';
import { convertStage } from './convert/convert-stage';
import { validateStage } from './validate/validate-stage';
import { registerStage } from './register/register-stage';

/** Every pipeline stage, in pipeline order. */
export const ALL_STAGES: readonly Stage[] = [manifestStage, decryptStage, convertStage, validateStage, registerStage];

export function stageByName(name: string): Stage {
  const stage = ALL_STAGES.find((s) => s.name === name);
  if (!stage) throw new Error(`unknown stage "${name}"; one of ${ALL_STAGES.map((s) => s.name).join(', ')}`);
  return stage;
}
