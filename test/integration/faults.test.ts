import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Job } from 'bullmq';
import { checkRedis, createRedis, encodePng, generateField, keys, listModels, startRedis, writeSyntheticDataset } from '@camflow/common';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { addDataset, batchStatus, submitBatch } from '@camflow/ingest';
import { jobKey } from '@camflow/trainer';
import { enqueueTraining } from '@camflow/common';
import type { ImageResult } from '@camflow/cam-worker';
import { readResults, waitForBatch, waitForJob } from '../../packages/cli/src/wait.ts';
import { eventually, publishUntrained, runCli, sleep, startCluster, syntheticFolder, type Cluster } from '../helpers/cluster.ts';
import { join } from 'node:path';

async function submit(c: Cluster, folder: string, chunkSize: number, key?: string) {
  return submitBatch({
    store: c.ctx.store,
    flow: c.ctx.flow,
    redis: c.ctx.redis,
    prefix: 'camflow',
    source: folder,
    chunkSize,
    attempts: Number(c.env.CAM_ATTEMPTS),
    backoffMs: Number(c.env.CAM_BACKOFF_MS),
    ...(key ? { idempotencyKey: key } : {}),
  });
}

/** Every submitted name appears exactly once, and all of them localized. */
function assertExactlyOnce(results: ImageResult[], names: string[], expectOk = true) {
  assert.deepEqual(results.map((r) => r.name).sort(), [...names].sort(), 'every item exactly once');
  if (expectOk) assert.deepEqual(results.filter((r) => r.status !== 'ok').map((r) => r.name), [], 'no failed items');
}

test('a cam-worker killed with SIGKILL mid-chunk: its chunk is recovered by another worker, every item exactly once', async () => {
  const c = await startCluster();
  try {
    await publishUntrained(c.ctx);
    const names = await syntheticFolder(c.dir, 240, 11);
    // Submitted before any worker runs: the batch says it waits for one, and promises no time.
    const info = await submit(c, join(c.dir, 'batch-11'), 40);
    const said: string[] = [];
    await assert.rejects(waitForBatch(c.ctx, info.batchId, 3000, undefined, (text) => said.push(text)), /not complete after 3000 ms/);
    const noWorker = "no cam-worker is connected to Redis queue 'cam' (prefix camflow): the work waits until one starts: `camflow worker cam` (or `camflow dev`, or the compose file's cam-worker service), with the same REDIS_URL and QUEUE_PREFIX";
    assert.deepEqual(said, [noWorker]);
    const idle = await batchStatus(c.ctx.store, c.ctx.queues.batch, info.batchId, c.ctx.queues);
    assert.deepEqual([idle.state, idle.workers, idle.waiting, idle.images], ['running', { cam: 0, finalizer: 0 }, noWorker, { total: 240, done: 0 }]);
    const shown = await runCli(c, ['status', info.batchId]);
    assert.equal(shown.stdout.trim().split('\n').pop(), noWorker, shown.stdout);
    const victim = c.spawnWorker('cam');
    // Wait until the victim holds a chunk, then kill it without warning.
    const held = await eventually('the victim to hold a chunk', async () => {
      const active = await c.ctx.queues.cam.getActive();
      return active.find((j) => j.processedBy === `cam-${victim.pid}`);
    });
    const served = await batchStatus(c.ctx.store, c.ctx.queues.batch, info.batchId, c.ctx.queues);
    assert.deepEqual([served.workers, served.waiting], [{ cam: 1, finalizer: 1 }, undefined]);
    victim.kill('SIGKILL');
    await victim.exited;
    c.spawnWorker('cam');
    await waitForBatch(c.ctx, info.batchId, 120_000);
    assertExactlyOnce(await readResults(c.ctx.store, info.batchId), names);
    const recovered = (await Job.fromId(c.ctx.queues.cam, held.id!))!;
    assert.ok(recovered.finishedOn, 'the killed chunk finished');
    assert.notEqual(recovered.processedBy, `cam-${victim.pid}`, 'and another worker finished it');
  } finally {
    await c.close();
  }
});

/** An untrained model in production and a folder `batch-<seed>` of `cells` synthetic cells plus one 40-cell field. */
async function cellsAndField(c: Cluster, cells: number, seed: number, fieldSeed: number): Promise<string[]> {
  await publishUntrained(c.ctx);
  const names = await syntheticFolder(c.dir, cells, seed);
  const field = generateField(fieldSeed, { width: 1400, height: 1000, cells: 40, fov: false });
  await writeFile(join(c.dir, `batch-${seed}`, 'field.png'), await encodePng(field.rgb, field.width, field.height));
  return names;
}

/** A fresh cam-worker finishes the batch: one line per file, the field's line ok; how many parts ran in this Redis. */
async function finishWithNewWorker(c: Cluster, batchId: string, names: string[]) {
  c.spawnWorker('cam');
  await waitForBatch(c.ctx, batchId, 120_000);
  const results = await readResults(c.ctx.store, batchId);
  assertExactlyOnce(results, [...names, 'field.png']);
  const line = results.find((r) => r.name === 'field.png')!;
  assert.ok(line.status === 'ok' && line.kind === 'field' && line.field.cells >= 30, JSON.stringify(line));
  const completedParts = (await c.ctx.queues.cam.getJobs(['completed'])).filter((j) => j.name === 'field-cells').length;
  return { line, completedParts };
}

test("a cam-worker killed while a field's cells are out as `field-cells` jobs: another worker finishes them and the field, one line per file", async () => {
  const c = await startCluster({ FIELD_CELLS_PER_JOB: '4' });
  try {
    const names = await cellsAndField(c, 6, 21, 5);
    const victim = c.spawnWorker('cam');
    const info = await submit(c, join(c.dir, 'batch-21'), 10);
    // The chunk (6 cells and the field) parks itself once the field's parts are queued: kill the worker then.
    await eventually('the chunk to wait for its field parts', async () => ((await c.ctx.queues.cam.getJobState(`${info.batchId}-c0`)) === 'waiting-children' ? true : undefined));
    victim.kill('SIGKILL');
    await victim.exited;
    const { line, completedParts } = await finishWithNewWorker(c, info.batchId, names);
    assert.equal(completedParts, Math.ceil(line.field.cells / 4), 'every part completed once');
  } finally {
    await c.close();
  }
});

test("a Redis that lost everything while a field's parts were out: `batches repair` re-creates the chunk, which redoes only the parts without a result", async () => {
  // Slow parts (one cell per inference, one write at a time), so that the kill meets some of them still out.
  const c = await startCluster({ FIELD_CELLS_PER_JOB: '4', CAM_INFER_BATCH: '1', CAM_STORE_PARALLELISM: '1' });
  try {
    const names = await cellsAndField(c, 3, 22, 6);
    const victim = c.spawnWorker('cam');
    const info = await submit(c, join(c.dir, 'batch-22'), 10);
    const fields = `batches/${info.batchId}/fields/`;
    const partResults = async () => (await c.ctx.store.list(fields)).filter((o) => /\/\d{5}\.json$/.test(o.key)).map((o) => o.key);
    // Some parts done, the chunk waiting for the rest: then the worker dies and Redis loses everything.
    await eventually('a first part result', async () => ((await partResults()).length >= 1 ? true : undefined), 90_000, 20);
    victim.kill('SIGKILL');
    await victim.exited;
    const admin = createRedis(c.env.REDIS_URL!);
    await admin.flushall();
    await admin.quit();
    const done = await partResults();
    const plan = (await c.ctx.store.list(fields)).find((o) => o.key.endsWith('/plan.json'));
    assert.ok(plan, 'the plan was committed before the parts went out');
    const parts = (JSON.parse((await c.ctx.store.get(plan.key)).toString('utf8')) as { parts: unknown[] }).parts.length;
    assert.ok(done.length < parts, `some parts still out (${done.length} of ${parts} done)`);
    const report = await runCli(c, ['batches', 'repair', info.batchId, '--json']);
    assert.equal(report.code, 0, report.stderr);
    assert.deepEqual(JSON.parse(report.stdout).recreated, [0]);
    const { completedParts } = await finishWithNewWorker(c, info.batchId, names);
    assert.equal(completedParts, parts - done.length, 'only the parts without a result ran again');
  } finally {
    await c.close();
  }
});

test('a Redis restart (AOF) while a batch runs: no job lost, workers reconnect by themselves', async () => {
  const c = await startCluster();
  try {
    await publishUntrained(c.ctx);
    const names = await syntheticFolder(c.dir, 200, 12);
    const info = await submit(c, join(c.dir, 'batch-12'), 20);
    c.spawnWorker('cam');
    // An ingest-only worker has no subscriber connection: its BullMQ connections alone must say that Redis is back.
    c.spawnWorker('ingest');
    await eventually('a first chunk to complete', async () => ((await c.ctx.queues.cam.getCompletedCount()) > 0 ? true : undefined));
    await c.redis.stop();
    await sleep(2000);
    await c.redis.restart();
    await waitForBatch(c.ctx, info.batchId, 120_000);
    assertExactlyOnce(await readResults(c.ctx.store, info.batchId), names);
    // The worker's log says the outage once when it starts and once when it ends — not an error record per retry,
    // and no "[ioredis] Unhandled error event" block outside the JSON lines.
    const logOf = async (role: string) => readFile(join(c.dir, (await readdir(c.dir)).find((f) => f.startsWith(`worker-${role}-`))!), 'utf8');
    const said = (log: string, text: string) => log.split('\n').filter((l) => l.includes(text)).length;
    const outageLines = (log: string) => [said(log, 'Redis stopped answering'), said(log, 'Redis answers again after'), said(log, 'Unhandled error event'), said(log, '"msg":"worker error"')];
    const log = await logOf('cam');
    assert.deepEqual(outageLines(log), [1, 1, 0, 0], log.slice(0, 4000));
    const ingestLog = await eventually('the ingest worker to say Redis is back', async () => ((l) => (said(l, 'Redis answers again after') ? l : undefined))(await logOf('ingest')), 30_000, 200);
    assert.deepEqual(outageLines(ingestLog), [1, 1, 0, 0], ingestLog.slice(0, 4000));
    // Its start line: where it works, without credentials.
    const started = JSON.parse(log.split('\n').find((l) => l.includes('"workers started"'))!) as Record<string, string>;
    assert.deepEqual([started.redis, started.s3, started.bucket, started.queuePrefix], [c.env.REDIS_URL, c.env.S3_ENDPOINT, c.env.S3_BUCKET, 'camflow']);
    assert.ok(!log.includes(c.env.AWS_SECRET_ACCESS_KEY!));
  } finally {
    await c.close();
  }
});

test('an S3 outage of 10 s mid-batch: chunks retry with backoff and the batch completes once S3 is back', async () => {
  const c = await startCluster();
  try {
    await publishUntrained(c.ctx);
    // Many tiny chunks, so that most are still queued when the outage starts (the first one completes).
    const names = await syntheticFolder(c.dir, 600, 13);
    const info = await submit(c, join(c.dir, 'batch-13'), 2);
    c.spawnWorker('cam');
    await eventually('a first chunk to complete', async () => ((await c.ctx.queues.cam.getCompletedCount()) > 0 ? true : undefined));
    // An outage, not a shutdown: a SIGTERMed s3rver keeps serving its open keep-alive connections until idle.
    await c.s3.stop('SIGKILL');
    const left = await c.ctx.queues.cam.getJobCounts('wait', 'active', 'delayed', 'prioritized');
    assert.ok(Object.values(left).some((n) => n > 0), `the outage must meet unfinished chunks: ${JSON.stringify(left)}`);
    await sleep(10_000);
    await c.s3.restart();
    await waitForBatch(c.ctx, info.batchId, 120_000);
    const results = await readResults(c.ctx.store, info.batchId);
    assertExactlyOnce(results, names);
    // Nothing reported done without its objects: every ok result's files exist.
    for (const r of results) if (r.status === 'ok') for (const key of Object.values(r.outputs)) assert.ok(await c.ctx.store.exists(key!), key);
    // The outage was real: some chunk needed more than one attempt.
    const jobs = await c.ctx.queues.cam.getCompleted(0, 1000);
    assert.equal(jobs.length, 300);
    assert.ok(jobs.some((j) => j.attemptsMade > 1), `attempts: ${jobs.map((j) => j.attemptsMade)}`);
  } finally {
    await c.close();
  }
});

test('a trainer killed mid-training resumes from its last epoch checkpoint and publishes nothing half-written', async () => {
  const c = await startCluster({ TRAIN_LOCK_MS: '10000' });
  try {
    await writeSyntheticDataset(join(c.dir, 'train'), { count: 200, seed: 14 });
    await addDataset({ store: c.ctx.store, name: 'cells', folder: join(c.dir, 'train'), size: 64 });
    const first = c.spawnWorker('trainer');
    const job = await enqueueTraining(c.ctx.queues.train, { dataset: 'cells', preset: 'fast', epochs: 4, learningRate: 0.002, maxRestarts: 0, collapsePatience: 10 });
    await eventually('epoch 2 to be checkpointed', async () => {
      const j = await Job.fromId(c.ctx.queues.train, job.id!);
      return (j?.progress as { epoch?: number })?.epoch !== undefined && (j!.progress as { epoch: number }).epoch >= 2 ? true : undefined;
    }, 120_000);
    await sleep(500); // the checkpoint is written right after the progress update
    first.kill('SIGKILL');
    await first.exited;
    assert.equal((await listModels(c.ctx.store)).length, 0, 'no model version exists after the crash');
    c.spawnWorker('trainer');
    const outcome = await waitForJob<{ version: string; resumedFromEpoch?: number; epochs: number }>(c.ctx.queues.train, job.id!, undefined, 180_000);
    assert.ok((outcome.resumedFromEpoch ?? 0) >= 2, `resumed from ${outcome.resumedFromEpoch}`);
    assert.equal(outcome.epochs, 4, 'history holds all epochs');
    const models = await listModels(c.ctx.store);
    assert.deepEqual(models.map((m) => m.version), [outcome.version], 'exactly one version published');
    assert.equal(await c.ctx.store.exists(keys.trainCheckpoint(jobKey(job.id!))), false, 'the checkpoint is cleared once published');
  } finally {
    await c.close();
  }
});

test('`camflow train --cancel`: a running job stops within ten steps and publishes nothing; a waiting one is removed; `train list | show` report both; Ctrl-C ends a wait, not the training', async () => {
  const c = await startCluster();
  try {
    await writeSyntheticDataset(join(c.dir, 'train'), { count: 200, seed: 16 });
    await addDataset({ store: c.ctx.store, name: 'cells', folder: join(c.dir, 'train'), size: 64 });
    const running = await enqueueTraining(c.ctx.queues.train, { dataset: 'cells', preset: 'fast', epochs: 30, maxRestarts: 0, collapsePatience: 99, earlyStopPatience: 99 });
    // Queued before any trainer runs: a waiter is told that nothing serves the queue.
    const said: string[] = [];
    await assert.rejects(waitForJob(c.ctx.queues.train, running.id!, undefined, 3000, (text) => said.push(text)), /not finished after 3000 ms/);
    assert.deepEqual(said, ["no trainer is connected to Redis queue 'train' (prefix camflow): the work waits until one starts: `camflow worker trainer` (or `camflow dev`, or the compose file's trainer service), with the same REDIS_URL and QUEUE_PREFIX"]);
    c.spawnWorker('trainer');
    const waiting = await enqueueTraining(c.ctx.queues.train, { dataset: 'cells', preset: 'fast', epochs: 1 });
    await eventually('the first job to finish an epoch', async () => ((await Job.fromId(c.ctx.queues.train, running.id!))?.progress as { epoch?: number })?.epoch ? true : undefined, 120_000);
    // Waiting behind a running job, with a trainer connected: nothing to say.
    said.length = 0;
    await assert.rejects(waitForJob(c.ctx.queues.train, waiting.id!, undefined, 2500, (text) => said.push(text)), /not finished after 2500 ms/);
    assert.deepEqual(said, []);
    // `train list` shows both, newest first; `show` one; Ctrl-C on a wait ends the wait, not the training.
    const list = await runCli(c, ['train', 'list', '--json']);
    assert.equal(list.code, 0, list.stderr);
    const jobs = (JSON.parse(list.stdout) as { jobs: { jobId: string; state: string; dataset: string; origin: string; progress?: { epoch?: number } }[] }).jobs;
    assert.deepEqual(jobs.map((j) => [j.jobId, j.state, j.dataset, j.origin]), [[waiting.id, 'waiting', 'cells', 'request'], [running.id, 'active', 'cells', 'request']]);
    assert.ok(jobs[1]!.progress!.epoch! >= 1, JSON.stringify(jobs[1]));
    const human = await runCli(c, ['train', 'list']);
    assert.match(human.stdout, new RegExp(`^${running.id}  active  cells@latest  fast  queued \\S+ \\S+  epoch \\d+: loss \\d\\.\\d{4}, val loss \\d\\.\\d{4}, val accuracy \\d\\.\\d{4}$`, 'm'));
    assert.match(human.stdout, new RegExp(`^${waiting.id}  waiting  cells@latest  fast  queued \\S+ \\S+  waiting for a free trainer$`, 'm'));
    const interrupted = await runCli(c, ['train', 'show', running.id!, '--wait'], {}, { when: /Ctrl-C ends the wait, not the work/, signal: 'SIGINT' });
    assert.equal(interrupted.code, 130, interrupted.stderr);
    assert.match(interrupted.stderr, new RegExp(`stopped waiting; training job ${running.id} goes on in the trainer: \`camflow train show ${running.id} --wait\` follows it, \`camflow train --cancel ${running.id}\` stops it`));
    assert.equal(await (await Job.fromId(c.ctx.queues.train, running.id!))!.getState(), 'active', 'Ctrl-C on the wait left the training running');
    assert.match((await runCli(c, ['train', 'show', 'nosuchjob'])).stderr, /^training job not found: nosuchjob \(finished jobs are kept 7 days, failed ones 30\)$/m);
    assert.match((await runCli(c, ['train', 'list', '--dataset', 'cells'])).stderr, /camflow train list does not take --dataset/);
    // Someone follows the waiting job while another removes it: the wait ends saying so, not "job not found".
    const following = runCli(c, ['train', 'show', waiting.id!, '--wait']);
    await sleep(3000);
    const removed = await runCli(c, ['train', '--cancel', waiting.id!, '--json']);
    const followed = await following;
    assert.equal(followed.code, 1, followed.stderr);
    assert.match(followed.stderr, new RegExp(`^training job ${waiting.id} was removed by the operator at \\S+ \\S+ UTC, before it started: nothing was trained$`, 'm'));
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(JSON.parse(removed.stdout), { jobId: waiting.id, action: 'removed', state: 'waiting' });
    const stopping = await runCli(c, ['train', '--cancel', running.id!, '--json']);
    assert.equal(JSON.parse(stopping.stdout).action, 'stopping');
    const failed = await eventually('the running job to stop', async () => {
      const j = await Job.fromId(c.ctx.queues.train, running.id!);
      return j && (await j.isFailed()) ? j : undefined;
    }, 120_000);
    assert.match(failed.failedReason, /^training cancelled by the operator during epoch \d+$/);
    assert.equal(failed.attemptsMade, 1, 'a cancelled run is not retried');
    assert.equal((await listModels(c.ctx.store)).length, 0, 'nothing published');
    const shown = JSON.parse((await runCli(c, ['train', 'show', running.id!, '--json'])).stdout) as { state: string; failedReason: string; finishedAt: string };
    assert.deepEqual([shown.state, shown.failedReason], ['failed', failed.failedReason]);
    assert.ok(shown.finishedAt);
    assert.equal(await Job.fromId(c.ctx.queues.train, waiting.id!), undefined, 'the waiting job is gone');
    // …from the queue, not from `train show`: what it was, and that the operator removed it before it started.
    const gone = await runCli(c, ['train', 'show', waiting.id!]);
    assert.equal(gone.code, 0, gone.stderr);
    assert.match(gone.stdout, new RegExp(`^${waiting.id}  removed  cells@latest  fast  queued \\S+ \\S+  removed by the operator at \\d{4}-\\d\\d-\\d\\d \\S+ UTC, before it started$`, "m"));
    assert.equal((await runCli(c, ['train', 'show', waiting.id!, '--wait'])).code, 0, 'nothing to wait for');
    const twice = await runCli(c, ['train', '--cancel', waiting.id!]);
    assert.deepEqual([twice.code, twice.stdout.trim()], [0, `training job ${waiting.id} was removed already (\`camflow train show ${waiting.id}\` says when)`]);
    const unknown = await runCli(c, ['train', '--cancel', 'nosuchjob']);
    assert.deepEqual([unknown.code, unknown.stderr.trim()], [1, 'training job not found: nosuchjob']);
  } finally {
    await c.close();
  }
});

test('SIGTERM during a chunk: the worker finishes it and exits within the grace period; no job is left locked', async () => {
  const c = await startCluster();
  try {
    await publishUntrained(c.ctx);
    const names = await syntheticFolder(c.dir, 120, 15);
    const w = c.spawnWorker('cam');
    const info = await submit(c, join(c.dir, 'batch-15'), 30);
    await eventually('the worker to hold a chunk', async () => ((await c.ctx.queues.cam.getActiveCount()) > 0 ? true : undefined));
    const t0 = Date.now();
    w.kill('SIGTERM');
    const exit = await w.exited;
    const took = Date.now() - t0;
    assert.equal(exit.code, 0, 'clean exit');
    assert.ok(took < 20_000, `exited after ${took} ms`);
    assert.equal(await c.ctx.queues.cam.getActiveCount(), 0, 'no job left active/locked');
    c.spawnWorker('cam');
    await waitForBatch(c.ctx, info.batchId, 120_000);
    assertExactlyOnce(await readResults(c.ctx.store, info.batchId), names);
  } finally {
    await c.close();
  }
});

test('a poison chunk fails every attempt; its batch still completes and reports those items as failed', async () => {
  const c = await startCluster({ CAM_ATTEMPTS: '3', CAM_BACKOFF_MS: '200' });
  try {
    await publishUntrained(c.ctx);
    const names = await syntheticFolder(c.dir, 30, 16);
    const info = await submit(c, join(c.dir, 'batch-16'), 10);
    // Poison chunk 1: one of its stored originals disappears before any worker runs.
    const manifest = (await c.ctx.store.get(keys.batchManifest(info.batchId))).toString().trim().split('\n').map((l) => JSON.parse(l));
    const victim = manifest[12];
    await c.ctx.store.deleteMany([keys.original(victim.sha256, victim.ext)]);
    c.spawnWorker('cam');
    await waitForBatch(c.ctx, info.batchId, 120_000);
    const results = await readResults(c.ctx.store, info.batchId);
    assertExactlyOnce(results, names, false);
    const failed = results.filter((r) => r.status === 'failed') as Extract<ImageResult, { status: 'failed' }>[];
    assert.equal(failed.length, 10, 'the whole poisoned chunk');
    assert.ok(failed.every((f) => f.reason === 'chunk-failed' && /chunk 1 failed after its retries: .*not found/.test(f.error)), failed[0]?.error);
    assert.equal(results.filter((r) => r.status === 'ok').length, 20);
    const chunk = (await Job.fromId(c.ctx.queues.cam, `${info.batchId}-c1`))!;
    assert.equal(chunk.attemptsMade, 3);
  } finally {
    await c.close();
  }
});

test('a Redis whose eviction policy is not noeviction is reported at start-up', async () => {
  const redis = await startRedis({ evictionPolicy: 'allkeys-lru' });
  const client = createRedis(redis.url);
  try {
    const report = await checkRedis(client);
    assert.equal(report.evictionPolicy, 'allkeys-lru');
    assert.match(report.problems[0]!, /noeviction/);
  } finally {
    await client.quit();
    await redis.stop();
  }
});

test("a worker on such a Redis says so in JSON lines only: BullMQ's own console warning once, not once per connection in plain text", async () => {
  const c = await startCluster();
  try {
    const admin = createRedis(c.env.REDIS_URL!);
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    await admin.quit();
    const w = c.spawnWorker('cam');
    const logFile = async () => join(c.dir, (await readdir(c.dir)).find((f) => f.startsWith('worker-cam-')) ?? 'not yet');
    const log = await eventually('the worker to start', async () => ((l) => (l.includes('"workers started"') ? l : undefined))(await readFile(await logFile(), 'utf8').catch(() => '')), 60_000, 200);
    await sleep(1000);
    w.kill('SIGTERM');
    await w.exited;
    const lines = (await readFile(await logFile(), 'utf8')).split('\n').filter((l) => l.trim());
    assert.deepEqual(lines.filter((l) => !l.startsWith('{')), [], `every line is JSON: ${log.slice(0, 2000)}`);
    assert.equal(lines.filter((l) => l.includes('IMPORTANT! Eviction policy is allkeys-lru')).length, 1);
    assert.ok(lines.some((l) => l.includes('maxmemory-policy is \\"allkeys-lru\\"')), 'camflow\'s own warning too');
  } finally {
    await c.close();
  }
});

test('a malformed variable stops the CLI with one line naming it', () => {
  const cli = fileURLToPath(new URL('../../packages/cli/src/main.ts', import.meta.url));
  const out = spawnSync(process.execPath, ['--import', 'tsx', cli, 'status', 'b1'], { env: { ...process.env, CAM_CHUNK_SIZE: 'lots' }, encoding: 'utf8' });
  assert.equal(out.status, 78);
  const lines = out.stderr.split('\n').filter((l) => l.trim() && !/AWS SDK|node >=22|a\.co|upgrade|trace-warnings|^\s*$|versions published|will require|To continue/i.test(l));
  assert.deepEqual(lines.length, 1, out.stderr);
  assert.match(lines[0]!, /^config: CAM_CHUNK_SIZE: /);
});
