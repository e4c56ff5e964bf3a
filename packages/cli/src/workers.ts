import { createRedis, type Config, type Logger, type ObjectStore } from '@camflow/common';
import { startTrainer } from '@camflow/trainer';
import { startCamWorkers } from '@camflow/cam-worker';
import type { Worker } from 'bullmq';

export type WorkerRole = 'cam' | 'trainer' | 'all';

/** Start the workers of a role in this process; `close` drains them (SIGTERM/SIGINT call it). */
export async function startWorkers(role: WorkerRole, config: Config, store: ObjectStore, log: Logger): Promise<{ close(): Promise<void> }> {
  const closers: (() => Promise<void>)[] = [];
  if (role === 'trainer' || role === 'all') {
    const publisher = createRedis(config.REDIS_URL);
    const trainer: Worker = await startTrainer({ config, store, publisher, log: log.child({ role: 'trainer' }) });
    closers.push(async () => {
      await trainer.close();
      await publisher.quit().catch(() => undefined);
    });
  }
  if (role === 'cam' || role === 'all') {
    const cam = await startCamWorkers({ config, store, subscriber: createRedis(config.REDIS_URL), log: log.child({ role: 'cam-worker' }) });
    closers.push(() => cam.close());
  }
  log.info({ role }, 'workers started');
  return { close: async () => void (await Promise.all(closers.map((c) => c()))) };
}

/** Close on SIGTERM/SIGINT within `graceMs`, then exit. A second signal exits at once. */
export function closeOnSignals(close: () => Promise<void>, log: Logger, graceMs = 30_000): void {
  let closing = false;
  const handler = (signal: string) => {
    if (closing) process.exit(1);
    closing = true;
    log.info({ signal }, 'shutting down: finishing or handing back active jobs');
    const timer = setTimeout(() => {
      log.error({ graceMs }, 'shutdown grace period exceeded; exiting (active jobs will be recovered as stalled)');
      process.exit(1);
    }, graceMs);
    timer.unref();
    close().then(
      () => process.exit(0),
      (err: Error) => {
        log.error({ err: err.message }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}
