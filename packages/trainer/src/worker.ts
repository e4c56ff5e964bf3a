import { availableParallelism } from 'node:os';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { bullTelemetry, initBackend, isScheduledJob, scheduledDue, instrumentWorker, redisOutageLog, trainCancelKey, watchBull, watchRedisClient, type OutageLog, type ProcessMetrics, queueNames, bullConnection, type Config, type Logger, type ObjectStore } from '@camflow/common';
import { runTraining, type TrainOutcome } from './train-job.js';

/** A training job's return value: the outcome without the (stored) manifest. */
export type TrainResult = Extract<TrainOutcome, { skipped: true }> | Omit<Extract<TrainOutcome, { skipped: false }>, 'manifest'>;
import { announce } from './publish.js';

export interface TrainerDeps {
  config: Config;
  store: ObjectStore;
  publisher: Redis;
  log: Logger;
  /** Prometheus instruments of this process (training job durations, failures, stalls). */
  metrics?: ProcessMetrics;
  /** The process's Redis outage log (one line when Redis stops answering, one when it answers again). */
  outage?: OutageLog;
}

/** The `train` worker: concurrency 1 (a training run uses every core the backend can). */
export async function startTrainer(deps: TrainerDeps): Promise<Worker> {
  const { config, log } = deps;
  const backend = await initBackend(config.TF_BACKEND, log);
  const worker = new Worker(
    queueNames.train,
    async (job: Job): Promise<TrainResult> => {
      const outcome = await runTraining(job.data, {
        store: deps.store,
        log, // runTraining's logger adds jobId and dataset
        backend: backend.backend,
        threads: config.TRAIN_THREADS || availableParallelism(),
        gradients: config.TRAIN_GRADIENTS,
        cancelled: async () => (await deps.publisher.exists(trainCancelKey(config.QUEUE_PREFIX, String(job.id)))) > 0,
        scheduled: isScheduledJob(job),
        jobId: job.id ?? job.name,
        // A scheduled run's version carries the time it fell due, not the time the run before it was queued.
        jobTimestamp: scheduledDue(job) ?? job.timestamp,
        progress: (p) => job.updateProgress(p),
      });
      if (!outcome.skipped) await announce(deps.publisher, config.QUEUE_PREFIX, { version: outcome.version, promoted: outcome.promoted });
      if (outcome.skipped) return outcome;
      // The manifest is in S3; keep the job's return value small.
      const { manifest: _manifest, ...summary } = outcome;
      return summary;
    },
    { connection: bullConnection(config.REDIS_URL), ...bullTelemetry(), prefix: config.QUEUE_PREFIX, name: `trainer-${process.pid}`, concurrency: 1, lockDuration: config.TRAIN_LOCK_MS, stalledInterval: config.STALLED_INTERVAL_MS, maxStalledCount: 3 },
  );
  if (deps.metrics) instrumentWorker(deps.metrics, worker, 'train');
  worker.on('failed', (job, err) => log.error({ jobId: job?.id, err: err.message }, 'training job failed'));
  const outage = deps.outage ?? redisOutageLog(log);
  watchBull(outage, worker, { queue: 'train' });
  watchRedisClient(outage, deps.publisher, { client: 'model announcements' });
  return worker;
}

/** Training job options: bounded retries; the outcome kept a week for `camflow models`. */
