import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { bullConnection, getProduction, initBackend, modelChannel, queueNames, type Config, type Logger, type ObjectStore } from '@camflow/common';
import { ModelCache } from './model-cache.js';
import { processChunk } from './chunk.js';
import { finalizeBatch } from './finalize.js';

export interface CamWorkerDeps {
  config: Config;
  store: ObjectStore;
  /** A dedicated connection for the model announcements (subscriber mode). */
  subscriber?: Redis;
  log: Logger;
}

export interface CamWorkers {
  cam: Worker;
  batch: Worker;
  models: ModelCache;
  close(): Promise<void>;
}

/**
 * Start the `cam` worker (chunks) and the `batch` worker (finalization). Jobs that stall (a killed process) are
 * picked up again by BullMQ's stalled-job check; every write is to a deterministic key, so a retry overwrites.
 */
export async function startCamWorkers(deps: CamWorkerDeps): Promise<CamWorkers> {
  const { config, store, log } = deps;
  await initBackend(config.TF_BACKEND, log);
  const models = new ModelCache(store, log, { kind: config.CAM_ENGINE, threads: config.CAM_THREADS, providers: config.CAM_EXECUTION_PROVIDERS });
  const connection = bullConnection(config.REDIS_URL);
  const cam = new Worker(
    queueNames.cam,
    async (job: Job) =>
      processChunk(job.data, {
        store,
        models,
        log: log.child({ jobId: job.id, attempt: job.attemptsMade + 1 }),
        inferBatch: config.CAM_INFER_BATCH,
        storeParallelism: config.CAM_STORE_PARALLELISM,
        maxPixels: config.MAX_IMAGE_PIXELS,
      }),
    { connection, prefix: config.QUEUE_PREFIX, name: `cam-${process.pid}`, concurrency: config.CAM_CONCURRENCY, lockDuration: config.JOB_LOCK_MS, stalledInterval: config.STALLED_INTERVAL_MS, maxStalledCount: 3 },
  );
  const batch = new Worker(
    queueNames.batch,
    async (job: Job) => {
      const ignored = await job.getIgnoredChildrenFailures();
      const chunkFailures: Record<number, string> = {};
      for (const [key, reason] of Object.entries(ignored)) {
        const m = /-c(\d+)$/.exec(key);
        if (m) chunkFailures[Number(m[1])] = String(reason);
      }
      return finalizeBatch(job.data, store, chunkFailures, log.child({ jobId: job.id }));
    },
    { connection, prefix: config.QUEUE_PREFIX, name: `batch-${process.pid}`, concurrency: 2, lockDuration: config.JOB_LOCK_MS, stalledInterval: config.STALLED_INTERVAL_MS, maxStalledCount: 3 },
  );
  for (const [name, w] of [['cam', cam], ['batch', batch]] as const) {
    w.on('failed', (job, err) => log.warn({ queue: name, jobId: job?.id, attemptsMade: job?.attemptsMade, err: err.message }, 'job failed'));
    w.on('error', (err) => log.error({ queue: name, err: err.message }, 'worker error'));
  }
  // The production model is what most batches pin: load it now, not on the first chunk.
  getProduction(store)
    .then((production) => production && models.get(production.version))
    .catch((err: Error) => log.warn({ err: err.message }, 'could not preload the production model'));
  if (deps.subscriber) {
    await deps.subscriber.subscribe(modelChannel(config.QUEUE_PREFIX));
    deps.subscriber.on('message', (_channel, message) => {
      try {
        const { version } = JSON.parse(message) as { version: string };
        log.info({ modelVersion: version }, 'new model version announced; preloading');
        models.get(version).catch((err: Error) => log.warn({ modelVersion: version, err: err.message }, 'preload failed'));
      } catch {
        log.warn({ message }, 'unparseable model announcement');
      }
    });
  }
  return {
    cam,
    batch,
    models,
    async close() {
      await Promise.all([cam.close(), batch.close()]);
      if (deps.subscriber) await deps.subscriber.quit().catch(() => undefined);
      models.dispose();
    },
  };
}
