import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Job } from 'bullmq';
import { checkRedis, chunkJobId, createRedis, keys, startRedis, type ImageResult } from '@camflow/common';
import { batchStatus, cancelBatch, submitBatch } from '@camflow/ingest';
import { readResults, waitForBatch } from '../../packages/cli/src/wait.ts';
import { eventually, publishUntrained, runCli, sleep, startCluster, syntheticFolder, type Cluster } from '../helpers/cluster.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(root, 'packages/cli/src/main.ts');

function submit(c: Cluster, folder: string, chunkSize: number, extra: Partial<Parameters<typeof submitBatch>[0]> = {}) {
  return submitBatch({ store: c.ctx.store, flow: c.ctx.flow, redis: c.ctx.redis, prefix: 'camflow', source: folder, chunkSize, attempts: Number(c.env.CAM_ATTEMPTS), backoffMs: Number(c.env.CAM_BACKOFF_MS), ...extra });
}

const camflow = runCli;

function assertExactlyOnce(results: ImageResult[], names: string[]) {
  assert.deepEqual(results.map((r) => r.name).sort(), [...names].sort(), 'every item exactly once');
  assert.deepEqual(results.filter((r) => r.status !== 'ok').map((r) => `${r.name}: ${r.status === 'failed' ? r.error : ''}`), [], 'no failed items');
}

test('a chunk whose workers are killed 5 times still completes: stalls and attempts are one budget (CAM_ATTEMPTS=8)', async () => {
  // Slow chunks (one image per inference, one write at a time), so a kill always meets the chunk mid-work.
  const c = await startCluster({ CAM_INFER_BATCH: '1', CAM_STORE_PARALLELISM: '1' });
  try {
    await publishUntrained(c.ctx);
    const names = await syntheticFolder(c.dir, 150, 41);
    const info = await submit(c, join(c.dir, 'batch-41'), 150);
    const id = chunkJobId(info.batchId, 0);
    for (let kill = 1; kill <= 5; kill++) {
      const w = c.spawnWorker('cam');
      await eventually(`worker ${kill} to hold the chunk`, async () => ((await Job.fromId(c.ctx.queues.cam, id))?.processedBy === `cam-${w.pid}` && (await c.ctx.queues.cam.getActiveCount()) > 0 ? true : undefined), 60_000, 50);
      w.kill('SIGKILL');
      await w.exited;
    }
    c.spawnWorker('cam');
    await waitForBatch(c.ctx, info.batchId, 180_000);
    assertExactlyOnce(await readResults(c.ctx.store, info.batchId), names);
    const job = (await Job.fromId(c.ctx.queues.cam, id))!;
    assert.ok(job.finishedOn && !job.failedReason, `finished without failing: ${job.failedReason}`);
  } finally {
    await c.close();
  }
});

test('a finalization that fails for good says so in status, with the reason; `camflow batches repair` runs it again', async () => {
  const c = await startCluster({ CAM_ATTEMPTS: '2', CAM_BACKOFF_MS: '200' });
  try {
    await publishUntrained(c.ctx);
    const names = await syntheticFolder(c.dir, 20, 42);
    const info = await submit(c, join(c.dir, 'batch-42'), 5);
    // Break the batch's manifest (only finalization reads it): every attempt fails on the broken line.
    const manifest = await c.ctx.store.get(keys.batchManifest(info.batchId));
    await c.ctx.store.put(keys.batchManifest(info.batchId), `${manifest.toString('utf8')}{"imageId": broken\n`);
    c.spawnWorker('cam');
    const failed = await eventually('the batch to be reported failed', async () => {
      const s = await batchStatus(c.ctx.store, c.ctx.queues.batch, info.batchId);
      return s.state === 'failed' ? s : undefined;
    }, 90_000, 200);
    assert.match(failed.reason!, /finalization failed after 2 attempts: .*manifest\.jsonl, line 21: not JSON/);
    assert.match(failed.reason!, /camflow batches repair/);
    const cliStatus = await camflow(c, ['status', info.batchId]);
    assert.match(cliStatus.stdout, /failed/);
    await c.ctx.store.put(keys.batchManifest(info.batchId), manifest);
    const repaired = await camflow(c, ['batches', 'repair', info.batchId, '--json']);
    assert.equal(repaired.code, 0, repaired.stderr);
    const report = JSON.parse(repaired.stdout);
    assert.equal(report.action, 'requeued');
    assert.equal(report.committed, 4);
    await waitForBatch(c.ctx, info.batchId, 60_000);
    assertExactlyOnce(await readResults(c.ctx.store, info.batchId), names);
    // Repairing a completed batch does nothing.
    assert.equal(JSON.parse((await camflow(c, ['batches', 'repair', info.batchId, '--json'])).stdout).action, 'none');
  } finally {
    await c.close();
  }
});

test('a Redis that lost everything (restart without persistence): status says stalled, the same key enqueues nothing, repair re-creates the jobs from S3', async () => {
  const c = await startCluster();
  try {
    await publishUntrained(c.ctx);
    const names = await syntheticFolder(c.dir, 40, 43);
    const folder = join(c.dir, 'batch-43');
    const info = await submit(c, folder, 8, { idempotencyKey: 'nightly-43' });
    const w = c.spawnWorker('cam');
    await eventually('a first chunk to be committed', async () => ((await c.ctx.store.exists(keys.resultChunk(info.batchId, 0))) ? true : undefined), 60_000);
    w.kill('SIGKILL');
    await w.exited;
    // What a restart of a Redis without AOF leaves: nothing.
    const admin = createRedis(c.env.REDIS_URL!);
    await admin.flushall();
    await admin.quit();
    const stalled = await batchStatus(c.ctx.store, c.ctx.queues.batch, info.batchId);
    assert.equal(stalled.state, 'stalled');
    assert.match(stalled.reason!, /repair/);
    // The same key and files: the batch it already is (the claim is restored from S3), nothing enqueued.
    const again = await submit(c, folder, 8, { idempotencyKey: 'nightly-43' });
    assert.deepEqual([again.existing, again.batchId], [true, info.batchId]);
    assert.equal(await c.ctx.queues.cam.count(), 0);
    const report = await camflow(c, ['batches', 'repair', info.batchId, '--json']);
    assert.equal(report.code, 0, report.stderr);
    const r = JSON.parse(report.stdout);
    assert.ok(r.committed >= 1 && r.recreated.length === 5 - r.committed, report.stdout);
    // Repair is idempotent: run again, it finds every job in place.
    assert.equal(JSON.parse((await camflow(c, ['batches', 'repair', info.batchId, '--json'])).stdout).action, 'none');
    c.spawnWorker('cam');
    await waitForBatch(c.ctx, info.batchId, 90_000);
    assertExactlyOnce(await readResults(c.ctx.store, info.batchId), names);
  } finally {
    await c.close();
  }
});

test('a batch remembers its QUEUE_PREFIX: status and repair under another prefix name it instead of calling the batch stalled', async () => {
  const c = await startCluster();
  try {
    await publishUntrained(c.ctx);
    const names = await syntheticFolder(c.dir, 6, 48);
    const lab = { QUEUE_PREFIX: 'lab-a' };
    const submitted = await camflow(c, ['submit', join(c.dir, 'batch-48'), '--key', 'k-48', '--json'], lab);
    assert.equal(submitted.code, 0, submitted.stderr);
    const { batchId } = JSON.parse(submitted.stdout) as { batchId: string };
    // Under the default prefix its jobs are not to be seen: said plainly, and repair re-creates nothing here.
    const elsewhere = `batch ${batchId} was queued under QUEUE_PREFIX=lab-a, not camflow: its jobs and workers are there; set QUEUE_PREFIX=lab-a to follow or repair it`;
    for (const args of [['status', batchId], ['batches', 'repair', batchId]]) {
      const out = await camflow(c, args);
      assert.deepEqual([out.code, out.stderr.trim().split('\n').pop()], [1, elsewhere], `${args.join(' ')}: ${out.stderr}`);
    }
    assert.equal(await c.ctx.queues.cam.count(), 0, 'nothing enqueued under the default prefix');
    // What needs only the object store works from here: its page exists (open), its results are not there yet, and
    // the same submission with its key is the same batch (nothing enqueued here, nothing repaired).
    assert.equal((await camflow(c, ['open', batchId, '--json'])).code, 0);
    const early = await camflow(c, ['results', batchId]);
    assert.deepEqual([early.code, early.stderr.trim().split('\n').pop()], [1, `batch ${batchId} is running under QUEUE_PREFIX=lab-a: no results yet`]);
    const again = await camflow(c, ['submit', join(c.dir, 'batch-48'), '--key', 'k-48', '--json']);
    assert.deepEqual([again.code, JSON.parse(again.stdout).batchId, JSON.parse(again.stdout).existing], [0, batchId, true], again.stderr);
    assert.equal(await c.ctx.queues.cam.count(), 0, 'still nothing enqueued under the default prefix');
    // A cancellation is a marker in the object store: it works from any prefix, and the prefix's workers honour it.
    await syntheticFolder(c.dir, 2, 49);
    const other = JSON.parse((await camflow(c, ['submit', join(c.dir, 'batch-49'), '--json'], lab)).stdout) as { batchId: string };
    const cancelled = await camflow(c, ['batches', 'cancel', other.batchId, '--json']);
    assert.equal(JSON.parse(cancelled.stdout).action, 'cancelled', cancelled.stderr);
    // The list under the default prefix shows it, with where it was queued and what was submitted.
    const listed = JSON.parse((await camflow(c, ['batches', 'list', '--json'])).stdout) as { batches: { batchId: string; state: string; queuePrefix?: string; source?: string }[] };
    assert.deepEqual(listed.batches.find((b) => b.batchId === batchId), { ...listed.batches.find((b) => b.batchId === batchId), state: 'elsewhere', queuePrefix: 'lab-a', source: 'batch-48' });
    const here = await camflow(c, ['status', batchId, '--json'], lab);
    assert.equal(JSON.parse(here.stdout).state, 'running', here.stderr);
    c.spawnWorker('cam', lab);
    const done = await camflow(c, ['submit', join(c.dir, 'batch-48'), '--key', 'k-48', '--wait', '--json'], lab);
    assert.deepEqual([done.code, JSON.parse(done.stdout.trim().split('\n').pop()!).batchId], [0, batchId], done.stderr);
    // Finished, it reads the same from any prefix: its results are in the object store.
    const finished = await camflow(c, ['status', batchId, '--json']);
    assert.equal(JSON.parse(finished.stdout).state, 'completed', finished.stderr);
    assertExactlyOnce(await readResults(c.ctx.store, batchId), names);
    await waitForBatch(c.ctx, other.batchId, 60_000);
    assert.deepEqual((await readResults(c.ctx.store, other.batchId)).map((r) => (r.status === 'failed' ? r.reason : r.status)), ['cancelled', 'cancelled']);
  } finally {
    await c.close();
  }
});

test('re-running `camflow submit` with its key re-creates the jobs of a batch that Redis lost', async () => {
  const c = await startCluster();
  try {
    await publishUntrained(c.ctx);
    const names = await syntheticFolder(c.dir, 12, 47);
    const folder = join(c.dir, 'batch-47');
    const first = await camflow(c, ['submit', folder, '--key', 'k-47', '--chunk-size', '4', '--json']);
    assert.equal(first.code, 0, first.stderr);
    const info = JSON.parse(first.stdout);
    await sleep(5500); // older than the window in which its first submission may still be enqueuing
    const admin = createRedis(c.env.REDIS_URL!);
    await admin.flushall();
    await admin.quit();
    const again = await camflow(c, ['submit', folder, '--key', 'k-47', '--chunk-size', '4', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual([JSON.parse(again.stdout).existing, JSON.parse(again.stdout).batchId], [true, info.batchId]);
    assert.equal(await c.ctx.queues.cam.count(), 3, 'its three chunk jobs are back');
    c.spawnWorker('cam');
    await waitForBatch(c.ctx, info.batchId, 60_000);
    assertExactlyOnce(await readResults(c.ctx.store, info.batchId), names);
  } finally {
    await c.close();
  }
});

test('start-up warns when Redis persistence is off', async () => {
  const redis = await startRedis({ appendonly: false });
  const client = createRedis(redis.url);
  try {
    const report = await checkRedis(client);
    assert.equal(report.appendonly, 'no');
    assert.ok(report.problems.some((p) => /AOF\) is off/.test(p) && /batches repair/.test(p)), report.problems.join('\n'));
    // The services say it at their start; a one-shot command does not repeat it above its own answer on every run.
    const cli = fileURLToPath(new URL('../../packages/cli/src/main.ts', import.meta.url));
    const env = { ...process.env, REDIS_URL: redis.url, AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', S3_ENDPOINT: '' };
    const out = spawnSync(process.execPath, ['--import', 'tsx', cli, 'status', 'b1'], { env, encoding: 'utf8' });
    assert.equal(out.status, 78, out.stderr);
    assert.match(out.stderr, /config: AWS_ACCESS_KEY_ID/, 'it got past Redis');
    assert.doesNotMatch(out.stderr, /AOF/);
  } finally {
    await client.quit();
    await redis.stop();
  }
});

test('an S3 outage while workers draw heatmaps: no worker dies, the batch completes exactly once', async () => {
  // Few store sockets per worker, so that writes queue up behind reads: the outage meets writes of a chunk that has
  // already failed on a read (the rejection that used to kill a worker).
  const c = await startCluster({ CAM_BACKOFF_MS: '500', CAM_STORE_PARALLELISM: '2' });
  try {
    await publishUntrained(c.ctx);
    const names = await syntheticFolder(c.dir, 300, 44);
    const info = await submit(c, join(c.dir, 'batch-44'), 30); // heatmaps and overlays: three PUTs per image
    const workers = [c.spawnWorker('cam'), c.spawnWorker('cam')];
    await eventually('a first chunk to complete', async () => ((await c.ctx.queues.cam.getCompletedCount()) > 0 ? true : undefined), 60_000, 50);
    await c.s3.stop('SIGKILL');
    await sleep(8000);
    await c.s3.restart();
    await waitForBatch(c.ctx, info.batchId, 180_000);
    assertExactlyOnce(await readResults(c.ctx.store, info.batchId), names);
    for (const w of workers) assert.equal(w.child.exitCode, null, `worker ${w.pid} is still running`);
    for (const f of ['worker-cam-0.log', 'worker-cam-1.log']) assert.doesNotMatch(await readFile(join(c.dir, f), 'utf8'), /unhandled rejection|uncaught exception/i);
  } finally {
    await c.close();
  }
});

test('every CLI command fails fast, in one line naming what is unreachable; config errors exit 78 and echo no secret', async () => {
  const c = await startCluster();
  try {
    const t0 = Date.now();
    const redisDown = await camflow(c, ['models'], { REDIS_URL: 'redis://:s3cret-pass@127.0.0.1:1' });
    assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
    assert.equal(redisDown.code, 1);
    const lines = redisDown.stderr.split('\n').filter((l) => l.trim() && !/AWS SDK|node >=22|a\.co|upgrade|trace-warnings|versions published|will require|To continue|npm warn/i.test(l));
    assert.equal(lines.length, 1, redisDown.stderr);
    assert.match(lines[0]!, /^Redis at redis:\/\/127\.0\.0\.1:1 is unreachable: ECONNREFUSED$/);
    assert.ok(!redisDown.stderr.includes('s3cret-pass'));
    // A bad flag is named before anything is contacted: with Redis down, the answer is still about the flag.
    for (const [args, text] of [
      [['submit', c.dir, '--chunk-size', '0'], 'Expected an integer in [1, 10000] for --chunk-size but received 0'],
      [['submit', c.dir, '--cell-diameter', '-3'], 'Expected number to be >=8 for --cell-diameter but received -3'],
      [['submit', c.dir, '--priority', 'urgent'], 'Expected one of "high"|"normal"|"low" for --priority but received "urgent"'],
      [['train', '--dataset', 'cells', '--val-fraction', '2'], 'Expected number to be <1 for --val-fraction but received 2'],
    ] as const) {
      const early = await camflow(c, [...args], { REDIS_URL: 'redis://127.0.0.1:1' });
      assert.deepEqual([early.code, early.stderr.trim().split('\n').pop()], [2, text], early.stderr);
    }
    const t1 = Date.now();
    const s3Down = await camflow(c, ['models'], { S3_ENDPOINT: 'http://127.0.0.1:1' });
    assert.ok(Date.now() - t1 < 10_000, `took ${Date.now() - t1} ms`);
    assert.equal(s3Down.code, 1);
    assert.match(s3Down.stderr, /S3 at http:\/\/127\.0\.0\.1:1, bucket \w+, is unreachable/);
    // A password in an endpoint URL never reaches the terminal.
    const s3UserInfo = await camflow(c, ['models'], { S3_ENDPOINT: 'http://lab:pw-in-url-77@127.0.0.1:1' });
    assert.equal(s3UserInfo.code, 1);
    assert.match(s3UserInfo.stderr, /S3 at http:\/\/127\.0\.0\.1:1\/?, bucket \w+, is unreachable/);
    assert.ok(!s3UserInfo.stderr.includes('pw-in-url-77'), s3UserInfo.stderr);
    // A REDIS_URL Redis cannot take (a database that is not a number) is a configuration error naming it, not a crash.
    for (const url of [`${c.env.REDIS_URL}/abc`, 'notaurl:pass@x']) {
      const bad = await camflow(c, ['models'], { REDIS_URL: url });
      assert.equal(bad.code, 78, `${url}: ${bad.stderr}`);
      assert.match(bad.stderr, /config: REDIS_URL: a redis:\/\/ or rediss:\/\/ URL: host, optional port and database number/);
      assert.ok(!/at .*\.ts:\d+|ReplyError/.test(bad.stderr), bad.stderr);
      assert.ok(!bad.stderr.includes('pass@'), bad.stderr);
    }
    // No credentials is not an outage: the line says what to set.
    const t2 = Date.now();
    const noCredentials = await camflow(c, ['models'], { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_CONFIG_FILE: '/nonexistent', AWS_EC2_METADATA_DISABLED: 'true' });
    assert.ok(Date.now() - t2 < 10_000, `took ${Date.now() - t2} ms`);
    assert.equal(noCredentials.code, 78, noCredentials.stderr);
    assert.match(noCredentials.stderr, /needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
    // Credentials the store refuses, a bucket that does not exist: each names the variable to change, in one line.
    const wrongKey = await camflow(c, ['models'], { AWS_ACCESS_KEY_ID: 'NOT-A-KEY', AWS_SECRET_ACCESS_KEY: 'wrong-secret-491' });
    assert.equal(wrongKey.code, 78, wrongKey.stderr);
    assert.match(wrongKey.stderr, /config: AWS_ACCESS_KEY_ID: S3 at http:\/\/127\.0\.0\.1:\d+ refused these credentials for bucket \w+ \(HTTP 403\)/);
    assert.ok(!wrongKey.stderr.includes('wrong-secret-491'), wrongKey.stderr);
    const typo = await camflow(c, ['dataset', 'list'], { S3_BUCKET: 'camflwo' });
    assert.equal(typo.code, 78, typo.stderr);
    assert.match(typo.stderr, /config: S3_BUCKET: S3 at http:\/\/127\.0\.0\.1:\d+ has no bucket "camflwo": check the name, or set S3_CREATE_BUCKET=true/);
    // …and nothing was created under the typo; asked for, the bucket is made.
    const created = await camflow(c, ['dataset', 'list'], { S3_BUCKET: 'camflwo', S3_CREATE_BUCKET: 'true' });
    assert.equal(created.code, 0, created.stderr);
    assert.equal((await camflow(c, ['dataset', 'list'], { S3_BUCKET: 'camflwo' })).code, 0);
    // Endpoints that accept the connection and never answer: still one line within 10 s.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as { port: number }).port;
    try {
      for (const env of [{ REDIS_URL: `redis://127.0.0.1:${port}` }, { S3_ENDPOINT: `http://127.0.0.1:${port}` }] as Record<string, string>[]) {
        const t = Date.now();
        const out = await camflow(c, ['models'], env);
        assert.ok(Date.now() - t < 10_000, `${JSON.stringify(env)}: took ${Date.now() - t} ms`);
        assert.equal(out.code, 1);
        assert.match(out.stderr, /is unreachable: no answer within/);
      }
    } finally {
      silent.close();
    }
    const short = await camflow(c, ['serve'], { API_TOKEN: 'short-secret' });
    assert.equal(short.code, 78);
    assert.match(short.stderr, /config: API_TOKEN: .*12 characters, not shown/);
    assert.ok(!short.stderr.includes('short-secret'));
    const missing = await camflow(c, ['serve'], { API_TOKEN: '' });
    assert.equal(missing.code, 78);
    assert.match(missing.stderr, /config: API_TOKEN: required/);
    // --json: stdout is JSON only, logs go to stderr.
    await publishUntrained(c.ctx);
    const models = await camflow(c, ['models', '--json'], { LOG_LEVEL: 'debug' });
    assert.equal(models.code, 0, models.stderr);
    for (const line of models.stdout.trim().split('\n')) assert.doesNotThrow(() => JSON.parse(line), line);
    assert.equal(models.stdout.trim().split('\n').length, 1);
    assert.match(models.stderr, /command finished/);
  } finally {
    await c.close();
  }
});

test('a cam job that can never succeed is not retried: an unknown class fails at once, naming it', async () => {
  const c = await startCluster();
  try {
    const manifest = await publishUntrained(c.ctx);
    const names = await syntheticFolder(c.dir, 4, 45);
    const info = await submit(c, join(c.dir, 'batch-45'), 4);
    // A job written by something other than submitBatch (an older client, a hand-made job): a target the model lacks.
    const job = await c.ctx.queues.cam.add('chunk', { batchId: 'b-poison', chunk: 0, modelVersion: manifest.version, items: [{ imageId: 'i1', name: 'x', sha256: 'a'.repeat(64), ext: 'png', width: 1, height: 1 }], options: { target: 'NoSuchClass' } }, { attempts: 5, backoff: { type: 'fixed', delay: 100 } });
    const bad = await c.ctx.queues.cam.add('chunk', { batchId: 'b-poison2', chunk: 0, modelVersion: manifest.version, items: [{ imageId: 'i1', name: 'x', sha256: 'zz', ext: 'png', width: 1, height: 1 }], options: {} }, { attempts: 5, backoff: { type: 'fixed', delay: 100 } });
    c.spawnWorker('cam');
    await waitForBatch(c.ctx, info.batchId, 60_000);
    assertExactlyOnce(await readResults(c.ctx.store, info.batchId), names);
    for (const j of [job, bad]) {
      const done = await eventually('the poison job to fail', async () => {
        const x = await Job.fromId(c.ctx.queues.cam, j.id!);
        return x?.finishedOn ? x : undefined;
      }, 30_000);
      assert.equal(done.attemptsMade, 1, `${done.failedReason}: no retry`);
    }
    assert.match((await Job.fromId(c.ctx.queues.cam, bad.id!))!.failedReason, /cam job/);
    // The CLI refuses the same target before anything is stored: exit 2, field named.
    const cliRefusal = await camflow(c, ['submit', join(c.dir, 'batch-45'), '--target', 'foo']);
    assert.equal(cliRefusal.code, 2);
    assert.match(cliRefusal.stderr, /for --target but received "foo"/, 'named as the flag typed');
    assert.match((await Job.fromId(c.ctx.queues.cam, job.id!))!.failedReason, /NoSuchClass/);
  } finally {
    await c.close();
  }
});

test('secrets never reach a log, at trace level: the bearer token of an upload and the S3 keys', async () => {
  const c = await startCluster();
  const token = 'tok-SECRET-0123456789abcdef';
  try {
    await publishUntrained(c.ctx);
    await syntheticFolder(c.dir, 2, 46);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const child = spawn(process.execPath, ['--import', 'tsx', cli, 'serve'], { env: { ...process.env, ...c.env, API_TOKEN: token, LOG_LEVEL: 'trace', API_PORT: String(port), API_HOST: '127.0.0.1' }, cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    try {
      await eventually('the API to listen', async () => (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)) || undefined, 30_000, 200);
      const fd = new FormData();
      fd.append('files', new Blob([await readFile(join(c.dir, 'batch-46', (spawnSync('ls', [join(c.dir, 'batch-46')], { encoding: 'utf8' }).stdout.split('\n')[0])!))]), 'a.png');
      const res = await fetch(`http://127.0.0.1:${port}/v1/batches`, { method: 'POST', headers: { authorization: `Bearer ${token}`, cookie: 'session=cookie-secret' }, body: fd });
      assert.equal(res.status, 202, await res.clone().text());
      await fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { authorization: `Bearer ${token}` } });
      await sleep(500);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    // The multipart plugin logs every request header at trace level: the leak that was found. It is still logged, redacted.
    const busboy = out.split('\n').find((l) => /"level":10/.test(l) && /busboyOptions/.test(l));
    assert.ok(busboy, `the trace line of the multipart plugin was written: ${out.slice(0, 3000)}`);
    assert.match(busboy, /"authorization":"\[redacted\]"/);
    for (const secret of [token, 'cookie-secret', c.env.AWS_SECRET_ACCESS_KEY!]) assert.ok(!out.includes(secret), `${secret} leaked`);
    // Its start line says where it works (Redis without credentials, the store and bucket, the queue prefix); the
    // probes polled above are not logged, even at trace level; the shutdown says what an API finishes.
    const started = JSON.parse(out.split('\n').find((l) => l.includes('"camflow API started"'))!) as Record<string, string>;
    assert.deepEqual([started.redis, started.s3, started.bucket, started.queuePrefix], [c.env.REDIS_URL!.replace(/\/\d*$/, ''), c.env.S3_ENDPOINT, c.env.S3_BUCKET, 'camflow']);
    assert.deepEqual(out.split('\n').filter((l) => l.includes('/healthz')), [], 'no log line per probe');
    assert.match(out, /"shutting down: finishing the requests in flight"/);
  } finally {
    await c.close();
  }
});

test('a cancelled batch: committed chunks keep their results, every other image gets a `cancelled` line, each exactly once', async () => {
  const c = await startCluster({ CAM_INFER_BATCH: '1', CAM_STORE_PARALLELISM: '1', CAM_CONCURRENCY: '1' });
  try {
    await publishUntrained(c.ctx);
    const names = await syntheticFolder(c.dir, 60, 77);
    const info = await submit(c, join(c.dir, 'batch-77'), 4, { options: { outputs: ['json', 'overlay'] } });
    c.spawnWorker('cam');
    await eventually('a first chunk to be done', async () => ((await batchStatus(c.ctx.store, c.ctx.queues.batch, info.batchId)).images!.done >= 4 ? true : undefined), 120_000, 50);
    const report = await cancelBatch(c.ctx.store, c.ctx.queues.batch, info.batchId);
    assert.equal(report.action, 'cancelled');
    const status = await waitForBatch(c.ctx, info.batchId, 120_000);
    assert.equal(status.cancelled?.at, report.cancelledAt);
    const results = await readResults(c.ctx.store, info.batchId);
    assert.deepEqual(results.map((r) => r.name).sort(), [...names].sort(), 'every image exactly once');
    const ok = results.filter((r) => r.status === 'ok').length;
    const cancelled = results.filter((r) => r.status === 'failed' && r.reason === 'cancelled');
    assert.ok(ok >= 4 && cancelled.length >= 4 && ok + cancelled.length === 60, `${ok} ok, ${cancelled.length} cancelled`);
    assert.match(cancelled[0]!.status === 'failed' ? cancelled[0]!.error : '', /^batch cancelled at .*: cancelled by the operator$/);
    // Cancelling again does nothing, and says so; an unknown batch is named.
    const again = await camflow(c, ['batches', 'cancel', info.batchId, '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).action, 'none');
    const unknown = await camflow(c, ['batches', 'cancel', 'nosuchbatch']);
    assert.deepEqual([unknown.code, unknown.stderr.trim()], [1, 'batch not found: nosuchbatch']);
    // The batch list says it was cancelled, not just completed.
    const listed = JSON.parse((await camflow(c, ['batches', 'list', '--json'])).stdout) as { batches: { batchId: string; state: string; cancelled?: { at: string } }[] };
    const row = listed.batches.find((b) => b.batchId === info.batchId)!;
    assert.deepEqual([row.state, row.cancelled?.at], ['completed', report.cancelledAt]);
    assert.match((await camflow(c, ['batches', 'list'])).stdout, new RegExp(`${info.batchId} .* completed, cancelled`));
  } finally {
    await c.close();
  }
});
