import { CamflowError, getProduction, listModels, namedModel, promoteByHand, scheduleAfterManualPromotion, type ModelManifest } from '@camflow/common/core';
import { print, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';

/** A model's dataset without its validation indices (thousands of numbers: in the manifest, not in listings). */
export const withoutSplit = ({ validation: _validation, ...dataset }: ModelManifest['dataset']) => dataset;

/** `camflow models`: see `camflow models --help` (the command table in `commands.ts`). */
export async function run({ v, rest }: CommandInput): Promise<void> {
  await withContext(async (ctx) => {
    if (rest[0] === 'promote') {
      if (!rest[1]) throw new CamflowError('USAGE', 'usage: camflow models promote VERSION');
      const promotion = await promoteByHand(ctx.store, await namedModel(ctx.store, rest[1]));
      const { channel, previous } = promotion;
      const schedule = await scheduleAfterManualPromotion(ctx.queues.train);
      print(v.json, { ...channel, previous, warnings: promotion.warnings, ...(schedule ? { schedule } : {}) }, `production → ${channel.version}${previous && previous.version !== channel.version ? ` (was ${previous.version})` : previous ? ' (already production)' : ''}${schedule ? `; ${schedule}` : ''}${promotion.warnings.map((w) => `\nwarning: ${w}`).join('')}`);
      return;
    }
    if (rest[0] !== undefined && rest[0] !== 'list') throw new CamflowError('USAGE', `unknown models subcommand "${rest[0]}": camflow models [list] | camflow models promote VERSION`);
    const [models, production] = await Promise.all([listModels(ctx.store), getProduction(ctx.store)]);
    print(
      v.json,
      { production: production?.version ?? null, models: models.map((m) => ({ version: m.version, preset: m.preset, valAccuracy: m.metrics.valAccuracy, dataset: withoutSplit(m.dataset), int8: m.int8 ? { classAgreement: m.int8.classAgreement, boxIou: m.int8.boxIou } : null, screening: m.screening ?? null, warnings: m.warnings ?? [] })) },
      models.map((m) => `${m.version === production?.version ? '*' : ' '} ${m.version}${m.version === production?.version && production.by === 'hand' ? ' (promoted by hand)' : ''}  ${m.preset}  val ${m.metrics.valAccuracy.toFixed(4)}  ${m.dataset.name}@${m.dataset.version}${m.int8 ? `  int8: agree ${m.int8.classAgreement.toFixed(3)} box IoU median ${m.int8.boxIou.median.toFixed(2)}` : ''}${m.screening ? `  screen: ${m.screening.positiveClass} ≥ ${m.screening.threshold.toFixed(3)} (val recall ${m.screening.validation.recall.toFixed(3)}, specificity ${m.screening.validation.specificity.toFixed(3)})` : ''}${m.warnings?.length ? `  (published with ${m.warnings.length === 1 ? 'a warning' : `${m.warnings.length} warnings`}: camflow models --json)` : ''}`).join('\n') || 'no models yet',
    );
  });
}
