import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createRedis } from '@camflow/common';
import { buildApi } from '@camflow/ingest';
import { startCamWorkers, type CamWorkers } from '@camflow/cam-worker';
import { publishUntrained, startCluster, syntheticFolder, eventually, type Cluster } from '../helpers/cluster.ts';

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
  app = await buildApi({ config, store: c.ctx.store, flow: c.ctx.flow, queues: c.ctx.queues, redis: (apiRedis = createRedis(c.env.REDIS_URL!)), log: c.ctx.log });
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
});

test('an uploaded batch is localized; its results stream as JSONL; refused files carry their reason', async () => {
  const files = await Promise.all(names.map(async (n) => ({ name: n, bytes: await readFile(join(c.dir, 'batch-31', n)) })));
  files.push({ name: "notes.png", bytes: Buffer.from("not an image") });
  const res = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form(files, { target: 'all', chunkSize: '4', key: 'upload-1' }) });
  assert.equal(res.status, 202);
  const info = (await res.json()) as { batchId: string; items: number; accepted: number; rejected: number; chunks: number };
  assert.deepEqual([info.items, info.accepted, info.rejected, info.chunks], [7, 6, 1, 2]);
  const early = await fetch(`${base}/v1/batches/${info.batchId}/results`, { headers: auth });
  assert.ok(early.status === 409 || early.status === 200);
  await eventually('the batch to complete', async () => {
    const s = await json(fetch(`${base}/v1/batches/${info.batchId}`, { headers: auth }));
    return s.state === 'completed' ? s : undefined;
  }, 60_000, 200);
  const results = await fetch(`${base}/v1/batches/${info.batchId}/results`, { headers: auth });
  assert.equal(results.headers.get('content-type'), 'application/x-ndjson');
  const lines = (await results.text()).trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 7);
  assert.equal(lines.find((l) => l.name === 'notes.png').reason, 'unsupported-format');
  // The same idempotency key returns the same batch, 200 not 202.
  const again = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form(files.slice(0, 1), { key: 'upload-1' }) });
  assert.equal(again.status, 200);
  assert.equal((await json(again)).batchId, info.batchId);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /camflow_queue_jobs\{queue="cam",state="completed"\} 2/);
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
  const unknown = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { precision: 'fp8' }) });
  assert.equal(unknown.status, 400);
  assert.equal((await json(unknown)).field, 'options.precision');
  // This model was published without training images, so it has no int8 graph.
  const noInt8 = await fetch(`${base}/v1/batches`, { method: 'POST', headers: auth, body: await form([small], { precision: 'int8' }) });
  assert.equal(noInt8.status, 400);
  const refused = await json(noInt8);
  assert.equal(refused.field, 'options.precision');
  assert.match(refused.message, /no int8 graph/);
  assert.equal((await fetch(`${base}/v1/batches/nope`, { headers: auth })).status, 404);
  const train = await fetch(`${base}/v1/train`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ dataset: 'cells', epochs: -1 }) });
  assert.equal(train.status, 400);
  assert.equal((await json(train)).field, 'body.epochs');
});

test('without API_TOKEN the API refuses to start, naming the variable', async () => {
  const config = { ...c.ctx.config, API_TOKEN: undefined, API_INSECURE: false };
  await assert.rejects(buildApi({ config, store: c.ctx.store, flow: c.ctx.flow, queues: c.ctx.queues, redis: apiRedis, log: c.ctx.log }), /^Error: config: API_TOKEN: required|config: API_TOKEN: required/);
});
