import { cancelTraining, enqueueTraining, getDatasetManifest, getTrainingJob, listTrainingJobs, CamflowError, type TrainingJobStatus } from '@camflow/common/core';
import { interruptibleWait, waitForJob } from '../wait.js';
import { counted, print, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';
import type { Context } from '../context.js';
import { trainJobFromFlags } from '../train-input.js';

const USAGE = 'usage: camflow train --dataset NAME [--wait] | camflow train list | camflow train show JOB_ID [--wait] | camflow train --cancel JOB_ID';

/** Pure: one training job in a line — its id, state, dataset, and what it is doing or what came of it. */
export function trainingJobLine(j: TrainingJobStatus): string {
  const p = j.progress;
  const doing =
    j.state === 'removed'
      ? removedText(j)
      : j.state === 'failed'
      ? `failed: ${j.failedReason ?? 'no reason recorded'}`
      : j.outcome
        ? j.outcome.skipped
          ? `skipped: ${j.outcome.reason ?? 'nothing to do'}`
          : `model ${j.outcome.version} (val accuracy ${j.outcome.valAccuracy?.toFixed(4)}, ${epochsText(j.outcome)}${(j.outcome.attempts ?? 1) > 1 ? `, attempt ${j.outcome.attempts}` : ''}; ${j.outcome.promoted ? 'promoted' : `not promoted${j.outcome.promotion ? `: ${j.outcome.promotion}` : ''}`})${j.outcome.warnings?.length ? ` with ${j.outcome.warnings.length === 1 ? 'a warning' : `${j.outcome.warnings.length} warnings`}` : ''}`
        : p?.epoch !== undefined
          ? `epoch ${p.epoch}${(p.attempt ?? 0) > 0 ? ` of attempt ${(p.attempt ?? 0) + 1}` : ''}: loss ${num4(p.loss)}${p.valLoss !== undefined ? `, val loss ${num4(p.valLoss)}` : ''}, val accuracy ${num4(p.valAccuracy)}`
          : j.state === 'active'
            ? 'loading the dataset'
            : j.state === 'delayed' && j.attemptsMade > 0
              ? `retrying soon: attempt ${j.attemptsMade} failed: ${j.failedReason ?? 'no reason recorded'}`
              : j.dueAt
              ? `scheduled for ${j.dueAt.slice(0, 19).replace('T', ' ')} UTC`
              : 'waiting for a free trainer';
  // A finished run names the version `latest` was when it ran.
  const version = j.outcome && !j.outcome.skipped && j.outcome.datasetVersion ? j.outcome.datasetVersion : j.datasetVersion;
  return `${j.jobId}  ${j.state}  ${j.dataset}@${version}  ${j.preset}  queued ${j.queuedAt.slice(0, 19).replace('T', ' ')}${j.origin === 'schedule' ? ' (schedule)' : ''}  ${doing}`;
}

/** Pure: what became of a job removed before it started. */
const removedText = (j: TrainingJobStatus) => `removed by the operator at ${(j.removedAt ?? '?').slice(0, 19).replace('T', ' ')} UTC, before it started`;

/** One training job, also one removed before it started (its record is kept beside the queues). */
const trainingJob = (ctx: Context, jobId: string) => getTrainingJob(ctx.queues.train, jobId, { redis: ctx.redis, prefix: ctx.config.QUEUE_PREFIX });

/** A loss or accuracy to 4 places; one that diverged (NaN: null once stored as JSON) said in words. */
const num4 = (v: number | null | undefined) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(4) : 'not a number (diverged)');

/** Wait for a training job, epoch by epoch on stderr; Ctrl-C ends the wait, not the training. */
async function follow(ctx: Context, jobId: string, json: boolean): Promise<void> {
  const release = interruptibleWait({ what: `training job ${jobId}`, where: 'the trainer', follow: `camflow train show ${jobId} --wait`, stop: `camflow train --cancel ${jobId}` });
  try {
    // Each restart said once, when a report first carries it.
    let restartsSaid = 0;
    const sayRestarts = (restarts: string[] = []) => {
      for (const r of restarts.slice(restartsSaid)) process.stderr.write(`${r}\n`);
      restartsSaid = Math.max(restartsSaid, restarts.length);
    };
    const outcome = await waitForJob(ctx.queues.train, jobId, (p) => {
      const m = p as { epoch: number; loss: number | null; valLoss?: number | null; valAccuracy: number | null; attempt: number; restarts?: string[] };
      if (json) return;
      sayRestarts(m.restarts);
      // The validation loss is what early stopping and the published (best) epoch follow: shown beside the rest.
      process.stderr.write(`epoch ${m.epoch} (attempt ${m.attempt + 1}): loss ${num4(m.loss)}${m.valLoss !== undefined ? ` val loss ${num4(m.valLoss)}` : ''} val accuracy ${num4(m.valAccuracy)}\n`);
    }).catch(async (error: unknown) => {
      // Removed while followed (`train --cancel` from elsewhere, or over HTTP): said as such, not as an unknown job.
      const job = await trainingJob(ctx, jobId).catch(() => undefined);
      if (job?.state === 'removed') throw new CamflowError('REMOVED', `training job ${jobId} was ${removedText(job)}: nothing was trained`);
      throw error;
    });
    const o = outcome as { skipped: boolean; reason?: string; version?: string; dataset?: string; datasetVersion?: string; valAccuracy?: number; epochs?: number; epochsAsked?: number; bestEpoch?: number; attempts?: number; restarts?: string[]; promoted?: boolean; promotion?: string; warnings?: string[] };
    // Restarts not yet said by an epoch line (a collapse after the last one reported): said now.
    if (!json) sayRestarts(o.restarts);
    const human = o.skipped
      ? `training skipped: ${o.reason ?? 'nothing to do'}`
      : `model ${o.version} published${o.datasetVersion ? ` (trained on ${o.dataset ?? '?'}@${o.datasetVersion})` : ''}: validation accuracy ${o.valAccuracy?.toFixed(4)} after ${epochsText(o)} (${o.attempts} attempt${o.attempts === 1 ? '' : 's'}); ${o.promoted ? 'promoted to production' : 'not promoted'}${o.promotion ? ` (${o.promotion})` : ''}${(o.warnings ?? []).map((w) => `\nwarning: ${w}`).join('')}`;
    print(json, outcome, human);
  } finally {
    release();
  }
}

/** `camflow train`: see `camflow train --help` (the command table in `commands.ts`). */
export async function run({ v, rest, num }: CommandInput): Promise<void> {
  const [sub, id] = rest;
  if (sub !== undefined) {
    if (sub !== 'list' && sub !== 'show') throw new CamflowError('USAGE', `camflow train takes list or show JOB_ID, not "${sub}" (${USAGE})`);
    const extra = Object.entries(v).filter(([k, val]) => val !== undefined && val !== false && k !== 'json' && !(k === 'wait' && sub === 'show')).map(([k]) => `--${k}`);
    if (extra.length) throw new CamflowError('USAGE', `camflow train ${sub} does not take ${extra.join(', ')} (${USAGE})`);
    if (sub === 'list' && id !== undefined) throw new CamflowError('USAGE', `camflow train list takes no argument; unexpected "${id}"`);
    if (sub === 'show' && id === undefined) throw new CamflowError('USAGE', 'camflow train show needs the JOB_ID (`camflow train list` shows them)');
    await withContext(async (ctx) => {
      if (sub === 'list') {
        const jobs = await listTrainingJobs(ctx.queues.train);
        print(v.json, { jobs }, jobs.length ? jobs.map(trainingJobLine).join('\n') : 'no training jobs (finished ones are kept 7 days, failed ones 30)');
        return;
      }
      const job = await trainingJob(ctx, id!);
      if (v.wait && !job.finishedAt && job.state !== 'removed') return follow(ctx, id!, v.json);
      const restarts = job.outcome?.restarts ?? job.progress?.restarts ?? [];
      print(v.json, job, `${trainingJobLine(job)}${restarts.map((r) => `\n${r}`).join('')}${(job.outcome?.warnings ?? []).map((w) => `\nwarning: ${w}`).join('')}`);
    });
    return;
  }
  if (v.cancel) {
    await withContext(async (ctx) => {
      const report = await cancelTraining(ctx.queues.train, ctx.redis, ctx.config.QUEUE_PREFIX, v.cancel!);
      const human = { removed: `training job ${report.jobId} removed (it had not started)`, stopping: `training job ${report.jobId} stops within ten steps; nothing is published`, none: report.state === 'removed' ? `training job ${report.jobId} was removed already (\`camflow train show ${report.jobId}\` says when)` : `training job ${report.jobId} has already finished (${report.state})` }[report.action];
      print(v.json, report, human);
    });
    return;
  }
  if (!v.dataset) throw new CamflowError('USAGE', USAGE);
  const input = trainJobFromFlags({ v, num });
  await withContext(async (ctx) => {
    await getDatasetManifest(ctx.store, v.dataset!, v.version); // an unknown dataset fails here, not in the trainer
    const job = await enqueueTraining(ctx.queues.train, input);
    if (!v.wait) {
      print(v.json, { jobId: job.id }, `training job ${job.id} queued (\`camflow train show ${job.id}\` follows it)`);
      return;
    }
    await follow(ctx, job.id!, v.json);
  });
}

/** "9 of 20 epochs (stopped early: …; the best, epoch 6, is published)", or "20 epochs" (best epoch said when not the last). */
export function epochsText(o: { epochs?: number; epochsAsked?: number; bestEpoch?: number }): string {
  const epochs = o.epochs ?? 0;
  const best = o.bestEpoch !== undefined && o.bestEpoch !== epochs ? `the best, epoch ${o.bestEpoch}, is published` : '';
  if (o.epochsAsked !== undefined && epochs < o.epochsAsked) return `${epochs} of ${o.epochsAsked} epochs (stopped early: the validation loss stopped improving${best ? `; ${best}` : ''})`;
  return `${counted(epochs, 'epoch')}${best ? ` (${best})` : ''}`;
}
