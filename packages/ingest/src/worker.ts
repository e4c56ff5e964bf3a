import { DelayedError, FlowProducer, Job, Queue, Worker } from 'bullmq';
import { finalizeJobId, bullTelemetry, redisOutageLog, watchBull, type OutageLog, bullConnection, instrumentWorker, queueNames, s3SourceOptions, type Config, type Logger, type ObjectStore, type ProcessMetrics } from '@camflow/common/core';
import { isFinalAttempt, processListingPage } from './listing.js';

const LISTING_WAIT_MS = 5000;

/** Chunks of a batch not yet finished: its finalization's unprocessed children, less the listing page asking. */
async function unfinishedChunks(batches: Queue, batchId: string): Promise<number> {
  let id: string;
  try {
    id = finalizeJobId(batchId);
  } catch {
    return 0; // a malformed job: the page's own checks refuse it
  }
  const parent = await Job.fromId(batches, id);
  if (!parent) return 0;
  const { unprocessed = 0 } = await parent.getDependenciesCount({ unprocessed: true });
  return Math.max(0, unprocessed - 1);
}

/**
 * The `ingest` worker: lists S3-prefix batches page by page (`processListingPage`). Source credentials are this
 * process's own (SOURCE_S3_*, SOURCE_AWS_*): no secret travels in a job. Pages of one batch run one after the other
 * (each adds the next); pages of different batches run side by side (`INGEST_CONCURRENCY`).
 */
export function startIngestWorker(deps: { config: Config; store: ObjectStore; log: Logger; metrics?: ProcessMetrics; outage?: OutageLog }): { worker: Worker; close(): Promise<void> } {
  const { config, store, log } = deps;
  const connection = bullConnection(config.REDIS_URL);
  const flow = new FlowProducer({ connection, prefix: config.QUEUE_PREFIX, ...bullTelemetry() });
  flow.on('error', (err) => log.debug({ err: err.message }, 'redis connection error'));
  const listingDeps = {
    store,
    flow,
    prefix: config.QUEUE_PREFIX,
    s3Source: s3SourceOptions(config),
    limits: { maxFileBytes: config.MAX_FILE_BYTES, maxArchiveBytes: config.MAX_ARCHIVE_BYTES },
    maxPixels: config.MAX_IMAGE_PIXELS,
    maxSlidePixels: config.MAX_SLIDE_PIXELS,
    maxFieldPixels: config.MAX_FIELD_PIXELS,
  };
  const batches = new Queue(queueNames.batch, { connection, prefix: config.QUEUE_PREFIX });
  batches.on('error', (err) => log.debug({ err: err.message }, 'redis connection error'));
  const worker = new Worker(
    queueNames.ingest,
    async (job: Job, token?: string) => {
      // Back-pressure: a listing runs at most INGEST_AHEAD_CHUNKS unfinished chunks ahead of the workers.
      const batchId = String((job.data as { batchId?: unknown }).batchId);
      const pending = await unfinishedChunks(batches, batchId);
      if (pending > config.INGEST_AHEAD_CHUNKS) {
        log.debug({ batchId, pending, ahead: config.INGEST_AHEAD_CHUNKS }, 'listing waits for the workers');
        await job.moveToDelayed(Date.now() + LISTING_WAIT_MS, token);
        throw new DelayedError();
      }
      return processListingPage(job.data, { ...listingDeps, log: log.child({ jobId: job.id, attempt: job.attemptsMade + 1 }) }, { final: isFinalAttempt(job) });
    },
    {
      connection,
      ...bullTelemetry(),
      prefix: config.QUEUE_PREFIX,
      name: `ingest-${process.pid}`,
      concurrency: config.INGEST_CONCURRENCY,
      lockDuration: config.JOB_LOCK_MS,
      stalledInterval: config.STALLED_INTERVAL_MS,
      maxStalledCount: config.CAM_ATTEMPTS,
    },
  );
  if (deps.metrics) instrumentWorker(deps.metrics, worker, 'ingest');
  worker.on('failed', (job, err) => log.warn({ queue: 'ingest', jobId: job?.id, attemptsMade: job?.attemptsMade, err: err.message }, 'job failed'));
  watchBull(deps.outage ?? redisOutageLog(log), worker, { queue: 'ingest' });
  log.info({ concurrency: config.INGEST_CONCURRENCY }, 'ingest worker started: S3-prefix batches are listed here');
  return {
    worker,
    async close() {
      await worker.close();
      await batches.close().catch(() => undefined);
      await flow.close().catch(() => undefined);
    },
  };
}
