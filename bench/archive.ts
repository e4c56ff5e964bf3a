// `npm run bench:archive`: ARCHIVE_IMAGES (default 100,000) synthetic cell images under a prefix of a second S3
// store (the lab's archive), submitted as `s3://…` and localized by 2 cam-worker processes (chunks), one finalizer
// and one ingest worker that lists the prefix page by page. The ingest worker is killed with SIGKILL part-way through
// the listing and a new one started (what an operator's supervisor does after a crash): the page it held is taken
// over. Prints one JSON line: images/s end to end, listing images/s, Redis bytes per queued image, peak RSS of each
// process, and the check that every object has exactly one result line. Not part of `npm test`.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ObjectStore, batchInfoSchema, createLimiter, createRedis, generateCell, createRng, encodePng, keys, startS3 } from '@camflow/common';
import { batchStatus } from '@camflow/ingest';
import { readResults, waitForBatch } from '../packages/cli/src/wait.ts';
import { publishUntrained, runCli, sleep, startCluster } from '../test/helpers/cluster.ts';

const IMAGES = Number(process.env.ARCHIVE_IMAGES ?? 100_000);
const KILL_AFTER_S = Number(process.env.ARCHIVE_KILL_AFTER_S ?? 60); // the first ingest worker is killed after this long
const say = (m: string) => process.stderr.write(`[archive] ${new Date().toISOString().slice(11, 19)} ${m}\n`);

async function usedMemory(url: string): Promise<number> {
  const r = createRedis(url);
  const info = await r.info('memory');
  await r.quit();
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

const peakRss = async (file: string) => Math.max(0, ...[...(await readFile(file, 'utf8')).matchAll(/"maxRssMB":(\d+)/g)].map((m) => Number(m[1])));

async function main() {
  const c = await startCluster({ LOG_LEVEL: 'warn', CAM_THREADS: '1', CAM_CHUNK_SIZE: '256' });
  const archive = await startS3({ bucket: 'lab-archive' });
  try {
    await publishUntrained(c.ctx);
    const lab = new ObjectStore({ bucket: 'lab-archive', endpoint: archive.endpoint, credentials: archive.credentials });
    say(`writing ${IMAGES} synthetic cells under s3://lab-archive/cells/`);
    const rng = createRng(5);
    const limit = createLimiter(16);
    const w0 = performance.now();
    await Promise.all(
      Array.from({ length: IMAGES }, (_, i) =>
        limit(async () => {
          const label = i % 2 === 0 ? 'Parasitized' : 'Uninfected';
          const cell = generateCell(rng, label);
          await lab.put(`cells/${label}/${String(i).padStart(7, '0')}.png`, await encodePng(cell.rgb, cell.width, cell.height));
        }),
      ),
    );
    say(`written in ${((performance.now() - w0) / 1000).toFixed(0)} s`);
    const source = { SOURCE_S3_ENDPOINT: archive.endpoint, SOURCE_AWS_ACCESS_KEY_ID: archive.credentials.accessKeyId, SOURCE_AWS_SECRET_ACCESS_KEY: archive.credentials.secretAccessKey };
    const info = { LOG_LEVEL: 'info' };
    const chunkWorkers = [c.spawnWorker('chunks', { ...info, ...source }), c.spawnWorker('chunks', { ...info, ...source })];
    const finalizer = c.spawnWorker('finalizer', info);
    const firstLister = c.spawnWorker('ingest', { ...info, ...source });
    const mem0 = await usedMemory(c.env.REDIS_URL!);
    const t0 = performance.now();
    const submitted = await runCli(c, ['submit', 's3://lab-archive/cells/', '--key', 'archive-run', '--outputs', 'json', '--json'], { ...source, LOG_LEVEL: 'debug' });
    if (submitted.code !== 0) throw new Error(`submit failed: ${submitted.stderr.slice(-500)}`);
    const submitRss = Math.max(0, ...[...submitted.stderr.matchAll(/"maxRssMB":(\d+)/g)].map((m) => Number(m[1])));
    const { batchId } = JSON.parse(submitted.stdout.trim().split('\n').pop()!) as { batchId: string };
    say(`submitted ${batchId} in ${((performance.now() - t0) / 1000).toFixed(1)} s; listing by the ingest worker`);
    const submittedAt = performance.now();
    // Sample Redis memory and the images queued and not yet done (listed − done), every 5 s.
    let maxQueued = 0;
    let peakRedis = 0;
    let listedAt: number | undefined;
    let killedAtPage: number | undefined;
    let secondLister: ReturnType<typeof c.spawnWorker> | undefined;
    const sampler = (async () => {
      for (;;) {
        const status = await batchStatus(c.ctx.store, c.ctx.queues.batch, batchId);
        const mem = (await usedMemory(c.env.REDIS_URL!)) - mem0;
        peakRedis = Math.max(peakRedis, mem);
        const queued = (status.images?.total ?? 0) - (status.images?.done ?? 0);
        maxQueued = Math.max(maxQueued, queued);
        const listing = status.info?.listing;
        if (listing && listing.state !== 'listing' && listedAt === undefined) listedAt = performance.now();
        if (!secondLister && (performance.now() - submittedAt) / 1000 > KILL_AFTER_S) {
          firstLister.kill('SIGKILL');
          await firstLister.exited;
          killedAtPage = listing?.pages;
          say(`ingest worker killed at page ${killedAtPage} (${listing?.state}); a new one takes over`);
          secondLister = c.spawnWorker('ingest', { ...info, ...source });
        }
        if (status.state === 'completed') return;
        await sleep(5000);
      }
    })();
    await waitForBatch(c.ctx, batchId, 24 * 3600_000);
    await sampler;
    const seconds = (performance.now() - t0) / 1000;
    const final = batchInfoSchema.parse(await c.ctx.store.getJson(keys.batchInfo(batchId)));
    const results = await readResults(c.ctx.store, batchId);
    const names = new Set(results.map((r) => r.name));
    const logs = (role: string, n: number) => join(c.dir, `worker-${role}-${n}.log`);
    process.stdout.write(
      `${JSON.stringify({
        bench_archive: {
          images: IMAGES,
          cam_workers: 2,
          seconds: Math.round(seconds),
          images_per_s: Math.round((IMAGES / seconds) * 10) / 10,
          listing_seconds: listedAt ? Math.round((listedAt - t0) / 1000) : null,
          listing_pages: final.listing?.pages,
          ingest_worker_killed_at_page: killedAtPage ?? null,
          redis_peak_mb: Math.round(peakRedis / 1024 ** 2),
          // Redis holds the queued chunks and the finished jobs BullMQ keeps (24 h, at most 10,000 per queue).
          redis_peak_bytes_per_image: Math.round(peakRedis / IMAGES),
          max_images_queued: maxQueued,
          peak_rss_mb: {
            submit: submitRss || null,
            ingest_killed: await peakRss(logs('ingest', 3)),
            ingest: await peakRss(logs('ingest', 4)),
            chunk_workers: await Promise.all([0, 1].map((i) => peakRss(logs('chunks', i)))),
          },
          exactly_one_line_per_object: results.length === IMAGES && names.size === IMAGES,
          ok: results.filter((r) => r.status === 'ok').length,
        },
      })}\n`,
    );
    for (const w of [...chunkWorkers, finalizer, secondLister]) w?.kill('SIGTERM');
  } finally {
    await archive.stop();
    await c.close();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${(error as Error).stack}\n`);
    process.exit(1);
  },
);
