// `npm run bench:archive`: ARCHIVE_IMAGES (default 100,000) synthetic cell images under a prefix of a second S3
// store (the lab's archive), localized with 2 cam-worker processes. The submitting process is killed with SIGKILL
// part-way through its listing and run again with the same --key (what an operator does after a crash). Prints one
// JSON line: images/s end to end, ingest images/s, Redis bytes per queued image, peak RSS of each process, and the
// check that every object has exactly one result line. Not part of `npm test`.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ObjectStore, createLimiter, createRedis, generateCell, createRng, encodePng, startS3 } from '@camflow/common';
import { readResults, waitForBatch } from '../packages/cli/src/wait.ts';
import { publishUntrained, startCluster } from '../test/helpers/cluster.ts';

const IMAGES = Number(process.env.ARCHIVE_IMAGES ?? 100_000);
const KILL_AFTER_S = Number(process.env.ARCHIVE_KILL_AFTER_S ?? 20); // the first submitter is killed after this long
const say = (m: string) => process.stderr.write(`[archive] ${m}\n`);
const root = fileURLToPath(new URL('..', import.meta.url));

async function usedMemory(url: string): Promise<number> {
  const r = createRedis(url);
  const info = await r.info('memory');
  await r.quit();
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

/** Run the real CLI; resolves with its output, exit code and peak RSS (from its debug line). */
function cli(env: Record<string, string>, args: string[], onStderr?: (chunk: string, kill: () => void) => void) {
  return new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; maxRssMB?: number }>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'packages/cli/src/main.ts'), ...args], { env: { ...process.env, ...env }, cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      onStderr?.(String(d), () => child.kill('SIGKILL'));
    });
    child.on('exit', (code, signal) => {
      const rss = [...stderr.matchAll(/"maxRssMB":(\d+)/g)].map((m) => Number(m[1]));
      resolve({ code, signal, stdout, stderr, ...(rss.length ? { maxRssMB: Math.max(...rss) } : {}) });
    });
  });
}

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
    const env = { ...c.env, LOG_LEVEL: 'debug', SOURCE_S3_ENDPOINT: archive.endpoint, SOURCE_AWS_ACCESS_KEY_ID: archive.credentials.accessKeyId, SOURCE_AWS_SECRET_ACCESS_KEY: archive.credentials.secretAccessKey };
    const workers = [c.spawnWorker('cam', { LOG_LEVEL: 'info' }), c.spawnWorker('cam', { LOG_LEVEL: 'info' })];
    const mem0 = await usedMemory(c.env.REDIS_URL!);
    const t0 = performance.now();
    // First submission: killed with SIGKILL KILL_AFTER_S after it starts talking (its buffered logs die with it, so the
    // kill is timed, not counted).
    let timer: NodeJS.Timeout | undefined;
    const killed = await cli(env, ['submit', 's3://lab-archive/cells/', '--key', 'archive-run', '--outputs', 'json', '--json'], (_chunk, kill) => {
      timer ??= setTimeout(kill, KILL_AFTER_S * 1000);
    });
    clearTimeout(timer);
    say(`first submit ended by ${killed.signal ?? `exit ${killed.code}`}`);
    const again = await cli(env, ['submit', 's3://lab-archive/cells/', '--key', 'archive-run', '--outputs', 'json', '--json']);
    if (again.code !== 0) throw new Error(`second submit failed: ${again.stderr.slice(-500)}`);
    const info = JSON.parse(again.stdout.trim().split('\n').pop()!) as { batchId: string; chunks: number };
    const ingestSeconds = (performance.now() - t0) / 1000;
    const mem1 = await usedMemory(c.env.REDIS_URL!);
    say(`ingested (both runs) in ${ingestSeconds.toFixed(0)} s; waiting for the workers`);
    await waitForBatch(c.ctx, info.batchId, 24 * 3600_000);
    const seconds = (performance.now() - t0) / 1000;
    const results = await readResults(c.ctx.store, info.batchId);
    const names = new Set(results.map((r) => r.name));
    const workerRss = await Promise.all(
      workers.map(async (_, i) => {
        const log = await import('node:fs/promises').then((fs) => fs.readFile(join(c.dir, `worker-cam-${i}.log`), 'utf8'));
        return Math.max(0, ...[...log.matchAll(/"maxRssMB":(\d+)/g)].map((m) => Number(m[1])));
      }),
    );
    process.stdout.write(
      `${JSON.stringify({
        bench_archive: {
          images: IMAGES,
          workers: 2,
          seconds: Math.round(seconds),
          images_per_s: Math.round((IMAGES / seconds) * 10) / 10,
          ingest_seconds_including_the_killed_run: Math.round(ingestSeconds),
          redis_bytes_per_queued_image: Math.round((mem1 - mem0) / IMAGES),
          peak_rss_mb: { submit_killed: killed.maxRssMB ?? null, submit: again.maxRssMB ?? null, workers: workerRss },
          killed_after_s: KILL_AFTER_S,
          exactly_one_line_per_object: results.length === IMAGES && names.size === IMAGES,
          ok: results.filter((r) => r.status === 'ok').length,
        },
      })}\n`,
    );
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
