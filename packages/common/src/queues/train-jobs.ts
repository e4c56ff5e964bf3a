import { z } from 'zod';
import { Job, type JobType, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { NotFoundError } from '../errors.js';
import { parseWith } from '../validate.js';
import { nightlySchedulerId, trainRemovedKey } from './names.js';
import { retrainingScheduleSchema, trainJobSchema, type TrainJob, type TrainJobInput } from './schemas.js';

/**
 * How every training job is queued (the CLI, the HTTP API and the schedule alike): two attempts, a week of finished
 * jobs and a month of failed ones kept, so `camflow train list` can say what happened to last night's run.
 */
export const trainJobOptions = { attempts: 2, backoff: { type: 'exponential', delay: 5000 }, removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 30 * 24 * 3600 } } as const;

/** What a finished training job returned (its model manifest left out). */
const outcomeSchema = z.object({
  skipped: z.boolean(),
  reason: z.string().optional(),
  version: z.string().optional(),
  /** The dataset and version it trained on (a job asks for `latest`: this is what that was). */
  dataset: z.string().optional(),
  datasetVersion: z.string().optional(),
  valAccuracy: z.number().optional(),
  /** Epochs run, asked for (fewer run: stopped early), the published (best) one, and where a resumed run took up. */
  epochs: z.number().optional(),
  epochsAsked: z.number().optional(),
  bestEpoch: z.number().optional(),
  resumedFromEpoch: z.number().optional(),
  /** Training attempts in this run (1 + the collapsed ones restarted), and why each restart happened. */
  attempts: z.number().optional(),
  restarts: z.array(z.string()).optional(),
  promoted: z.boolean().optional(),
  promotion: z.string().optional(),
  warnings: z.array(z.string()).optional(),
});

/** A training job as `camflow train list | show` and `GET /v1/train[/:jobId]` report it. */
export const trainingJobStatusSchema = z.object({
  jobId: z.string(),
  /** BullMQ's state: waiting, delayed, prioritized, active, completed, failed (or unknown). */
  state: z.string(),
  /** `schedule` for a run the retraining schedule queued; `request` for `camflow train` / `POST /v1/train`. */
  origin: z.enum(['request', 'schedule']),
  dataset: z.string(),
  datasetVersion: z.string(),
  preset: z.string(),
  queuedAt: z.string(),
  /** A delayed job (the schedule's next run): when it is due. */
  dueAt: z.string().optional(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  /** The last epoch reported (while it runs, and where it stopped). */
  // A loss that diverged (NaN, infinite) is stored by BullMQ's JSON as null: said as such, never a broken list.
  // `attempt` counts from 0 (the CLI prints it from 1): a collapsed attempt is restarted with a new initialisation,
  // `restarts` says which and why (in words, counted from 1).
  progress: z.object({ epoch: z.number(), loss: z.number().nullable(), valLoss: z.number().nullable(), valAccuracy: z.number().nullable(), attempt: z.number(), restarts: z.array(z.string()) }).partial().optional(),
  /** Completed: the model published (or why it was skipped), whether it was promoted, the trainer's warnings. */
  outcome: outcomeSchema.optional(),
  /** Failed, or delayed for a retry: the trainer's reason (the last attempt's). */
  failedReason: z.string().optional(),
  /** State `removed`: when `camflow train --cancel` removed it, before it started. */
  removedAt: z.string().optional(),
  attemptsMade: z.number(),
});
export type TrainingJobStatus = z.infer<typeof trainingJobStatusSchema>;

const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : undefined);

/** Pure: whether the retraining schedule queued this training job (its scheduler's runs are named `retrain`). */
export const isScheduledJob = (job: Pick<Job, 'repeatJobKey' | 'name'>): boolean => Boolean(job.repeatJobKey) || job.name === 'retrain';

/** Pure: the time a scheduled run fell due, from its id (BullMQ's job schedulers name runs `repeat:<id>:<due ms>`); undefined for others. */
export function scheduledDue(job: Pick<Job, 'id' | 'repeatJobKey' | 'name'>): number | undefined {
  const due = isScheduledJob(job) ? /^repeat:.+:(\d{12,})$/.exec(job.id ?? '')?.[1] : undefined;
  return due === undefined ? undefined : Number(due);
}

/**
 * Pure: when a job joined the queue: a scheduled run once it fell due (BullMQ creates it a whole period before,
 * delayed); any other job, or a scheduled run still waiting for its time, when it was added. Lists sort by it.
 */
function queuedTime(job: Pick<Job, 'id' | 'repeatJobKey' | 'name' | 'timestamp'>, state: string): number {
  return (state !== 'delayed' ? scheduledDue(job) : undefined) ?? job.timestamp;
}

/** Pure: a BullMQ training job and its state as a status (the outcome without the model manifest it carries). */
export function trainingJobStatus(job: Job, state: string): TrainingJobStatus {
  const data = trainJobSchema.safeParse(job.data);
  const d: Partial<TrainJob> = data.success ? data.data : (job.data as Partial<TrainJob>);
  const r = (job.returnvalue ?? undefined) as Record<string, unknown> | undefined;
  const p = typeof job.progress === 'object' && job.progress !== null ? (job.progress as Record<string, number>) : undefined;
  const pick = <K extends string>(o: Record<string, unknown>, names: K[]) => Object.fromEntries(names.filter((n) => o[n] !== undefined).map((n) => [n, o[n]]));
  return trainingJobStatusSchema.parse({
    jobId: job.id ?? job.name,
    state,
    origin: isScheduledJob(job) ? 'schedule' : 'request',
    dataset: d.dataset ?? '?',
    datasetVersion: d.datasetVersion ?? 'latest',
    preset: d.preset ?? 'fast',
    // A scheduled run is created when the one before it is (or when the schedule is set), delayed until due: it was
    // queued when it fell due, the time its id carries (`repeat:<scheduler>:<due ms>`).
    queuedAt: iso(queuedTime(job, state)) ?? new Date(0).toISOString(),
    // A delayed job not yet tried is the schedule's next run, due at its delay past the queued time; one tried already
    // waits out its retry backoff (BullMQ keeps the first queued time, so that sum would lie in the past).
    ...(state === 'delayed' && job.delay && !job.attemptsMade ? { dueAt: iso(job.timestamp + job.delay) } : {}),
    ...(job.processedOn ? { startedAt: iso(job.processedOn) } : {}),
    ...(job.finishedOn ? { finishedAt: iso(job.finishedOn) } : {}),
    ...(p ? { progress: Object.fromEntries(Object.entries(pick(p, ['epoch', 'loss', 'valLoss', 'valAccuracy', 'attempt', 'restarts'])).map(([k, v]) => [k, typeof v === 'number' && !Number.isFinite(v) ? null : v])) } : {}),
    ...(r && typeof r === 'object' && typeof r.skipped === 'boolean' ? { outcome: pick(r, Object.keys(outcomeSchema.shape)) } : {}),
    ...((state === 'failed' || (state === 'delayed' && job.attemptsMade > 0)) && job.failedReason ? { failedReason: job.failedReason } : {}),
    attemptsMade: job.attemptsMade,
  });
}

/**
 * One training job's status; with `removed` (the queues' Redis and prefix), also one `train --cancel` removed before it
 * started (state `removed`, `removedAt`). NotFoundError when there is no such job (never queued, or past its retention).
 */
export async function getTrainingJob(queue: Queue, jobId: string, removed?: { redis: Pick<Redis, 'get'>; prefix: string }): Promise<TrainingJobStatus> {
  const job = await Job.fromId(queue, jobId);
  if (job) return trainingJobStatus(job, await job.getState());
  // Removed before it started (`train --cancel`): its record, kept a week.
  const kept = removed ? await removed.redis.get(trainRemovedKey(removed.prefix, jobId)) : null;
  const record = kept === null ? undefined : trainingJobStatusSchema.safeParse(JSON.parse(kept));
  if (record?.success) return record.data;
  throw new NotFoundError('training job', `${jobId} (finished jobs are kept 7 days, failed ones 30)`);
}

const STATES: JobType[] = ['active', 'waiting', 'prioritized', 'delayed', 'completed', 'failed'];

/**
 * The most recent training jobs, newest first (by the time each joined the queue): what runs, what waits, and what
 * finished or failed lately. Jobs removed before they started are not listed (`getTrainingJob` still finds them).
 */
export async function listTrainingJobs(queue: Queue, limit = 20): Promise<TrainingJobStatus[]> {
  const found: { job: Job; state: string }[] = [];
  for (const state of STATES) {
    for (const job of await queue.getJobs([state], 0, limit - 1)) if (job) found.push({ job, state });
  }
  return found
    .sort((a, b) => queuedTime(b.job, b.state) - queuedTime(a.job, a.state))
    .slice(0, limit)
    .map(({ job, state }) => trainingJobStatus(job, state));
}

/** Enqueue a training run. */
export async function enqueueTraining(queue: Queue, input: TrainJobInput): Promise<Job> {
  const data = parseWith(trainJobSchema, input, 'train job');
  return queue.add('train', data, trainJobOptions);
}

/** The retraining schedule, if one is installed: its pattern, zone, next run and the job it enqueues. */
/** The next run as BullMQ keeps it (`next`, Unix milliseconds) and as every other time camflow reports (`nextAt`, ISO 8601). */
const nextRun = (next: number | undefined) => (next !== undefined ? { next, nextAt: new Date(next).toISOString() } : {});

export async function getRetrainingSchedule(queue: Queue): Promise<{ id: string; pattern?: string; tz?: string; next?: number; nextAt?: string; data?: unknown } | undefined> {
  const s = await queue.getJobScheduler(nightlySchedulerId);
  if (!s) return undefined;
  return { id: nightlySchedulerId, ...(s.pattern ? { pattern: s.pattern } : {}), ...(s.tz ? { tz: s.tz } : {}), ...nextRun(s.next ?? undefined), ...(s.template?.data !== undefined ? { data: s.template.data } : {}) };
}

/**
 * What the retraining schedule will do about a production model an operator just promoted by hand, in words; undefined
 * without a schedule (or one that does not promote).
 */
export async function scheduleAfterManualPromotion(queue: Queue): Promise<string | undefined> {
  const s = await getRetrainingSchedule(queue);
  const data = s?.data as { dataset?: string; promote?: boolean } | undefined;
  if (!s || data?.promote === false) return undefined;
  return `the retraining schedule (${s.pattern ?? '?'}${s.tz ? `, ${s.tz}` : ''}, dataset ${data?.dataset ?? '?'}) keeps it: its runs publish without promoting while production is a model promoted by hand (a \`camflow train\` that scores at least as well still replaces it)`;
}

/** Remove the retraining schedule; whether there was one. A run already enqueued or running is left alone. */
export async function removeRetrainingSchedule(queue: Queue): Promise<boolean> {
  return queue.removeJobScheduler(nightlySchedulerId);
}

/**
 * Install (or update) the nightly retraining as a BullMQ job scheduler. The job skips when the dataset has not
 * changed since the production model.
 */
export async function scheduleRetraining(queue: Queue, cron: string, tz: string, input: TrainJobInput): Promise<{ id: string; next?: number; nextAt?: string }> {
  const data = parseWith(trainJobSchema, { ...input, skipIfUnchanged: true }, 'train job');
  const when = parseWith(retrainingScheduleSchema, { cron, tz }, 'schedule');
  const job = await queue.upsertJobScheduler(nightlySchedulerId, { pattern: when.cron, tz: when.tz }, { name: 'retrain', data, opts: trainJobOptions });
  const scheduler = await queue.getJobScheduler(nightlySchedulerId);
  return { id: nightlySchedulerId, ...nextRun(scheduler?.next ?? (job?.timestamp ? job.timestamp + (job.delay ?? 0) : undefined)) };
}
