import { cancelTraining, getDatasetManifest, CamflowError } from '@camflow/common/core';
import { enqueueTraining } from '@camflow/trainer';
import { waitForJob } from '../wait.js';
import { print, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';

/** `camflow train`: see `camflow train --help` (the command table in `commands.ts`). */
export async function run({ v, num }: CommandInput): Promise<void> {
  if (v.cancel) {
    await withContext(async (ctx) => {
      const report = await cancelTraining(ctx.queues.train, ctx.redis, ctx.config.QUEUE_PREFIX, v.cancel!);
      const human = { removed: `training job ${report.jobId} removed (it had not started)`, stopping: `training job ${report.jobId} stops within ten steps; nothing is published`, none: `training job ${report.jobId} has already finished (${report.state})` }[report.action];
      print(v.json, report, human);
    });
    return;
  }
  if (!v.dataset) throw new CamflowError('USAGE', 'usage: camflow train --dataset NAME | camflow train --cancel JOB_ID');
  await withContext(async (ctx) => {
    await getDatasetManifest(ctx.store, v.dataset!, v.version); // an unknown dataset fails here, not in the trainer
    const job = await enqueueTraining(ctx.queues.train, {
      dataset: v.dataset!,
      ...(v.version ? { datasetVersion: v.version } : {}),
      ...(v.preset ? { preset: v.preset as 'fast' | 'seed' } : {}),
      ...(v.epochs ? { epochs: num('epochs') } : {}),
      ...(v.lr ? { learningRate: num('lr') } : {}),
      ...(v['batch-size'] ? { batchSize: num('batch-size') } : {}),
      ...(v.split ? { splitBy: v.split as 'auto' | 'item' | 'group' } : {}),
      ...(v.seed ? { seed: num('seed') } : {}),
      ...(v['val-fraction'] ? { validationFraction: num('val-fraction') } : {}),
      ...(v.patience ? { earlyStopPatience: num('patience') } : {}),
      promote: !v['no-promote'],
    });
    if (!v.wait) {
      print(v.json, { jobId: job.id }, `training job ${job.id} queued`);
      return;
    }
    const outcome = await waitForJob(ctx.queues.train, job.id!, (p) => {
      const m = p as { epoch: number; loss: number; valAccuracy: number; attempt: number };
      if (!v.json) process.stderr.write(`epoch ${m.epoch} (attempt ${m.attempt + 1}): loss ${m.loss.toFixed(4)} val accuracy ${m.valAccuracy.toFixed(4)}\n`);
    });
    const o = outcome as { skipped: boolean; reason?: string; version?: string; valAccuracy?: number; epochs?: number; attempts?: number; promoted?: boolean; promotion?: string; warnings?: string[] };
    const human = o.skipped
      ? `training skipped: ${o.reason ?? 'nothing to do'}`
      : `model ${o.version} published: validation accuracy ${o.valAccuracy?.toFixed(4)} after ${o.epochs} epochs (${o.attempts} attempt${o.attempts === 1 ? '' : 's'}); ${o.promoted ? 'promoted to production' : 'not promoted'}${o.promotion ? ` (${o.promotion})` : ''}${(o.warnings ?? []).map((w) => `\nwarning: ${w}`).join('')}`;
    print(v.json, outcome, human);
  });
}
