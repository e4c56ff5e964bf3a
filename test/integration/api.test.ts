import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildModel, connectProducer, keys, writeSyntheticDataset, type createRedis } from '@camflow/common';
import { buildApi, datasetLockKey, withDatasetLock } from '@camflow/ingest';
import { startCamWorkers, type CamWorkers } from '@camflow/cam-worker';
import { publishAsIs, publishUntrained, runCli, startCluster, syntheticFolder, eventually, sleep, type Cluster } from '../helpers/cluster.ts';

const TOKEN = 'test-token-0123456789abcdef';
let c: Cluster;
let app: FastifyInstance;
let base: string;
let workers: CamWorkers;
let names: string[];
let apiRedis: ReturnType<typeof createRedis>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = async (r: Response | Promise<Response>) => (await (await r).json()) as any;
const auth = { authorization: `Bearer ${TOKEN}` };

before(async () => {
  c = await startCluster({ API_TOKEN: TOKEN, MAX_UPLOAD_FILE_BYTES: '200000' });
  await publishUntrained(c.ctx);
  names = await syntheticFolder(c.dir, 6, 31);
  const config = { ...c.ctx.config, API_TOKEN: TOKEN, MAX_UPLOAD_FILE_BYTES: 200_000 };
  app = await buildApi({ config, store: c.ctx.store, flow: c.ctx.flow, queues: c.ctx.queues, redis: (apiRedis = await connectProducer(c.env.REDIS_URL!)), log: c.ctx.log });
  apiRedis.on('error', () => undefined);
  base = await app.listen({ port: 0, host: '127.0.0.1' });
  workers = await startCamWorkers({ config: c.ctx.config, store: c.ctx.store, log: c.ctx.log });
});

after(async () => {
  await workers?.close();
  await app?.close();
  await apiRedis?.quit();
  await c?.close();
});

async function form(files: { name: string; bytes: Buffer }[], fields: Record<string, string> = {}): Promise<FormData> {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  for (const f of files) fd.append('files', new Blob([f.bytes]), f.name);
  return fd;
}

test('probes are open; everything else needs the bearer token', async () => {
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
  assert.equal((await fetch(`${base}/readyz`)).status, 200);
  assert.equal((await fetch(`${base}/v1/models`)).status, 401);
  assert.equal((await fetch(`${base}/v1/models`, { headers: { authorization: 'Bearer wrong-token-0123456789ab' } })).status, 401);
  const models = (await (await fetch(`${base}/v1/models`, { headers: auth })).json()) as { production: { version: string } };
  assert.equal(models.production.version, 'm-untrained');
  // An unknown route answers in the API's one error shape, naming the method and path.
  const nowhere = await fetch(`${base}/v1/batchs/b1?x=1`, { headers: auth });
  assert.equal(nowhere.status, 404);
  assert.deepEqual(await nowhere.json(), { error: 'not_found', message: 'no route GET /v1/batchs/b1 (the API is under /v1: see the README\'s HTTP API table)' });
});

test('an uploaded batch is localized; its results stream as JSONL; refused files carry their reason', async () => {
  const files = await Promise.all(names.map(async (n) => ({ name: n, bytes: await readFile(join(c.dir, 'batch-31', n)) })));
  files.push({ name: "notes.png", bytes: Buffer.from("not an image") });
  const res = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form(files, { target: 'all', chunkSize: '4', key: 'upload-1' }) });
  assert.equal(res.status, 202);
  const info = (await res.json()) as { batchId: string; items: number; accepted: number; rejected: number; chunks: number; refused: { name: string; reason: string; error: string }[] };
  assert.deepEqual([info.items, info.accepted, info.rejected, info.chunks], [7, 6, 1, 2]);
  // The refused file is named in the answer, with why: the client learns of it when it sends it.
  assert.deepEqual(info.refused, [{ name: 'notes.png', reason: 'unsupported-format', error: 'not a supported image (PNG, JPEG, TIFF or WebP)' }]);
  const early = await fetch(`${base}/v1/batches/${info.batchId}/results`, { headers: auth });
  assert.ok(early.status === 409 || early.status === 200);
  const seen: number[] = [];
  const final = await eventually('the batch to complete', async () => {
    const s = await json(fetch(`${base}/v1/batches/${info.batchId}`, { headers: auth }));
    seen.push(s.images.done);
    return s.state === 'completed' ? s : undefined;
  }, 60_000, 200);
  // Progress in images, by whole chunks (4 images, then 2; either may finish first): never going back.
  assert.deepEqual(final.images, { total: 6, done: 6 });
  assert.ok(seen.every((d, i) => [0, 2, 4, 6].includes(d) && (i === 0 || d >= seen[i - 1]!)), JSON.stringify(seen));
  const results = await fetch(`${base}/v1/batches/${info.batchId}/results`, { headers: auth });
  assert.equal(results.headers.get('content-type'), 'application/x-ndjson');
  const lines = (await results.text()).trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 7);
  assert.equal(lines.find((l) => l.name === 'notes.png').reason, 'unsupported-format');
  // A stored file, by its path under the batch or by the key a line's `outputs` gives, as it is written there.
  const overlayKey = lines.find((l) => l.status === 'ok').outputs.overlay as string;
  const byKey = await fetch(`${base}/v1/batches/${info.batchId}/files/${overlayKey}`, { headers: auth });
  assert.deepEqual([byKey.status, byKey.headers.get('content-type')], [200, 'image/png']);
  const byPath = await fetch(`${base}/v1/batches/${info.batchId}/files/${overlayKey.split('/').pop()}`, { headers: auth });
  assert.ok(Buffer.from(await byPath.arrayBuffer()).equals(Buffer.from(await byKey.arrayBuffer())));
  assert.deepEqual(await json(fetch(`${base}/v1/batches/${info.batchId}/files/nope.png`, { headers: auth })), { error: 'not_found', message: `result file not found: nope.png in batch ${info.batchId}` });
  assert.deepEqual(await json(fetch(`${base}/v1/batches/nosuchbatch/files/x.png`, { headers: auth })), { error: 'not_found', message: 'batch not found: nosuchbatch' });
  // The same results as CSV (Accept) and GeoJSON (?format=), and through the CLI to a file.
  const csv = await fetch(`${base}/v1/batches/${info.batchId}/results`, { headers: { ...auth, accept: 'text/csv' } });
  assert.match(csv.headers.get('content-type')!, /^text\/csv/);
  const rows = (await csv.text()).trimEnd().split('\r\n');
  assert.equal(rows.length, 8, 'a header and one row per line');
  assert.deepEqual(rows.slice(1).map((r) => r.split(',')[0]), lines.map((l) => l.imageId), 'same order as the JSONL');
  const geo = await fetch(`${base}/v1/batches/${info.batchId}/results?format=geojson`, { headers: { ...auth, accept: 'text/csv' } });
  assert.match(geo.headers.get('content-type')!, /^application\/geo\+json/);
  const fc = (await geo.json()) as { features: { properties: { image: string } }[] };
  assert.ok(fc.features.length >= 6 && fc.features.every((f) => names.includes(f.properties.image)), 'boxes and peaks of the six cells, none for the refused file');
  assert.equal((await fetch(`${base}/v1/batches/${info.batchId}/results?format=xml`, { headers: auth })).status, 400);
  // `status` counts the images the workers took and, beside them, the entries refused at submission: 6 + 1 = the
  // summary's 7, never two totals that disagree.
  const statusLine = await runCli(c, ['status', info.batchId]);
  assert.match(statusLine.stdout, new RegExp(`^${info.batchId}: completed, images 6/6 \\+ 1 refused at submission, chunks 2/2\\n7 files: 6 localized`));
  const file = join(c.dir, 'export.csv');
  const cli = await runCli(c, ['results', info.batchId, '--format', 'csv', '--out', file]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.equal(await readFile(file, 'utf8'), `${rows.join('\r\n')}\r\n`);
  // --json keeps stdout JSON: what was written, where; CSV to stdout is refused under --json.
  const written = await runCli(c, ['results', info.batchId, '--format', 'csv', '--out', file, '--json']);
  assert.equal(written.code, 0, written.stderr);
  assert.deepEqual(JSON.parse(written.stdout), { batchId: info.batchId, out: file, format: 'csv', bytes: Buffer.byteLength(await readFile(file, 'utf8')) });
  const csvOnStdout = await runCli(c, ['results', info.batchId, '--format', 'csv', '--json']);
  assert.deepEqual([csvOnStdout.code, csvOnStdout.stdout], [2, '']);
  const help = await runCli(c, ['--json']);
  assert.ok(JSON.parse(help.stdout).commands.submit, 'help under --json is JSON');
  // The batch list, newest first, over HTTP and from the CLI.
  const listed = (await json(fetch(`${base}/v1/batches?limit=5`, { headers: auth }))).batches as { batchId: string; state: string; images: { done: number } }[];
  const mine = listed.find((b) => b.batchId === info.batchId)!;
  assert.deepEqual([mine.state, mine.images.done], ['completed', 6]);
  const cliList = await runCli(c, ['batches', 'list', '--json']);
  assert.equal(cliList.code, 0, cliList.stderr);
  assert.ok(JSON.parse(cliList.stdout).batches.some((b: { batchId: string; state: string }) => b.batchId === info.batchId && b.state === 'completed'));
  // Prometheus metrics (open, like the probes) and the queues' dashboard (behind the token).
  const prom = await (await fetch(`${base}/metrics`)).text();
  assert.match(prom, /camflow_production_model\{version="m-untrained",role="api"\} 1/);
  // Node's process metrics under the names stock dashboards use (not camflow_process_process_…).
  assert.match(prom, /^process_cpu_seconds_total\{role="api"\} \d/m);
  assert.match(prom, /^nodejs_eventloop_lag_seconds\{role="api"\} /m);
  assert.doesNotMatch(prom, /camflow_process_/);
  assert.equal((await fetch(`${base}/admin/queues`, { redirect: 'manual' })).status, 303, 'a browser without the cookie goes to the login form');
  assert.equal((await fetch(`${base}/admin/queues/api/queues`)).status, 401);
  const board = await fetch(`${base}/admin/queues`, { headers: auth });
  assert.equal(board.status, 200);
  const boardHtml = await board.text();
  assert.match(boardHtml, /camflow queues/);
  // A lab's network may have no way out: the dashboard names no resource off this server (bull-board links Google Fonts).
  assert.deepEqual(boardHtml.match(/(?:href|src)="https?:[^"]*"/g) ?? [], []);
  const encoded = await (await fetch(`${base}/admin/%71ueues`, { headers: auth })).text();
  assert.match(encoded, /camflow queues/);
  assert.deepEqual(encoded.match(/(?:href|src)="https?:[^"]*"/g) ?? [], [], 'the same page under an encoded path');
  const queues = (await json(fetch(`${base}/admin/queues/api/queues`, { headers: auth }))) as { queues: { name: string }[] };
  assert.ok(['cam', 'batch', 'train'].every((n) => queues.queues.some((q) => q.name === n)), JSON.stringify(queues.queues.map((q) => q.name)));
  // An archive-sized batch page: counts everything, shows the first 1,000 cells (results.jsonl read a line at a time).
  const cellLine = lines.find((l) => l.status === 'ok')!;
  const bigId = 'b-viewer-cap';
  await c.ctx.store.putJson(`batches/${bigId}/batch.json`, { ...(await c.ctx.store.getJson(`batches/${info.batchId}/batch.json`) as object), batchId: bigId });
  const bigLines = Array.from({ length: 1005 }, (_, i) => JSON.stringify({ ...cellLine, batchId: bigId, imageId: `i${String(i).padStart(7, '0')}`, name: `cell-${i}.png`, outputs: {} }));
  bigLines.push(JSON.stringify({ batchId: bigId, imageId: 'i9999999', name: 'bad.png', status: 'failed', reason: 'decode-failed', error: 'truncated' }));
  await c.ctx.store.put(`results/${bigId}/results.jsonl`, `${bigLines.join('\n')}\n`);
  const bigPage = await (await fetch(`${base}/viewer/batches/${bigId}`, { headers: auth })).text();
  assert.match(bigPage, /1005 cells, 0 fields, <span class="bad">1 failed<\/span>/);
  assert.match(bigPage, /The gallery shows the first 1000 of 1005 cells/);
  assert.equal(bigPage.split('<figure class="cell"').length - 1, 1000);
  const jsonlOut = await runCli(c, ['results', info.batchId]);
  assert.equal(jsonlOut.code, 0, jsonlOut.stderr);
  assert.deepEqual(jsonlOut.stdout.trim().split('\n').map((l) => JSON.parse(l)), lines, 'camflow results prints the same JSONL');
  const missing = await runCli(c, ['results', 'nosuchbatch']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /batch not found: nosuchbatch/);
  // A CLI that explains itself: unknown things are named, with what to do.
  const noBatch = await runCli(c, ['status', 'nosuchbatch']);
  assert.deepEqual([noBatch.code, noBatch.stderr.trim()], [1, 'batch not found: nosuchbatch']);
  const noPage = await runCli(c, ['open', 'nosuchbatch']);
  assert.deepEqual([noPage.code, noPage.stdout, noPage.stderr.trim()], [1, '', 'batch not found: nosuchbatch']);
  const page = await runCli(c, ['open', info.batchId, '--json']);
  assert.match(JSON.parse(page.stdout).url, new RegExp(`/viewer/batches/${info.batchId}$`));
  const noDataset = await runCli(c, ['train', '--dataset', 'nosuchdataset']);
  assert.equal(noDataset.code, 1);
  assert.match(noDataset.stderr, /dataset not found: nosuchdataset \(add one with `camflow dataset add nosuchdataset FOLDER`\)/);
  await writeSyntheticDataset(join(c.dir, 'tiny-set'), { count: 8, seed: 3 });
  assert.equal((await runCli(c, ['dataset', 'add', 'tiny', join(c.dir, 'tiny-set')])).code, 0);
  // Another folder under the same name: the new latest, said, the old one kept; `dataset list` shows both.
  await writeSyntheticDataset(join(c.dir, 'tiny-set-2'), { count: 6, seed: 4 });
  const second = await runCli(c, ['dataset', 'add', 'tiny', join(c.dir, 'tiny-set-2'), '--json']);
  assert.equal(second.code, 0, second.stderr);
  const replacing = JSON.parse(second.stdout) as { version: string; replaced: { version: string; items: number } };
  assert.equal(replacing.replaced.items, 8);
  const list = JSON.parse((await runCli(c, ['dataset', 'list', '--json'])).stdout) as { datasets: { name: string; latest: string; items: number; versions: string[] }[] };
  const tiny = list.datasets.find((d) => d.name === 'tiny')!;
  assert.deepEqual([tiny.latest, tiny.items, [...tiny.versions].sort()], [replacing.version, 6, [replacing.version, replacing.replaced.version].sort()]);
  // The dataset is there, the version is not: say which one is.
  const noVersion = await runCli(c, ['train', '--dataset', 'tiny', '--version', 'deadbeef']);
  assert.equal(noVersion.code, 1);
  assert.match(noVersion.stderr, /dataset version not found: tiny@deadbeef \(tiny's latest is tiny@\w+\)/);
  const noFolder = await runCli(c, ['dataset', 'add', 'tiny', join(c.dir, 'no-such-folder')]);
  assert.equal(noFolder.code, 2);
  assert.match(noFolder.stderr, /for folder but received ".*no-such-folder \(no such folder\)"/);
  const badCron = await runCli(c, ['schedule', '--dataset', 'tiny', '--cron', 'a']);
  assert.equal(badCron.code, 2);
  assert.match(badCron.stderr, /Expected five cron fields .* for --cron but received "a"/);
  // Four fields: BullMQ would read them as a monthly run of a "nightly" job.
  const fourFields = await runCli(c, ['schedule', '--dataset', 'tiny', '--cron', '0 2 * *']);
  assert.deepEqual([fourFields.code, /for --cron but received "0 2 \* \*"/.test(fourFields.stderr)], [2, true], fourFields.stderr);
  // A field out of its range is a bad pattern too, not an internal error.
  const outOfRange = await runCli(c, ['schedule', '--dataset', 'tiny', '--cron', '61 2 * * *']);
  assert.equal(outOfRange.code, 2, outOfRange.stderr);
  assert.match(outOfRange.stderr, /got value 61 expected range 0-59\) for --cron but received "61 2 \* \* \*"/);
  // The one schedule can be seen and taken away.
  assert.equal((await runCli(c, ['schedule', '--dataset', 'tiny', '--cron', '0 2 * * *', '--tz', 'Europe/Paris'])).code, 0);
  const shown = JSON.parse((await runCli(c, ['schedule', 'show', '--json'])).stdout) as { schedule: { pattern: string; tz: string; data: { dataset: string } } };
  assert.deepEqual([shown.schedule.pattern, shown.schedule.tz, shown.schedule.data.dataset], ['0 2 * * *', 'Europe/Paris', 'tiny']);
  // Its next run is listed as due then (not as waiting for a trainer); it goes with the schedule, not alone.
  const trainJobs = JSON.parse((await runCli(c, ['train', 'list', '--json'])).stdout) as { jobs: { jobId: string; state: string; origin: string; dueAt?: string }[] };
  const next = trainJobs.jobs.find((j) => j.state === 'delayed' && j.origin === 'schedule');
  assert.ok(next?.dueAt && Date.parse(next.dueAt) > Date.now(), JSON.stringify(trainJobs));
  assert.match((await runCli(c, ['train', 'list'])).stdout, new RegExp(`^${next.jobId.replace(/[:]/g, '.')}  delayed  tiny@latest  fast  queued \\S+ \\S+ \\(schedule\\)  scheduled for ${next.dueAt.slice(0, 19).replace('T', ' ')} UTC$`, 'm'));
  const cancelNext = await runCli(c, ['train', '--cancel', next.jobId]);
  assert.equal(cancelNext.code, 2, cancelNext.stderr);
  assert.match(cancelNext.stderr, /the retraining schedule's next run goes with the schedule: `camflow schedule remove`/);
  // The schedule takes `train`'s options, checked the same way, each error naming the flag that was typed.
  const noPromote = await runCli(c, ['schedule', '--dataset', 'tiny', '--cron', '0 3 * * *', '--no-promote', '--val-fraction', '0.2', '--json']);
  assert.equal(noPromote.code, 0, noPromote.stderr);
  const kept = JSON.parse((await runCli(c, ['schedule', 'show', '--json'])).stdout) as { schedule: { pattern: string; data: { promote: boolean; validationFraction: number; skipIfUnchanged: boolean } } };
  assert.deepEqual([kept.schedule.pattern, kept.schedule.data.promote, kept.schedule.data.validationFraction, kept.schedule.data.skipIfUnchanged], ['0 3 * * *', false, 0.2, true]);
  for (const [args, flag] of [[['train', '--dataset', 'tiny', '--val-fraction', '2'], '--val-fraction'], [['schedule', '--dataset', 'tiny', '--cron', '0 2 * * *', '--batch-size', '0'], '--batch-size'], [['train', '--dataset', 'tiny', '--split', 'patient'], '--split']] as const) {
    const bad = await runCli(c, [...args]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, new RegExp(`^Expected .+ for ${flag} but received`, 'm'), bad.stderr);
    assert.doesNotMatch(bad.stderr, /train job\./);
  }
  assert.deepEqual(JSON.parse((await runCli(c, ['schedule', 'remove', '--json'])).stdout), { removed: true });
  assert.deepEqual(JSON.parse((await runCli(c, ['schedule', 'show', '--json'])).stdout), { schedule: null });
  // A bare `camflow worker` would start every role, the trainer included: the role is required.
  const bareWorker = await runCli(c, ['worker']);
  assert.deepEqual([bareWorker.code, /usage: camflow worker cam\|/.test(bareWorker.stderr)], [2, true], bareWorker.stderr);
  // An operator's promotion is done (a rollback may want a weaker model) but says what it replaced and why to look twice.
  const weaker = buildModel('fast', 2, 5);
  await publishAsIs(c.ctx.store, weaker, 'fast', 'm-weaker', undefined, { valAccuracy: 0.41, classNames: ['Infected', 'Uninfected'] });
  weaker.dispose();
  const promoted = await runCli(c, ['models', 'promote', 'm-weaker']);
  assert.equal(promoted.code, 0, promoted.stderr);
  assert.match(promoted.stdout, /^production → m-weaker \(was m-untrained\)\nwarning: m-weaker's validation accuracy 0\.4100 is below that of m-untrained, which it replaces \(0\.5000; same dataset version, each on its own validation images\)\nwarning: m-weaker names the classes Infected, Uninfected; m-untrained named Parasitized, Uninfected/);
  const back = await json(fetch(`${base}/v1/models/m-untrained/promote`, { method: 'POST', headers: auth }));
  assert.deepEqual([back.version, back.previous.version, back.warnings.length], ['m-untrained', 'm-weaker', 1], JSON.stringify(back));
  assert.match(back.warnings[0], /m-untrained names the classes Parasitized, Uninfected; m-weaker named Infected, Uninfected/);
  const same = JSON.parse((await runCli(c, ['models', 'promote', 'm-untrained', '--json'])).stdout);
  assert.deepEqual([same.version, same.previous.version, same.warnings], ['m-untrained', 'm-untrained', []]);
  assert.ok(back.promotedAt && same.promotedAt === back.promotedAt, 'promoting production again changes nothing, its time included');
  // An unreadable channel is what a promotion repairs: replaced, and said.
  await c.ctx.store.putJson(keys.productionChannel(), { version: 'm-untrained' });
  const repaired = JSON.parse((await runCli(c, ['models', 'promote', 'm-untrained', '--json'])).stdout);
  assert.deepEqual([repaired.version, repaired.previous, repaired.warnings], ['m-untrained', null, ['the production channel was unreadable (not a valid channel document): replaced']]);
  const lst = await runCli(c, ['models', 'lst']);
  assert.equal(lst.code, 2);
  assert.match(lst.stderr, /unknown models subcommand "lst": camflow models \[list\] \| camflow models promote VERSION/);
  // `models list`, as the help writes it, is `models`.
  const modelList = await runCli(c, ['models', 'list', '--json']);
  assert.equal(modelList.code, 0, modelList.stderr);
  assert.equal(JSON.parse(modelList.stdout).production, 'm-untrained');
  const typo = await runCli(c, ['sumbit', 'x']);
  assert.deepEqual([typo.code, typo.stderr.trim()], [2, 'unknown command "sumbit"; did you mean "submit"? (camflow --help lists the commands)']);
  const badFormat = await runCli(c, ['results', info.batchId, '--format', 'xls']);
  assert.equal(badFormat.code, 2);
  assert.match(badFormat.stderr, /jsonl, csv, geojson for --format but received "xls"/);
  // The same idempotency key with the same files and fields returns the same batch, 200 not 202.
  const again = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form(files, { target: 'all', chunkSize: '4', key: 'upload-1' }) });
  assert.equal(again.status, 200);
  assert.equal((await json(again)).batchId, info.batchId);
  // The same key with other files is another request: 409, naming the key's batch.
  const other = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form(files.slice(0, 1), { key: 'upload-1' }) });
  assert.equal(other.status, 409);
  assert.equal((await json(other)).batchId, info.batchId);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /camflow_queue_jobs\{queue="cam",state="completed",role="api"\} 2/);
  // Who serves each queue: the in-process cam-workers (chunks and finalizer); no trainer, which a dashboard alerts on.
  assert.match(metrics, /camflow_queue_workers\{queue="cam",role="api"\} 1\n/);
  assert.match(metrics, /camflow_queue_workers\{queue="batch",role="api"\} 1\n/);
  assert.match(metrics, /camflow_queue_workers\{queue="train",role="api"\} 0\n/);
  // The CLI says the same at submission: the refused file and why, under the counts.
  const bad = join(c.dir, 'with-bad');
  await mkdir(bad, { recursive: true });
  await writeFile(join(bad, 'cell.png'), files[0]!.bytes);
  await writeFile(join(bad, 'notes.txt'), 'not an image');
  const submitted = await runCli(c, ['submit', bad]);
  assert.equal(submitted.code, 0, submitted.stderr);
  assert.match(submitted.stdout, /: 1 image, 1 refused, 1 chunk, model m-untrained\n {2}refused notes\.txt: unsupported-format: not a supported image \(PNG, JPEG, TIFF or WebP\)\n$/);
});

test('`dataset remove`: refused while the production model, the schedule or a training job needs it; a latest version removed hands "latest" to the newest left; the whole dataset goes with every version', async () => {
  await writeSyntheticDataset(join(c.dir, 'rm-a'), { count: 6, seed: 11 });
  await writeSyntheticDataset(join(c.dir, 'rm-b'), { count: 6, seed: 12 });
  const a = JSON.parse((await runCli(c, ['dataset', 'add', 'rm', join(c.dir, 'rm-a'), '--json'])).stdout).version as string;
  const b = JSON.parse((await runCli(c, ['dataset', 'add', 'rm', join(c.dir, 'rm-b'), '--json'])).stdout).version as string;
  // The production model's own validation images are rm@a's: removing it would break `camflow eval rm`.
  const model = buildModel('fast', 2, 7);
  await publishAsIs(c.ctx.store, model, 'fast', 'm-on-rm', { name: 'rm', version: a, trainItems: 4, validationItems: 2, splitBy: 'item', validation: [0, 1] });
  model.dispose();
  assert.equal((await runCli(c, ['models', 'promote', 'm-on-rm'])).code, 0);
  const inProduction = await runCli(c, ['dataset', 'remove', `rm@${a}`]);
  assert.deepEqual([inProduction.code, inProduction.stderr.trim()], [1, `rm@${a} is not removed: the production model m-on-rm was trained on rm@${a}, and \`camflow eval rm\` scores it on that version's validation images; promote another model first (\`camflow models promote VERSION\`)`]);
  const conflict = await fetch(`${base}/v1/datasets/rm?version=${a}`, { method: 'DELETE', headers: auth });
  assert.equal(conflict.status, 409);
  assert.deepEqual(await conflict.json(), { error: 'conflict', message: inProduction.stderr.trim() });
  assert.equal((await runCli(c, ['models', 'promote', 'm-untrained'])).code, 0);
  // The schedule trains the dataset: the whole of it is refused (one version may go: the schedule takes the latest).
  assert.equal((await runCli(c, ['schedule', '--dataset', 'rm', '--cron', '0 2 * * *'])).code, 0);
  const scheduled = await runCli(c, ['dataset', 'remove', 'rm']);
  assert.deepEqual([scheduled.code, scheduled.stderr.trim()], [1, 'dataset rm is not removed: the retraining schedule trains rm (0 2 * * *); `camflow schedule remove` first']);
  assert.equal((await runCli(c, ['schedule', 'remove'])).code, 0);
  // A training job queued on its latest (no trainer runs here, so it waits).
  const queued = JSON.parse((await runCli(c, ['train', '--dataset', 'rm', '--json'])).stdout).jobId as string;
  const busy = await runCli(c, ['dataset', 'remove', `rm@${b}`]);
  assert.deepEqual([busy.code, busy.stderr.trim()], [1, `rm@${b} is not removed: training job ${queued} (waiting) is on it; wait for it, or \`camflow train --cancel JOB_ID\``]);
  assert.equal((await runCli(c, ['train', '--cancel', queued])).code, 0);
  // Nothing needs it now: the latest version goes, and "latest" is the newest version left.
  const objects = (await c.ctx.store.list(`datasets/rm/${b}/`)).length;
  assert.ok(objects >= 2, 'a manifest and its shards');
  const removed = await runCli(c, ['dataset', 'remove', `rm@${b}`]);
  assert.deepEqual([removed.code, removed.stdout], [0, `removed rm@${b}, ${objects} objects; the latest rm is rm@${a}; the images' originals are kept (batches may share them)\n`], removed.stderr);
  assert.deepEqual(await c.ctx.store.list(`datasets/rm/${b}/`), []);
  const listed = JSON.parse((await runCli(c, ['dataset', 'list', '--json'])).stdout).datasets.find((d: { name: string }) => d.name === 'rm');
  assert.deepEqual([listed.latest, listed.versions], [a, [a]]);
  // Its last version, while the schedule trains it: refused as the whole dataset is (every run would fail on it).
  assert.equal((await runCli(c, ['schedule', '--dataset', 'rm', '--cron', '0 2 * * *'])).code, 0);
  // A model promoted by hand while a schedule promotes: said that the schedule keeps it (a rollback stays).
  const pinned = await runCli(c, ['models', 'promote', 'm-untrained']);
  assert.match(pinned.stdout, /^production → m-untrained \(already production\); the retraining schedule \(0 2 \* \* \*, UTC, dataset rm\) keeps it: its runs publish without promoting while production is a model promoted by hand/);
  assert.match((await runCli(c, ['models'])).stdout, /^\* m-untrained \(promoted by hand\) /m);
  const typo = await runCli(c, ['models', 'promote', 'm-untrainde']);
  assert.deepEqual([typo.code, typo.stderr.trim()], [1, 'model version not found: m-untrainde (`camflow models` or GET /v1/models lists them; did you mean m-untrained?)']);
  const typoHttp = await fetch(`${base}/v1/models/m-untrainde/promote`, { method: 'POST', headers: auth });
  assert.deepEqual([typoHttp.status, (await json(typoHttp)).message], [404, typo.stderr.trim()]);
  const lastOne = await runCli(c, ['dataset', 'remove', `rm@${a}`]);
  assert.deepEqual([lastOne.code, lastOne.stderr.trim()], [1, `rm@${a} (rm's last version) is not removed: the retraining schedule trains rm (0 2 * * *); \`camflow schedule remove\` first`]);
  assert.equal((await runCli(c, ['schedule', 'remove'])).code, 0);
  // The whole dataset, over HTTP: every version, and the pointer; the model trained on it is named (eval can no
  // longer tell its training images).
  const whole = await fetch(`${base}/v1/datasets/rm`, { method: 'DELETE', headers: auth });
  assert.equal(whole.status, 200);
  const body = (await whole.json()) as { dataset: string; removed: string[]; latest: string | null; models?: string[] };
  assert.deepEqual([body.dataset, body.removed, body.latest, body.models], ['rm', [a], null, ['m-on-rm']]);
  // Promoting a model whose snapshot is gone serves it, and says what is lost.
  const orphan = await runCli(c, ['models', 'promote', 'm-on-rm']);
  assert.match(orphan.stdout, new RegExp(`\\nwarning: m-on-rm's training snapshot rm@${a} was removed: which images trained it can no longer be told`));
  assert.equal((await runCli(c, ['models', 'promote', 'm-untrained'])).code, 0);
  assert.deepEqual(await c.ctx.store.list('datasets/rm/'), []);
  assert.match((await runCli(c, ['train', '--dataset', 'rm'])).stderr, /dataset not found: rm/);
  // A pointer to a version no longer there (a removal that raced an add) hides that dataset only, and a removal of
  // the dataset clears it.
  await c.ctx.store.putJson('datasets/ghost/latest.json', { version: 'd000000000000' });
  const withGhost = await runCli(c, ['dataset', 'list', '--json']);
  assert.equal(withGhost.code, 0, withGhost.stderr);
  assert.deepEqual(JSON.parse(withGhost.stdout).datasets.map((d: { name: string }) => d.name).includes('ghost'), false);
  const exorcised = JSON.parse((await runCli(c, ['dataset', 'remove', 'ghost', '--json'])).stdout);
  assert.deepEqual([exorcised.removed, exorcised.latest], [[], null]);
  assert.deepEqual(await c.ctx.store.list('datasets/ghost/'), []);
  // Unknown names and versions are named; a malformed NAME@VERSION is a usage error.
  const none = await runCli(c, ['dataset', 'remove', 'nosuch']);
  assert.deepEqual([none.code, none.stderr.trim()], [1, 'dataset not found: nosuch (`camflow dataset list` lists them)']);
  const noVersion = await runCli(c, ['dataset', 'remove', 'tiny@dzzz']);
  assert.match(noVersion.stderr, /^dataset version not found: tiny@dzzz \(tiny has d[0-9a-f]{12}, d[0-9a-f]{12}\)$/m);
  assert.equal((await runCli(c, ['dataset', 'remove', 'tiny@'])).code, 2);
  assert.equal((await fetch(`${base}/v1/datasets/tiny?version=..`, { method: 'DELETE', headers: auth })).status, 400);
});

test('a labelled upload becomes a dataset over HTTP, the snapshot `camflow dataset add` makes of the same folder; mistakes are named without a server path', async () => {
  const folder = join(c.dir, 'up-set');
  await writeSyntheticDataset(folder, { count: 6, seed: 14 });
  const labelledFiles: { name: string; bytes: Buffer }[] = [];
  for (const cls of ['Parasitized', 'Uninfected']) {
    for (const f of (await readdir(join(folder, cls))).sort()) labelledFiles.push({ name: `${cls}/${f}`, bytes: await readFile(join(folder, cls, f)) });
  }
  const post = async (name: string, files: { name: string; bytes: Buffer }[], fields: Record<string, string> = {}) => fetch(`${base}/v1/datasets/${name}`, { method: 'POST', headers: auth, body: await form(files, fields) });
  const first = await post('upcells', [...labelledFiles, { name: 'loose.png', bytes: labelledFiles[0]!.bytes }]);
  assert.equal(first.status, 201, await first.clone().text());
  const made = await json(first);
  const cli = JSON.parse((await runCli(c, ['dataset', 'add', 'clicells', folder, '--json'])).stdout);
  assert.deepEqual({ ...made, dataset: 'x', rejected: [] }, { ...cli, dataset: 'x', rejected: [] }, 'the same snapshot as the folder makes (its boxes.json and our loose.png aside), in the CLI\'s shape');
  assert.deepEqual(made.rejected, [{ name: 'loose.png', error: 'not inside a class folder (<folder>/<class>/<image>)' }]);
  const again = await post('upcells', labelledFiles);
  assert.deepEqual([again.status, (await json(again)).created], [200, false]);
  // Mistakes: an option out of range, an unknown field, one class, a JSON body — each named, no temporary path shown.
  const tiny = await json(post('upcells', labelledFiles, { size: '0' }));
  assert.deepEqual([tiny.field, tiny.message], ['fields.size', 'Expected number to be >=16 for fields.size but received 0']);
  assert.equal((await json(post('upcells', labelledFiles, { sise: '64' }))).field, 'fields');
  assert.equal((await json(post('upcells', labelledFiles, { groupPattern: '((' }))).field, 'fields.groupPattern');
  const oneClass = await json(post('upcells', labelledFiles.filter((f) => f.name.startsWith('Parasitized/'))));
  assert.equal(oneClass.field, 'files');
  assert.match(oneClass.message, /at least two class folders .* but received "one class folder \(Parasitized\) in the upload"$/);
  assert.doesNotMatch(JSON.stringify(oneClass), /camflow-dataset-|\/tmp\//);
  // A part's own name climbing out (with a filename that cleans to nothing) stays a name inside the upload: nothing is
  // written outside the request's folder. A name that is a file and a folder at once is the client's mistake (400).
  const outside = join(c.dir, `escape-${process.pid}`);
  const climbing = await form(labelledFiles);
  climbing.append(`../../../../../../..${outside}/pwned.png`, new Blob([labelledFiles[0]!.bytes]), '..');
  const climbed = await fetch(`${base}/v1/datasets/upclimb`, { method: 'POST', headers: auth, body: climbing });
  assert.ok(climbed.status < 500, await climbed.clone().text());
  await assert.rejects(readdir(outside), 'nothing written outside the upload');
  const clash = await fetch(`${base}/v1/datasets/upcells`, { method: 'POST', headers: auth, body: await form([...labelledFiles, { name: `${labelledFiles[0]!.name}/inner.png`, bytes: labelledFiles[0]!.bytes }]) });
  assert.deepEqual([clash.status, (await json(clash)).field], [400, 'files']);
  const asJson = await fetch(`${base}/v1/datasets/upcells`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' });
  assert.equal(asJson.status, 415);
  // The CLI checks the same options the same way.
  const cliTiny = await runCli(c, ['dataset', 'add', 'clicells', folder, '--size', '0']);
  assert.deepEqual([cliTiny.code, cliTiny.stderr.trim()], [2, 'Expected number to be >=16 for --size but received 0']);
});

test('one add or remove of a dataset at a time: while one runs, another `dataset add`, `dataset remove` or DELETE of the name is refused at once, naming the holder; a holder killed outright frees the name when its lease runs out', async () => {
  await writeSyntheticDataset(join(c.dir, 'lk'), { count: 6, seed: 13 });
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let started!: () => void;
  const holding = new Promise<void>((resolve) => (started = resolve));
  const holder = withDatasetLock({ redis: c.ctx.redis, prefix: 'camflow', name: 'lk', command: 'camflow dataset add' }, async () => {
    started();
    await held;
  });
  await holding;
  const refusal = new RegExp(`^dataset lk is being changed by \`camflow dataset add\` \\(pid ${process.pid} on \\S+, since \\S+\\): one add or remove of a dataset at a time; run this again when it has finished$`);
  const add = await runCli(c, ['dataset', 'add', 'lk', join(c.dir, 'lk')]);
  assert.equal(add.code, 1);
  assert.match(add.stderr.trim(), refusal);
  assert.match((await runCli(c, ['dataset', 'remove', 'lk'])).stderr.trim(), refusal);
  const del = await fetch(`${base}/v1/datasets/lk`, { method: 'DELETE', headers: auth });
  assert.equal(del.status, 409);
  assert.match(((await del.json()) as { message: string }).message, refusal);
  assert.deepEqual(await c.ctx.store.list('datasets/lk/'), [], 'the refused add wrote nothing');
  release();
  await holder;
  assert.equal(await c.ctx.redis.exists(datasetLockKey('camflow', 'lk')), 0, 'released when done');
  // (LOG_LEVEL unset, as a user runs it: a one-shot command's stderr holds no info-level JSON log line.)
  const added = await runCli(c, ['dataset', 'add', 'lk', join(c.dir, 'lk'), '--json'], { LOG_LEVEL: '' });
  assert.equal(added.code, 0, added.stderr);
  assert.doesNotMatch(added.stderr, /"level":30/, added.stderr);
  // A holder killed outright (no release, no renewal): its lease runs out and the name is free again.
  await c.ctx.redis.set(datasetLockKey('camflow', 'lk'), JSON.stringify({ token: 't', command: 'camflow dataset add', pid: 1, host: 'gone', since: new Date().toISOString() }), 'PX', 2000);
  assert.equal((await fetch(`${base}/v1/datasets/lk`, { method: 'DELETE', headers: auth })).status, 409);
  await sleep(2100);
  const removed = await runCli(c, ['dataset', 'remove', 'lk']);
  assert.equal(removed.code, 0, removed.stderr);
});

test('a dataset lease is renewed while its command runs, and a command whose lease was lost stops before its next write', async () => {
  const lease = { redis: c.ctx.redis, prefix: 'camflow', name: 'renewed', command: 'camflow dataset add', leaseMs: 300 };
  // Held three leases long: renewed, so another command is still refused at twice the lease.
  await withDatasetLock(lease, async () => {
    await sleep(600);
    await assert.rejects(withDatasetLock({ ...lease, command: 'camflow dataset remove' }, async () => undefined), /is being changed by `camflow dataset add`/);
    await sleep(300);
  });
  assert.equal(await c.ctx.redis.exists(datasetLockKey('camflow', 'renewed')), 0);
  // Lost (a Redis that dropped its data, then another command took the name): the fence throws, naming the holder.
  await assert.rejects(
    withDatasetLock(lease, async (held) => {
      await held();
      await c.ctx.redis.set(datasetLockKey('camflow', 'renewed'), JSON.stringify({ token: 'x', command: 'camflow dataset remove', pid: 7, host: 'lab', since: 'then' }));
      await held();
      assert.fail('the fence let a write through');
    }),
    /dataset renewed: this command's lease ran out before it finished \(now held by `camflow dataset remove` \(pid 7 on lab, since then\)\)/,
  );
  assert.equal(await c.ctx.redis.exists(datasetLockKey('camflow', 'renewed')), 1, "another command's lease is not released by this one");
  await c.ctx.redis.del(datasetLockKey('camflow', 'renewed'));
});

test('an oversize upload is refused with 413 and the limit named; bad fields with 400 and the field named', async () => {
  const big = { name: "big.png", bytes: Buffer.alloc(300_000) };
  const res = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([big]) });
  assert.equal(res.status, 413);
  const body = await json(res);
  assert.equal(body.error, 'payload_too_large');
  assert.match(body.message, /200000 bytes per file/);
  const small = { name: 'a.png', bytes: await readFile(join(c.dir, 'batch-31', names[0]!)) };
  const bad = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { chunkSize: 'lots' }) });
  assert.equal(bad.status, 400);
  assert.equal((await json(bad)).field, 'fields.chunkSize');
  // A field given twice has no one meaning: refused naming both values.
  const twice = await form([small], { target: 'Parasitized' });
  twice.append('target', 'Uninfected');
  const dup = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: twice });
  assert.equal(dup.status, 400);
  assert.deepEqual(await json(dup), { error: 'bad_request', message: 'Expected one value for fields.target but received "\\"Parasitized\\" and \\"Uninfected\\""', field: 'fields.target' });
  // Numbers in a form are read as written: an empty field or hex is refused, never taken as 0 or 1.
  for (const fraction of ['', '0x1', '1e400', ' ']) {
    const r = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { fraction }) });
    assert.equal(r.status, 400, JSON.stringify(fraction));
    assert.equal((await json(r)).field, 'fields.fraction');
  }
  const unknown = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { precision: 'fp8' }) });
  assert.equal(unknown.status, 400);
  assert.equal((await json(unknown)).field, 'fields.precision', 'named as the form field sent');
  // This model was published without training images, so it has no int8 graph.
  const noInt8 = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { precision: 'int8' }) });
  assert.equal(noInt8.status, 400);
  const refused = await json(noInt8);
  assert.equal(refused.field, 'fields.precision');
  assert.match(refused.message, /no int8 graph/);
  assert.equal((await fetch(`${base}/v1/batches/nope`, { headers: auth })).status, 404);
  const train = await fetch(`${base}/v1/train`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ dataset: 'cells', epochs: -1 }) });
  assert.equal(train.status, 400);
  assert.equal((await json(train)).field, 'body.epochs');
  // A body of the wrong kind is named as such (415), not read as missing fields; an archive is not unpacked from a
  // request (the CLI and S3 prefixes read archives), refused whole with the way to send it.
  const formTrain = await fetch(`${base}/v1/train`, { method: 'POST', headers: auth, body: await form([], { dataset: 'cells' }) });
  assert.equal(formTrain.status, 415);
  assert.deepEqual(await json(formTrain), { error: 'unsupported_media_type', message: 'Expected application/json (a JSON object body) for content-type but received "multipart/form-data"', field: 'content-type' });
  const rawImage = await fetch(`${base}/v1/batches`, { method: 'POST', headers: { ...auth, 'content-type': 'image/png' }, body: small.bytes });
  assert.equal(rawImage.status, 415);
  assert.equal((await json(rawImage)).message, 'content-type image/png is not taken by POST /v1/batches: send multipart/form-data (files) or application/json');
  // Types fastify itself parses (text, urlencoded forms) are as unwelcome there: the same 415, never a 400.
  for (const type of ['text/plain', 'application/x-www-form-urlencoded']) {
    const r = await fetch(`${base}/v1/batches`, { method: 'POST', headers: { ...auth, 'content-type': type }, body: 'source=s3://x/y' });
    assert.equal(r.status, 415, type);
    assert.equal((await json(r)).message, `content-type ${type} is not taken by POST /v1/batches: send multipart/form-data (files) or application/json`);
  }
  const zipped = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small, { name: 'cells.zip', bytes: Buffer.from('PK\u0003\u0004') }]) });
  assert.equal(zipped.status, 400);
  assert.match((await json(zipped)).message, /an archive is read by `camflow submit ARCHIVE` or from an S3 prefix, or upload the images in it for files but received "cells\.zip"$/);
});

test('without API_TOKEN the API refuses to start, naming the variable', async () => {
  const config = { ...c.ctx.config, API_TOKEN: undefined, API_INSECURE: false };
  await assert.rejects(buildApi({ config, store: c.ctx.store, flow: c.ctx.flow, queues: c.ctx.queues, redis: apiRedis, log: c.ctx.log }), /^Error: config: API_TOKEN: required|config: API_TOKEN: required/);
});

test('concurrent submissions with one key never mix: other files get 409, the same files get the one batch (200)', async () => {
  const all = await Promise.all(names.map(async (n) => ({ name: n, bytes: await readFile(join(c.dir, 'batch-31', n)) })));
  // Four different uploads under one key, at once: one wins, the others are refused with the winner named.
  const different = await Promise.all([0, 1, 2, 3].map(async (k) => fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form(all.slice(k, k + 2), { key: 'race-diff', chunkSize: '1' }) })));
  const statuses = different.map((r) => r.status).sort();
  assert.deepEqual(statuses, [202, 409, 409, 409]);
  const bodies = await Promise.all(different.map(json));
  const winner = bodies.find((b) => b.existing === false);
  assert.ok(bodies.filter((b) => b.error === 'conflict').every((b) => b.batchId === winner.batchId && /race-diff/.test(b.message)));
  await eventually('the winner to complete', async () => ((await json(fetch(`${base}/v1/batches/${winner.batchId}`, { headers: auth }))).state === 'completed' ? true : undefined), 60_000, 200);
  const lines = (await (await fetch(`${base}/v1/batches/${winner.batchId}/results`, { headers: auth })).text()).trim().split('\n').map((l) => JSON.parse(l));
  const k = different.findIndex((r) => r.status === 202);
  assert.deepEqual(lines.map((l) => l.name), all.slice(k, k + 2).map((f) => f.name), 'only the winner\'s files, each once');
  assert.ok(lines.every((l) => l.status === 'ok'), 'no chunk failed for another request\'s images');

  // Four identical uploads under one key: one batch, enqueued once.
  const before = (await c.ctx.queues.batch.getJobCounts()) as Record<string, number>;
  const same = await Promise.all([0, 1, 2, 3].map(async () => fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form(all.slice(0, 3), { key: 'race-same' }) })));
  assert.deepEqual(same.map((r) => r.status).sort(), [200, 200, 200, 202]);
  const ids = new Set((await Promise.all(same.map(json))).map((b) => b.batchId));
  assert.equal(ids.size, 1);
  const [id] = [...ids];
  await eventually('the shared batch to complete', async () => ((await json(fetch(`${base}/v1/batches/${id}`, { headers: auth }))).state === 'completed' ? true : undefined), 60_000, 200);
  const after = (await c.ctx.queues.batch.getJobCounts()) as Record<string, number>;
  assert.equal((after.completed ?? 0) - (before.completed ?? 0), 1, 'one finalization, not four');
});

test('options are checked at the edge against the model: unknown class, huge or unknown fields, malformed multipart', async () => {
  const small = { name: 'a.png', bytes: await readFile(join(c.dir, 'batch-31', names[0]!)) };
  const target = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { target: 'NoSuchClass' }) });
  assert.equal(target.status, 400);
  const t = await json(target);
  assert.equal(t.field, 'fields.target');
  assert.match(t.message, /Parasitized, Uninfected/);
  const huge = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { target: 'x'.repeat(2 * 1024 * 1024) }) });
  assert.ok(huge.status === 400 || huge.status === 413, String(huge.status));
  assert.ok(!JSON.stringify(await json(huge)).includes('xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'), 'the value is not echoed whole');
  const unknown = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { tagret: 'all' }) });
  assert.equal(unknown.status, 400);
  const longKey = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { key: 'k'.repeat(5000) }) });
  assert.equal(longKey.status, 413, 'a field over 4 KiB is too large, as a file over its limit is');
  // The outputs option reads as the CLI's: `none` is an archive run.
  const noneRes = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { outputs: 'none' }) });
  assert.equal(noneRes.status, 202, await noneRes.clone().text());
  const none = await json(noneRes);
  await eventually('the archive-run upload to complete', async () => ((await json(fetch(`${base}/v1/batches/${none.batchId}`, { headers: auth }))).state === 'completed' ? true : undefined), 60_000, 200);
  // Training jobs over HTTP: queued, shown, listed (no trainer runs here: it waits), cancelled.
  const queued = await fetch(`${base}/v1/train`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ dataset: 'tiny', epochs: 1, promote: false }) });
  assert.equal(queued.status, 202, await queued.clone().text());
  const { jobId } = await json(queued);
  const one = await json(fetch(`${base}/v1/train/${jobId}`, { headers: auth }));
  assert.deepEqual([one.jobId, one.state, one.dataset, one.datasetVersion, one.preset, one.origin, one.attemptsMade], [jobId, 'waiting', 'tiny', 'latest', 'fast', 'request', 0]);
  const listed = await json(fetch(`${base}/v1/train?limit=5`, { headers: auth }));
  assert.equal(listed.jobs[0].jobId, jobId);
  const missing = await fetch(`${base}/v1/train/nosuchjob`, { headers: auth });
  assert.equal(missing.status, 404);
  assert.equal((await json(missing)).error, 'not_found');
  assert.equal((await fetch(`${base}/v1/train?limit=0`, { headers: auth })).status, 400);
  assert.equal((await json(fetch(`${base}/v1/train/${jobId}/cancel`, { method: 'POST', headers: auth }))).action, 'removed');
  // Datasets and the retraining schedule over HTTP, in the CLI's shapes.
  const datasets = await json(fetch(`${base}/v1/datasets`, { headers: auth }));
  assert.deepEqual(datasets, JSON.parse((await runCli(c, ['dataset', 'list', '--json'])).stdout));
  assert.ok(datasets.datasets.some((d: { name: string }) => d.name === 'tiny'));
  const put = (body: unknown) => fetch(`${base}/v1/schedule`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const set = await put({ dataset: 'tiny', cron: '30 1 * * *', tz: 'Asia/Tokyo', promote: false });
  assert.equal(set.status, 200, await set.clone().text());
  const when = await json(set);
  assert.ok(when.next > Date.now());
  assert.equal(when.nextAt, new Date(when.next).toISOString(), 'the next run also as ISO 8601, as every other time');
  const sched = await json(fetch(`${base}/v1/schedule`, { headers: auth }));
  assert.deepEqual([sched.schedule.pattern, sched.schedule.tz, sched.schedule.data.dataset, sched.schedule.data.promote], ['30 1 * * *', 'Asia/Tokyo', 'tiny', false]);
  assert.deepEqual(JSON.parse((await runCli(c, ['schedule', 'show', '--json'])).stdout), sched);
  const badZone = await put({ dataset: 'tiny', cron: '30 1 * * *', tz: 'Mars/Olympus' });
  assert.equal(badZone.status, 400);
  assert.match((await json(badZone)).message, /for body\.tz but received "Mars\/Olympus"/);
  const badField = await put({ dataset: 'tiny', cron: '30 1 * * *', epoch: 3 });
  assert.equal(badField.status, 400);
  assert.match((await json(badField)).message, /epochs/);
  // A misnamed field is told every field the schedule takes, its own `cron` and `tz` among them.
  const misnamed = await json(await put({ dataset: 'tiny', cron: '30 1 * * *', timezone: 'UTC' }));
  assert.match(misnamed.message, /^Expected known fields only \(dataset, .*, cron, tz\) for body but received "timezone"$/);
  assert.equal((await put({ dataset: 'nosuchdataset', cron: '30 1 * * *' })).status, 404);
  // A pattern of the right shape that names no time is bad input (400 naming the field), not a 500 from the queue;
  // a schedule trains the latest version, so a pinned one is refused as the CLI refuses --version.
  const badRange = await put({ dataset: 'tiny', cron: '61 2 * * *' });
  assert.equal(badRange.status, 400);
  assert.match((await json(badRange)).message, /got value 61 expected range 0-59.* for body\.cron but received "61 2 \* \* \*"/);
  const pinned = await put({ dataset: 'tiny', cron: '30 1 * * *', datasetVersion: 'v-typo' });
  assert.equal(pinned.status, 400);
  assert.match((await json(pinned)).message, /known fields only/);
  assert.deepEqual(await json(fetch(`${base}/v1/schedule`, { method: 'DELETE', headers: auth })), { removed: true });
  assert.deepEqual(await json(fetch(`${base}/v1/schedule`, { headers: auth })), { schedule: null });
  // Training: a mistyped field is refused, not dropped for its default (epochs 30).
  const typo = await fetch(`${base}/v1/train`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ dataset: 'tiny', epoch: 3 }) });
  assert.equal(typo.status, 400);
  assert.match((await json(typo)).message, /epoch/);
  // An S3 prefix with no source store configured: the client's request names a store this API cannot read.
  const s3 = await fetch(`${base}/v1/batches`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ source: 's3://nobucket/x' }) });
  assert.equal(s3.status, 400, await s3.clone().text());
  const s3Message = (await json(s3)).message as string;
  assert.match(s3Message, /cannot list s3:\/\/nobucket\/x/);
  assert.doesNotMatch(s3Message, /https?:\/\/|\b\d{1,3}(\.\d{1,3}){3}\b/, 'no address of a store in a response');
  const broken = await fetch(`${base}/v1/batches`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'multipart/form-data; boundary=XYZ' },
    body: '--XYZ\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\nabc',
  });
  assert.equal(broken.status, 400, await broken.clone().text());
  assert.equal((await json(broken)).error, 'bad_request');
  // Upload names keep their folder (never above the root), so a labelled upload can be scored over HTTP; a batch with
  // no name to read a class from is a 400 naming what eval needs, not scores of 0.
  const cellBytes = await readFile(join(c.dir, 'batch-31', names[0]!));
  const labelled = await json(fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([{ name: 'Parasitized/a.png', bytes: cellBytes }, { name: '../Uninfected/b.png', bytes: cellBytes }, { name: 'Parasitized/../Uninfected/c.png', bytes: cellBytes }, { name: 'flat.png', bytes: cellBytes }]) }));
  await eventually('the labelled upload to complete', async () => ((await json(fetch(`${base}/v1/batches/${labelled.batchId}`, { headers: auth }))).state === 'completed' ? true : undefined), 60_000, 200);
  const lines = (await (await fetch(`${base}/v1/batches/${labelled.batchId}/results`, { headers: auth })).text()).trim().split('\n').map((l) => JSON.parse(l) as { name: string });
  assert.deepEqual(lines.map((l) => l.name), ['Parasitized/a.png', 'Uninfected/b.png', 'Uninfected/c.png', 'flat.png'], 'a name\'s .. resolved as a path: its last folder is its class');
  const scored = await json(fetch(`${base}/v1/batches/${labelled.batchId}/eval?truth=none`, { headers: auth }));
  assert.equal(scored.classification.images, 3);
  assert.equal(scored.classification.confusion.Uninfected.Parasitized + scored.classification.confusion.Uninfected.Uninfected, 2, 'c.png scored as the Uninfected cell it is');
  // Uploaded with the default target (predicted): the stain audit would lose exactly the model's misses (no positive-
  // class CAM where it said negative), so it is skipped, saying why — or refused when asked for by name.
  const audited = await json(fetch(`${base}/v1/batches/${labelled.batchId}/eval`, { headers: auth }));
  assert.deepEqual([audited.classification.images, audited.stainPointing, audited.stainSkipped], [3, undefined, "the stain audit needs every image's Parasitized CAM: this batch was localized with target predicted, which computes it only where the model said Parasitized; submit with target=all"]);
  const stainAsked = await fetch(`${base}/v1/batches/${labelled.batchId}/eval?truth=stain`, { headers: auth });
  assert.equal(stainAsked.status, 400);
  assert.match((await json(stainAsked)).message, /^Expected none for a batch not localized with target=all \(the stain audit needs .*\) for query\.truth but received "stain"$/);
  const flat = await fetch(`${base}/v1/batches/${none.batchId}/eval`, { headers: auth });
  assert.equal(flat.status, 400);
  assert.match((await json(flat)).message, /results named <class>\/<file> with the model's classes \(Parasitized, Uninfected\)/);
});

test("an integrator's requests: HTTP's case rules, JSON's own types, one name per file, a retry that changes a setting, a webhook that could never arrive", async () => {
  const small = { name: 'a.png', bytes: await readFile(join(c.dir, 'batch-31', names[0]!)) };
  // The auth scheme and media types are case-insensitive; a 401 says which scheme to use.
  assert.equal((await fetch(`${base}/v1/models`, { headers: { authorization: `bearer ${TOKEN}` } })).status, 200);
  const denied = await fetch(`${base}/v1/models`);
  assert.equal(denied.headers.get('www-authenticate'), 'Bearer realm="camflow"');
  // JSON bodies take JSON's types (a boolean, an array of outputs); the S3 check is what answers, not the fields'.
  const s3 = await fetch(`${base}/v1/batches`, { method: 'POST', headers: { ...auth, 'content-type': 'Application/JSON' }, body: JSON.stringify({ source: 's3://nobucket/x', restrictToCell: false, outputs: ['json'], fraction: 0.3 }) });
  assert.equal(s3.status, 400);
  assert.match((await json(s3)).message, /cannot list s3:\/\/nobucket\/x/);
  // Image bytes sent as a text value, two files under one name, a webhook on a port fetch refuses: 400, named.
  const text = new FormData();
  text.append('files', small.bytes.toString('latin1'));
  const asText = await json(fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: text }));
  assert.deepEqual([asText.field, asText.message], ['files', 'Expected file parts (each with a filename: `-F files=@cell.png`, `FormData.append("files", blob, "cell.png")`) for files but received "a text value"']);
  const twice = await json(fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small, { ...small, name: 'b.png' }, small]) }));
  assert.deepEqual([twice.field, twice.message], ['files', 'Expected each file name once (results are matched by name; put same-named files in folders: `filename=slide-1/cell.png`) for files but received "a.png twice"']);
  const blocked = await json(fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { webhook: 'http://127.0.0.1:10080/lims' }) }));
  assert.equal(blocked.field, 'fields.webhook');
  assert.match(blocked.message, /port 10080 is on fetch's blocked list/);
  // A retry under a key: the same request is the same batch (naming the model it already uses included); one that
  // changes its priority or adds a webhook is a conflict saying which, never taken silently.
  await c.ctx.queues.cam.pause();
  try {
    const first = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { key: 'lims-k1', priority: 'high' }) });
    assert.equal(first.status, 202);
    const info = await json(first);
    assert.equal(first.headers.get('location'), `/v1/batches/${info.batchId}`);
    const same = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { key: 'lims-k1', priority: 'high', model: info.modelVersion }) });
    assert.deepEqual([same.status, (await json(same)).batchId, same.headers.get('location')], [200, info.batchId, `/v1/batches/${info.batchId}`]);
    const lower = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { key: 'lims-k1', priority: 'low' }) });
    assert.equal(lower.status, 409);
    assert.equal((await json(lower)).message, `idempotency key "lims-k1" belongs to batch ${info.batchId}, submitted with priority high (this request: low): use a new key`);
    const hooked = await json(fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { key: 'lims-k1', webhook: 'https://lims.example/done?token=secret' }) }));
    assert.equal(hooked.message, `idempotency key "lims-k1" belongs to batch ${info.batchId}, submitted with no webhook (this request: one to https://lims.example): use a new key`);
    // While it runs, its results are not ready: 409 with when to ask again.
    const early = await fetch(`${base}/v1/batches/${info.batchId}/results`, { headers: auth });
    assert.deepEqual([early.status, early.headers.get('retry-after')], [409, '5']);
  } finally {
    await c.ctx.queues.cam.resume();
  }
  // A mistyped query parameter is refused as a mistyped field is; ids as long as the id pattern allows answer in the
  // API's shape; one model's manifest; a promotion takes no options.
  const typo = await json(fetch(`${base}/v1/batches?limt=5`, { headers: auth }));
  assert.deepEqual([typo.field, typo.message], ['query', 'Expected known fields only (limit, before); did you mean "limit"? for query but received "limt"']);
  // Pages of the batch list: `next` is the cursor for the older ones; every batch once, newest first — also past a
  // batch whose batch.json is not written yet (an upload still being ingested), which a page leaves out.
  await c.ctx.store.put('batches/b99991231T000000-000000000000/manifest.jsonl', '');
  const all = (await json(fetch(`${base}/v1/batches?limit=1000`, { headers: auth }))).batches.map((b: { batchId: string }) => b.batchId).sort().reverse();
  assert.ok(all.length >= 4, String(all.length));
  const paged: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 100 && paged.length < all.length; page++) {
    const body = await json(fetch(`${base}/v1/batches?limit=3${cursor ? `&before=${cursor}` : ''}`, { headers: auth }));
    paged.push(...body.batches.map((b: { batchId: string }) => b.batchId).sort().reverse());
    cursor = body.next;
    if (!cursor) break;
  }
  assert.deepEqual(paged, all);
  // The CLI pages the same way, and says how to see the older ones.
  const firstPage = await json(fetch(`${base}/v1/batches?limit=2`, { headers: auth }));
  const cliPage = JSON.parse((await runCli(c, ['batches', 'list', '--limit', '2', '--json'])).stdout);
  assert.deepEqual([cliPage.batches.map((b: { batchId: string }) => b.batchId), cliPage.next], [firstPage.batches.map((b: { batchId: string }) => b.batchId), firstPage.next]);
  const older = await runCli(c, ['batches', 'list', '--limit', '2', '--before', firstPage.next]);
  assert.match(older.stdout, /\n\(older batches: camflow batches list --limit 2 --before b\S+\)\n$/);
  assert.equal((await runCli(c, ['batches', 'list', '--before', '../x'])).code, 2);
  const notACursor = await json(fetch(`${base}/v1/batches?before=nosuch`, { headers: auth }));
  assert.deepEqual([notACursor.field, notACursor.message], ['query.before', 'Expected a batch id (b<yyyymmdd>…, as `next` gives it) for query.before but received "nosuch"']);
  const long = await fetch(`${base}/v1/batches/b${'0'.repeat(120)}`, { headers: auth });
  assert.deepEqual([long.status, (await json(long)).error], [404, 'not_found']);
  const model = await json(fetch(`${base}/v1/models/m-untrained`, { headers: auth }));
  assert.equal(model.version, 'm-untrained');
  assert.equal((await fetch(`${base}/v1/models/nosuchmodel`, { headers: auth })).status, 404);
  const promote = await json(fetch(`${base}/v1/models/m-untrained/promote`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ channel: 'staging' }) }));
  assert.equal(promote.field, 'body');
});

test('while Redis is down the API answers 503 at once and its probes name no internal address', async () => {
  await c.redis.stop();
  try {
    const t0 = Date.now();
    const ready = await fetch(`${base}/readyz`);
    assert.equal(ready.status, 503);
    const body = await ready.text();
    assert.deepEqual(JSON.parse(body), { ok: false, redis: 'unreachable', storage: 'ok' });
    assert.ok(!/127\.0\.0\.1|localhost|:\d{4,5}/.test(body), body);
    const small = { name: 'a.png', bytes: await readFile(join(c.dir, 'batch-31', names[0]!)) };
    const submit = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small]) });
    assert.equal(submit.status, 503);
    const status = await fetch(`${base}/v1/batches/bnope`, { headers: auth });
    assert.ok(status.status === 503 || status.status === 404, String(status.status));
    const text = JSON.stringify(await json(submit));
    assert.ok(!/127\.0\.0\.1|ECONNREFUSED|\/tmp\//.test(text), text);
    assert.ok(Date.now() - t0 < 10_000, `answered in ${Date.now() - t0} ms`);
  } finally {
    await c.redis.restart();
    // Let the in-process workers reconnect: a BullMQ worker closed while it reconnects waits out its retry.
    await sleep(3000);
  }
});
