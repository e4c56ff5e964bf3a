// Steering batches: priorities between batches, and a signed completion webhook.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { Job } from 'bullmq';
import { chunkJobId, keys, webhookSignature } from '@camflow/common';
import { submitBatch } from '@camflow/ingest';
import { waitForBatch } from '../../packages/cli/src/wait.ts';
import { eventually, publishUntrained, runCli, startCluster, syntheticFolder } from '../helpers/cluster.ts';

test('a high-priority batch submitted after a low-priority one is localized first; its webhook arrives signed', { timeout: 300_000 }, async () => {
  const secret = 'webhook-secret-0123456789';
  const c = await startCluster({ CAM_CONCURRENCY: '1', WEBHOOK_SECRET: secret });
  const received: { headers: IncomingMessage['headers']; body: string }[] = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  const hook = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/camflow`;
  try {
    await publishUntrained(c.ctx);
    await syntheticFolder(c.dir, 40, 61);
    await syntheticFolder(c.dir, 8, 62);
    const base = { store: c.ctx.store, flow: c.ctx.flow, redis: c.ctx.redis, prefix: 'camflow', chunkSize: 4, options: { outputs: ['json' as const, 'overlay' as const] } };
    const low = await submitBatch({ ...base, source: join(c.dir, 'batch-61'), priority: 'low' });
    const run = await runCli(c, ['submit', join(c.dir, 'batch-62'), '--priority', 'high', '--webhook', hook, '--chunk-size', '4', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const high = JSON.parse(run.stdout.trim().split('\n').pop()!) as { batchId: string };
    c.spawnWorker('cam');
    await waitForBatch(c.ctx, high.batchId, 120_000);
    await waitForBatch(c.ctx, low.batchId, 180_000);
    // One chunk at a time (CAM_CONCURRENCY=1): every chunk of the high batch ran before any chunk of the low one.
    const times = async (batchId: string, chunks: number) => Promise.all(Array.from({ length: chunks }, async (_, k) => (await Job.fromId(c.ctx.queues.cam, chunkJobId(batchId, k)))!));
    const [highJobs, lowJobs] = [await times(high.batchId, 2), await times(low.batchId, 10)];
    const lastHigh = Math.max(...highJobs.map((j) => j.finishedOn!));
    const firstLow = Math.min(...lowJobs.map((j) => j.processedOn!));
    assert.ok(lastHigh <= firstLow, `high chunks finished by ${lastHigh}, first low chunk started at ${firstLow}`);
    // The webhook: one POST for the high batch (the low one has none), signed over "<timestamp>.<raw body>".
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(received.length, 1);
    const { headers, body } = received[0]!;
    assert.equal(headers['x-camflow-signature'], webhookSignature(secret, String(headers['x-camflow-timestamp']), body));
    const payload = JSON.parse(body) as { event: string; batchId: string; summary: { items: number }; resultsPath: string };
    assert.deepEqual([payload.event, payload.batchId, payload.summary.items], ['batch.completed', high.batchId, 8]);
    assert.equal(payload.resultsPath, `/v1/batches/${high.batchId}/results`, 'where the API serves the results');
    const told = await runCli(c, ['status', high.batchId]);
    assert.match(told.stdout, /^webhook: delivered to http:\/\/127\.0\.0\.1:\d+ \(1 attempt\)$/m, told.stdout);
    // A receiver that is down: tried 3 times, then said — in `status`, with the cause — not only in a worker's log.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const deadPort = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const unheard = await runCli(c, ['submit', join(c.dir, 'batch-62'), '--webhook', `http://127.0.0.1:${deadPort}/hook?token=abc`, '--key', 'unheard', '--json']);
    const unheardId = JSON.parse(unheard.stdout.trim().split('\n').pop()!).batchId as string;
    const said = await eventually('the webhook to be given up', async () => {
      const st = await runCli(c, ['status', unheardId]);
      return /^webhook: NOT delivered/m.test(st.stdout) ? st.stdout : undefined;
    }, 60_000, 500);
    assert.match(said, new RegExp(`^webhook: NOT delivered to http://127\\.0\\.0\\.1:${deadPort} after 3 attempts \\(fetch failed \\(ECONNREFUSED\\)\\): the batch is complete, its receiver was not told$`, 'm'));
    assert.doesNotMatch(said, /token=abc/, 'the hook\'s query (a token, perhaps) is never shown');
    const asJson = await runCli(c, ['status', unheardId, '--json']);
    assert.equal(JSON.parse(asJson.stdout).info.webhook, `http://127.0.0.1:${deadPort}/hook`, 'nor in the JSON status');
    // A completed batch with a webhook but no delivery record (completed before deliveries were recorded): said so,
    // not "being delivered" for ever.
    await c.ctx.store.deleteMany([keys.batchWebhook(high.batchId)]);
    const summary = await c.ctx.store.getJson<Record<string, unknown>>(keys.resultsSummary(high.batchId));
    await c.ctx.store.putJson(keys.resultsSummary(high.batchId), { ...summary, completedAt: new Date(Date.now() - 3600_000).toISOString() });
    assert.match((await runCli(c, ['status', high.batchId])).stdout, /^webhook to http:\/\/127\.0\.0\.1:\d+: no delivery record \(the batch completed before deliveries were recorded, or its finalizer stopped while trying\)$/m);
    // Bad values are refused before anything is read.
    const bad = await runCli(c, ['submit', join(c.dir, 'batch-62'), '--priority', 'urgent']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /priority/);
    const badHook = await runCli(c, ['submit', join(c.dir, 'batch-62'), '--webhook', 'ftp://x']);
    assert.equal(badHook.code, 2);
    assert.match(badHook.stderr, /webhook/);
  } finally {
    receiver.close();
    await c.close();
  }
});
