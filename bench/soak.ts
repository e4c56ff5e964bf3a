// `npm run soak`: SOAK_IMAGES (default 20,000) synthetic images through 2 cam-worker processes, one of them killed
// with SIGKILL and restarted every SOAK_KILL_EVERY_S seconds (default 30). Reports images/s, retries, Redis memory
// per queued image, and checks that every item has exactly one result. Not part of `npm test`.
import { join } from 'node:path';
import { createRedis } from '@camflow/common';
import { submitBatch } from '@camflow/ingest';
import { readResults, waitForBatch } from '../packages/cli/src/wait.ts';
import { publishUntrained, startCluster, syntheticFolder, type WorkerProcess } from '../test/helpers/cluster.ts';

const IMAGES = Number(process.env.SOAK_IMAGES ?? 20_000);
const KILL_EVERY_S = Number(process.env.SOAK_KILL_EVERY_S ?? 30);
const say = (m: string) => process.stderr.write(`[soak] ${m}\n`);

async function usedMemory(url: string): Promise<number> {
  const r = createRedis(url);
  const info = await r.info('memory');
  await r.quit();
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

async function main() {
  const c = await startCluster({ LOG_LEVEL: 'warn', JOB_LOCK_MS: '10000', STALLED_INTERVAL_MS: '5000', CAM_THREADS: '1' });
  try {
    await publishUntrained(c.ctx);
    say(`generating ${IMAGES} synthetic cells`);
    const names = await syntheticFolder(c.dir, IMAGES, 77);
    const mem0 = await usedMemory(c.env.REDIS_URL!);
    say('ingesting');
    const i0 = performance.now();
    const info = await submitBatch({ store: c.ctx.store, flow: c.ctx.flow, redis: c.ctx.redis, prefix: 'camflow', source: join(c.dir, 'batch-77'), chunkSize: 250, options: { outputs: [] }, attempts: 8, backoffMs: 1000 });
    const ingestSeconds = (performance.now() - i0) / 1000;
    const mem1 = await usedMemory(c.env.REDIS_URL!);
    say(`ingested in ${ingestSeconds.toFixed(1)} s; ${info.chunks} chunks queued; Redis +${((mem1 - mem0) / 1024).toFixed(0)} KiB`);
    const workers: WorkerProcess[] = [c.spawnWorker('cam'), c.spawnWorker('cam')];
    let kills = 0;
    const t0 = performance.now();
    const killer = setInterval(() => {
      const victim = workers.shift()!;
      victim.kill('SIGKILL');
      kills++;
      workers.push(c.spawnWorker('cam'));
      say(`killed worker ${victim.pid} (kill #${kills}), started a replacement`);
    }, KILL_EVERY_S * 1000);
    await waitForBatch(c.ctx, info.batchId, 6 * 3600_000);
    clearInterval(killer);
    const seconds = (performance.now() - t0) / 1000;
    const results = await readResults(c.ctx.store, info.batchId);
    const counts = new Map<string, number>();
    for (const r of results) counts.set(r.name, (counts.get(r.name) ?? 0) + 1);
    const exactlyOnce = results.length === names.length && names.every((n) => counts.get(n) === 1);
    const jobs = await c.ctx.queues.cam.getJobs(['completed', 'failed'], 0, 100_000);
    const retries = jobs.reduce((n, j) => n + Math.max(0, j.attemptsMade - 1) + (j.stalledCounter ?? 0), 0);
    const mem2 = await usedMemory(c.env.REDIS_URL!);
    const report = {
      soak: {
        images: names.length,
        seconds: Number(seconds.toFixed(1)),
        images_per_s: Number((names.length / seconds).toFixed(1)),
        ingest_images_per_s: Number((names.length / ingestSeconds).toFixed(1)),
        worker_kills: kills,
        retries_and_stalls: retries,
        failed_items: results.filter((r) => r.status !== 'ok').length,
        exactly_once: exactlyOnce,
        redis_bytes_per_queued_image: Number(((mem1 - mem0) / names.length).toFixed(1)),
        redis_used_memory_mib: { before: +(mem0 / 2 ** 20).toFixed(2), queued: +(mem1 / 2 ** 20).toFixed(2), after: +(mem2 / 2 ** 20).toFixed(2) },
      },
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
    if (!exactlyOnce) process.exitCode = 1;
  } finally {
    await c.close();
  }
}

main().catch((e) => {
  process.stderr.write(`soak failed: ${(e as Error).stack}\n`);
  process.exit(1);
});
