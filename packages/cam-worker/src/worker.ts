import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  batchJobSchema,
  redisOutageLog,
  watchBull,
  watchRedisClient,
  type OutageLog,
  bullConnection,
  camJobSchema,
  fieldCellsJobId,
  fieldCellsJobSchema,
  type FieldCellsJob,
  type FieldCellsFailure,
  parseWith,
  chunkJobId,
  getProduction,
  initBackend,
  keys,
  modelChannel,
  publicReason,
  queueNames,
  type ChunkFailure,
  type Config,
  type Logger,
  type ObjectStore,
  instrumentWorker,
  bullTelemetry,
  useOneImageThread,
  type ProcessMetrics,
} from '@camflow/common';
import { ModelCache } from './model-cache.js';
import { processChunk, type FanOut } from './chunk.js';
import { localizeFieldCells } from './field.js';
import { orFailForGood } from './unrecoverable.js';
import { finalizeBatch } from './finalize.js';

export interface CamWorkerDeps {
  config: Config;
  store: ObjectStore;
  /** A dedicated connection for the model announcements (subscriber mode). */
  subscriber?: Redis;
  log: Logger;
  /** Which queues this process serves: chunks (`cam`), finalization (`batch`), or both (default). */
  queues?: { chunks: boolean; finalize: boolean };
  /** Prometheus instruments of this process (job durations, failures, stalls, images, models loaded). */
  metrics?: ProcessMetrics;
  /** The process's Redis outage log (one line when Redis stops answering, one when it answers again). */
  outage?: OutageLog;
}

export interface CamWorkers {
  cam?: Worker;
  batch?: Worker;
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
  useOneImageThread();
  const metrics = deps.metrics;
  const models = new ModelCache(store, log, { kind: config.CAM_ENGINE, threads: config.CAM_THREADS, providers: config.CAM_EXECUTION_PROVIDERS }, 3, (version, engine) => metrics?.modelLoaded.set({ version, engine }, 1));
  const connection = bullConnection(config.REDIS_URL);
  const serve = deps.queues ?? { chunks: true, finalize: true };
  const outage = deps.outage ?? redisOutageLog(log);
  // A killed worker's job is 'stalled' and handed to another worker. Stalls and attempts are one budget: a job may
  // stall as often as it may fail (CAM_ATTEMPTS), so a chunk whose workers keep dying gets every configured try.
  const limits = { lockDuration: config.JOB_LOCK_MS, stalledInterval: config.STALLED_INTERVAL_MS, maxStalledCount: config.CAM_ATTEMPTS };
  // A chunk's smear fields fan out as `field-cells` children in the same queue; the chunk's job waits for them.
  const camQueue = serve.chunks ? new Queue(queueNames.cam, { connection, prefix: config.QUEUE_PREFIX }) : undefined;
  if (camQueue) watchBull(outage, camQueue, { queue: 'cam', client: 'fan-out' });
  const fanOutOf = (job: Job, token: string | undefined): FanOut | undefined =>
    camQueue && token && job.id
      ? {
          async add(parts: FieldCellsJob[]) {
            await camQueue.addBulk(
              parts.map((data) => ({
                name: 'field-cells',
                data,
                opts: {
                  jobId: fieldCellsJobId(data.batchId, data.chunk, data.imageId, data.part),
                  parent: { id: job.id!, queue: job.queueQualifiedName },
                  // No priority: parts go ahead of the batches' (prioritized) chunks, so a field started is a field finished.
                  attempts: job.opts.attempts ?? config.CAM_ATTEMPTS,
                  backoff: job.opts.backoff ?? { type: 'exponential', delay: config.CAM_BACKOFF_MS },
                  ignoreDependencyOnFailure: true,
                  removeOnComplete: { age: 24 * 3600, count: 10_000 },
                  removeOnFail: { age: 7 * 24 * 3600 },
                },
              })),
            );
          },
          wait: () => job.moveToWaitingChildren(token),
          async failureOf(part: FieldCellsJob) {
            const ignored = await job.getIgnoredChildrenFailures();
            const reason = ignored[`${config.QUEUE_PREFIX}:${queueNames.cam}:${fieldCellsJobId(part.batchId, part.chunk, part.imageId, part.part)}`];
            return reason === undefined ? undefined : publicReason(new Error(String(reason)));
          },
        }
      : undefined;
  const cam = serve.chunks
    ? new Worker(
        queueNames.cam,
        async (job: Job, token?: string) => {
          const jobLog = log.child({ jobId: job.id, attempt: job.attemptsMade + 1 });
          if (job.name === 'field-cells') return localizeFieldCells(job.data, { store, models, inferBatch: config.CAM_INFER_BATCH, log: jobLog });
          return processChunk(job.data, {
            store,
            models,
            log: jobLog,
            inferBatch: config.CAM_INFER_BATCH,
            storeParallelism: config.CAM_STORE_PARALLELISM,
            maxPixels: config.MAX_IMAGE_PIXELS,
            batchPixels: config.CAM_BATCH_PIXELS,
            fields: { maxSlidePixels: config.MAX_SLIDE_PIXELS, maxFieldPixels: config.MAX_FIELD_PIXELS, tile: config.FIELD_TILE, cellsPerJob: config.FIELD_CELLS_PER_JOB },
            fanOut: fanOutOf(job, token),
          });
        },
        { connection, ...bullTelemetry(), prefix: config.QUEUE_PREFIX, name: `cam-${process.pid}`, concurrency: config.CAM_CONCURRENCY, ...limits },
      )
    : undefined;
  const batch = serve.finalize
    ? new Worker(
        queueNames.batch,
        async (job: Job) => {
          const { batchId } = orFailForGood(() => parseWith(batchJobSchema, job.data, 'batch job'));
          // BullMQ's failure reasons of this batch's chunk jobs, looked up by the ids the batch was enqueued with.
          const ignored = new Map(Object.entries(await job.getIgnoredChildrenFailures()));
          const chunkError = (chunk: number) => {
            const reason = ignored.get(`${config.QUEUE_PREFIX}:${queueNames.cam}:${chunkJobId(batchId, chunk)}`);
            return reason === undefined ? undefined : publicReason(new Error(String(reason)));
          };
          return finalizeBatch(job.data, store, chunkError, log.child({ jobId: job.id }), config.WEBHOOK_SECRET);
        },
        { connection, ...bullTelemetry(), prefix: config.QUEUE_PREFIX, name: `batch-${process.pid}`, concurrency: 2, ...limits },
      )
    : undefined;
  // A chunk that exhausted its attempts: its reason goes to S3 (the truth), so finalization and `repair` can report
  // it whatever happens to Redis. Best effort: the finalizer falls back to BullMQ's reason.
  cam?.on('failed', (job, err) => {
    // Final: attempts used up, or failed for good (unrecoverable, stalled too often), which sets finishedOn.
    if (!job || (job.attemptsMade < (job.opts.attempts ?? 1) && !job.finishedOn)) return;
    if (job.name === 'field-cells') {
      // A part of a field's cells: its reason goes beside the part, where the field's assembly looks for it.
      const part = fieldCellsJobSchema.safeParse(job.data);
      if (part.success) {
        const { batchId, imageId, part: p } = part.data;
        store.putJson(keys.fieldCellsFailure(batchId, imageId, p), { part: p, attempts: job.attemptsMade, error: publicReason(err), failedAt: new Date().toISOString() } satisfies FieldCellsFailure).catch((e: Error) => log.warn({ err: e, batchId, imageId, part: p }, 'could not record a field part failure in S3'));
      }
      return;
    }
    const parsed = camJobSchema.safeParse(job.data);
    if (!parsed.success) return;
    const record: ChunkFailure = { batchId: parsed.data.batchId, chunk: parsed.data.chunk, attempts: job.attemptsMade, error: publicReason(err), failedAt: new Date().toISOString() };
    store.putJson(keys.resultChunkFailure(record.batchId, record.chunk), record).catch((e: Error) => log.warn({ err: e, batchId: record.batchId, chunk: record.chunk }, 'could not record a chunk failure in S3'));
  });
  if (metrics) {
    if (cam) instrumentWorker(metrics, cam, 'cam');
    if (batch) instrumentWorker(metrics, batch, 'batch');
    cam?.on('completed', (_job, outcome: { ok?: number; failed?: number } | undefined) => {
      metrics.images.inc({ status: 'ok' }, outcome?.ok ?? 0);
      metrics.images.inc({ status: 'failed' }, outcome?.failed ?? 0);
    });
  }
  for (const [name, w] of [['cam', cam], ['batch', batch]] as const) {
    w?.on('failed', (job, err) => log.warn({ queue: name, jobId: job?.id, attemptsMade: job?.attemptsMade, err: err.message }, 'job failed'));
    if (w) watchBull(outage, w, { queue: name });
    // A chunk whose worker stopped answering (killed, frozen) is handed to another one when its lock expires.
    w?.on('stalled', (jobId) => log.warn({ queue: name, jobId, maxStalledCount: config.CAM_ATTEMPTS }, 'a job whose worker stopped answering (its lock expired) goes back to the queue for another worker, or fails once it has stalled CAM_ATTEMPTS times'));
  }
  // The production model is what most batches pin: load it now, not on the first chunk.
  getProduction(store)
    .then((production) => production && models.get(production.version))
    .catch((err: Error) => log.warn({ err: err.message }, 'could not preload the production model'));
  if (deps.subscriber) {
    watchRedisClient(outage, deps.subscriber, { client: 'model announcements' });
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
      await Promise.all([cam?.close(), batch?.close()]);
      await camQueue?.close();
      if (deps.subscriber) await deps.subscriber.quit().catch(() => undefined);
      models.dispose();
    },
  };
}
