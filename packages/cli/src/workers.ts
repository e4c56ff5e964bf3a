import { useOneImageThread, createProcessMetrics, createRedis, redisOutageLog, serveMetrics, type Config, type Logger, type ObjectStore } from '@camflow/common/core';
import { startTrainer } from '@camflow/trainer';
import { startCamWorkers } from '@camflow/cam-worker';
import { startIngestWorker } from '@camflow/ingest';
import { whereTo } from './context.js';
import type { Worker } from 'bullmq';

/** `cam`: chunks, finalization and S3 listing; `chunks` / `finalizer` / `ingest`: one of the three; `trainer`; `all`: everything. */
export type WorkerRole = 'cam' | 'chunks' | 'finalizer' | 'ingest' | 'trainer' | 'all';
export const workerRoles: readonly WorkerRole[] = ['cam', 'chunks', 'finalizer', 'ingest', 'trainer', 'all'];

/** Start the workers of a role in this process; `close` drains them (SIGTERM/SIGINT call it). */
export async function startWorkers(role: WorkerRole, config: Config, store: ObjectStore, log: Logger): Promise<{ close(): Promise<void> }> {
  // Workers run one image pipeline per item concurrently: one libvips thread each.
  useOneImageThread();
  const closers: (() => Promise<void>)[] = [];
  const metrics = createProcessMetrics(role);
  // One outage log for the process: an outage is said once, not once per client and retry.
  const outage = redisOutageLog(log);
  if (config.METRICS_PORT !== undefined) {
    const server = await serveMetrics(metrics.registry, config.METRICS_PORT);
    const address = server.address();
    log.info({ port: typeof address === 'object' && address ? address.port : config.METRICS_PORT }, 'Prometheus metrics at /metrics');
    closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  }
  if (role === 'trainer' || role === 'all') {
    const publisher = createRedis(config.REDIS_URL);
    const trainer: Worker = await startTrainer({ config, store, publisher, metrics, outage, log: log.child({ role: 'trainer' }) });
    closers.push(async () => {
      await trainer.close();
      await publisher.quit().catch(() => undefined);
    });
  }
  if (role === 'ingest' || role === 'cam' || role === 'all') {
    const ingest = startIngestWorker({ config, store, metrics, outage, log: log.child({ role: 'ingest' }) });
    closers.push(() => ingest.close());
  }
  if (role !== 'trainer' && role !== 'ingest') {
    const queues = { chunks: role !== 'finalizer', finalize: role !== 'chunks' };
    const cam = await startCamWorkers({ config, store, queues, metrics, outage, subscriber: createRedis(config.REDIS_URL), log: log.child({ role: role === 'finalizer' ? 'finalizer' : 'cam-worker' }) });
    closers.push(() => cam.close());
  }
  log.info({ role, ...whereTo(config) }, 'workers started');
  return { close: async () => void (await Promise.all(closers.map((c) => c()))) };
}

export { closeOnSignals } from './signals.js';
