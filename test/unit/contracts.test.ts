import { test } from 'node:test';
import { trainingJobLine } from '../../packages/cli/src/commands/train.ts';
import assert from 'node:assert/strict';
import { ContractError, probeRedis, chunkJobId, operatingPoint, publicReason, imageResultSchema, manifestLineSchema, parseJsonLines, redactLine, retrainingScheduleSchema, toJsonLines, trainingJobStatus } from '@camflow/common';
import { planBatches } from '@camflow/cam-worker';

test('manifest lines are read back through their schema; a broken line names the object and the line', () => {
  const text = toJsonLines([
    { imageId: 'i0000000', name: 'a.png', sha256: 'a'.repeat(64), ext: 'png', width: 10, height: 12, chunk: 0 },
    { imageId: 'i0000001', name: '.hidden', reason: 'unsupported-format', error: 'not an image' },
  ]);
  const lines = parseJsonLines(text, manifestLineSchema, 'batches/b1/manifest.jsonl');
  assert.equal(lines.length, 2);
  assert.equal('chunk' in lines[0]! && lines[0].chunk, 0);
  assert.throws(() => parseJsonLines(`${text}{"imageId":"i2","name":"x"}\n`, manifestLineSchema, 'batches/b1/manifest.jsonl'), (e: unknown) => e instanceof ContractError && /manifest\.jsonl, line 3/.test(e.message));
  assert.throws(() => parseJsonLines('{"imageId":', manifestLineSchema, 'm'), (e: unknown) => e instanceof ContractError && /line 1: not JSON/.test(e.message));
  // A failed result needs a machine-readable reason, not a flattened string.
  assert.equal(imageResultSchema.safeParse({ batchId: 'b1', imageId: 'i1', name: 'x', status: 'failed', error: 'truncated: x' }).success, false);
});

test('chunk job ids are built in one place and refuse ids that are not ids', () => {
  assert.equal(chunkJobId('b20261127-ab', 3), 'b20261127-ab-c3');
  assert.throws(() => chunkJobId('../x', 1));
});

test('inference batches respect both the item count and the decoded-pixel budget; a huge image is a batch of its own', () => {
  const cell = { width: 100, height: 100 };
  const big = { width: 4000, height: 4000 };
  assert.deepEqual(planBatches(Array(70).fill(cell), 32, 1e9).map((b) => b.length), [32, 32, 6]);
  assert.deepEqual(planBatches([cell, cell, big, cell, big, big], 32, 16_100_000).map((b) => b.length), [4, 1, 1]);
  assert.deepEqual(planBatches([cell, cell, big, cell, big, big], 32, 16_000_000).map((b) => b.length), [2, 1, 1, 1, 1]);
  assert.deepEqual(planBatches([big, big], 32, 1000).map((b) => b.length), [1, 1]);
  assert.deepEqual(planBatches([], 32, 1000), []);
  const items = Array.from({ length: 50 }, (_, i) => ({ width: 10 + i, height: 10 + i, i }));
  assert.deepEqual(planBatches(items, 7, 20_000).flat().map((x) => x.i), items.map((x) => x.i), 'order and membership kept');
});

test('log lines lose every secret: headers at any depth, bearer tokens in text, URL passwords, credential objects', () => {
  const line = JSON.stringify({
    req: { headers: { authorization: 'Bearer tok-123456789', cookie: 'session=abc', 'x-api-key': 'k-999' } },
    deep: { a: { b: { Authorization: ['Basic dXNlcjpwYXNz'] } } },
    msg: 'sending Bearer tok-123456789 to redis://user:hunter2@10.0.0.1:6379',
    credentials: { accessKeyId: 'AKIA1', secretAccessKey: 'shh' },
    token: 'tok-2',
    // A token a client put in the query string (fastify logs the URL as sent), and presigned-URL signatures.
    url: '/v1/batches?token=tok-q1&limit=5&access_token=tok-q2&api_token=tok-q3',
    link: 'http://s3/x.png?X-Amz-Credential=AKIA9%2F2026&X-Amz-Signature=sig-77',
    more: '/cb?client_secret=S3CR3T&refresh_token=rt-1&id_token=it-1&key=GOOGLEKEY&private_token=pt-1',
    at: 'redis://:p@ss-tail@10.0.0.2:6379',
  });
  const out = redactLine(line);
  for (const secret of ['tok-123456789', 'session=abc', 'k-999', 'dXNlcjpwYXNz', 'hunter2', 'AKIA1', 'shh', 'tok-2', 'tok-q1', 'tok-q2', 'tok-q3', 'AKIA9', 'sig-77', 'S3CR3T', 'rt-1', 'it-1', 'GOOGLEKEY', 'pt-1', 'ss-tail']) assert.ok(!out.includes(secret), `${secret} leaked: ${out}`);
  assert.match(out, /\/v1\/batches\?token=\[redacted\]&limit=5&/, 'the rest of the URL stays readable');
  assert.doesNotThrow(() => JSON.parse(out), 'still JSON');
  assert.match(out, /redis:\/\/user:\[redacted\]@10\.0\.0\.1/);
});

test('reasons that reach results and responses carry no internal address', () => {
  const e = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:9000 while calling http://minio.internal:9000/camflow/x'), { code: 'ECONNREFUSED' });
  const text = publicReason(e);
  assert.ok(!/10\.1\.2\.3|minio\.internal|9000/.test(text), text);
  assert.match(text, /ECONNREFUSED/);
  // A source the user named (s3://bucket/prefix) is kept: it is not where a server listens.
  assert.equal(publicReason(new Error('cannot list s3://lab-archive/slides: S3 at http://10.0.0.9:9000 does not answer')), 'cannot list s3://lab-archive/slides: S3 at <endpoint> does not answer');
});

test('the screening threshold reaches the target recall on the validation images, midway to the next lower score', () => {
  const probs = [0.95, 0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1, 0.05];
  const pos = [true, true, true, true, true, false, false, false, false, false];
  // 5 positives: recall 0.98 needs all 5, so the threshold lies between the lowest positive (0.3) and the next
  // lower score (0.2): 0.25; two negatives (0.7, 0.4) are above it.
  assert.deepEqual(operatingPoint(probs, pos, 0.98), { threshold: 0.25, recall: 1, specificity: 0.6 });
  // recall 0.8 needs 4 of 5: between 0.6 and 0.4, one negative (0.7) above it.
  assert.deepEqual(operatingPoint(probs, pos, 0.8), { threshold: 0.5, recall: 0.8, specificity: 0.8 });
  assert.equal(operatingPoint([0.4, 0.1], [false, false], 0.98).threshold, 0.5);
  assert.throws(() => operatingPoint([0.1], [true], 0), /targetRecall/);
});

test('a CAM that peaks on the black background along the crop edge is restricted to the cell: peak and box on the cell', async () => {
  const { cellForeground, camOptionsSchema } = await import('@camflow/common');
  const { localizeImage } = await import('@camflow/cam-worker');
  // A 32×32 crop on black: a cell of radius 9 against the right edge (centre x = 26), the rest black.
  const size = 32;
  const input = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) if ((x - 26) ** 2 + (y - 16) ** 2 <= 81) input.set([200, 120, 160], (y * size + x) * 3);
  // One feature channel at 4×4: strongest on the top-left background corner, weaker over the cell.
  const feat = new Float32Array(16);
  feat[0] = 10; // (0, 0): background
  feat[2 * 4 + 3] = 6; // row 2, col 3: the cell
  const prediction = { logits: new Float32Array([2, 0]), features: { data: feat, height: 4, width: 4, channels: 1 } };
  const weights = new Float32Array([1, -1]); // [channels][classes]
  const options = camOptionsSchema.parse({});
  const whole = localizeImage(prediction, weights, ['Parasitized', 'Uninfected'], 128, 128, options);
  assert.ok(whole.cams[0]!.peak.x < 32 && whole.cams[0]!.peak.y < 32, `the paper's map peaks on the background: ${JSON.stringify(whole.cams[0]!.peak)}`);
  const mask = cellForeground(input, size, 128, 128)!;
  const cell = localizeImage(prediction, weights, ['Parasitized', 'Uninfected'], 128, 128, options, mask);
  const { peak, box } = cell.cams[0]!;
  assert.equal(mask[peak.y * 128 + peak.x], 1, `peak on the cell: ${JSON.stringify(peak)}`);
  assert.ok(box && box.x >= 64, `box on the cell (right half): ${JSON.stringify(box)}`);
  // Not a crop on black (no background): no mask.
  assert.equal(cellForeground(new Uint8Array(size * size * 3).fill(120), size, 64, 64), undefined);
});

test('a retraining schedule is five cron fields or a macro, in a real time zone; 4 and 6 fields are refused', () => {
  const ok = (cron: string, tz = 'UTC') => retrainingScheduleSchema.safeParse({ cron, tz }).success;
  assert.deepEqual(['0 2 * * *', '30 1 * * MON-FRI', '*/15 * * * *', '@daily', '@weekly', ' 0 2 * * * '].map((c) => ok(c)), [true, true, true, true, true, true]);
  assert.equal(ok('0 2 * * *', 'Europe/Paris'), true);
  // BullMQ's parser reads "0 2 * *" as hour 0, day 2 (monthly) and a sixth field as seconds (every 5 s).
  assert.deepEqual(['0 2 * *', '*/5 * * * * *', 'a', '', '0 2 * * * ;'].map((c) => ok(c)), [false, false, false, false, false]);
  // Five fields of the right characters that name no time: out of range, refused with the parser's reason.
  assert.deepEqual(['61 2 * * *', '0 25 * * *', '0 2 32 * *'].map((c) => ok(c)), [false, false, false]);
  const range = retrainingScheduleSchema.safeParse({ cron: '0 25 * * *', tz: 'UTC' });
  assert.deepEqual(range.error!.issues[0]!.path, ['cron']);
  assert.match(range.error!.issues[0]!.message, /expected range 0-23/);
  const zone = retrainingScheduleSchema.safeParse({ cron: '0 2 * * *', tz: 'Mars/Olympus' });
  assert.equal(zone.success, false);
  assert.deepEqual([zone.error!.issues[0]!.path, zone.error!.issues[0]!.message], [['tz'], 'an IANA time zone such as UTC or Europe/Paris']);
});

test('a training job whose loss diverged (NaN, stored by BullMQ as JSON null) lists as such instead of breaking the list', () => {
  const job = { id: '7', name: 'train', data: { dataset: 'cells' }, progress: JSON.parse(JSON.stringify({ epoch: 2, loss: Number.NaN, valAccuracy: 0.5, attempt: 0 })), timestamp: 1_700_000_000_000, attemptsMade: 1, failedReason: 'collapsed' };
  const status = trainingJobStatus(job as unknown as Parameters<typeof trainingJobStatus>[0], 'failed');
  assert.deepEqual(status.progress, { epoch: 2, loss: null, valAccuracy: 0.5, attempt: 0 });
  // Before it is stored (the trainer's own report): NaN too.
  const live = trainingJobStatus({ ...job, progress: { epoch: 1, loss: Number.POSITIVE_INFINITY, valAccuracy: Number.NaN, attempt: 0 } } as unknown as Parameters<typeof trainingJobStatus>[0], 'active');
  assert.deepEqual(live.progress, { epoch: 1, loss: null, valAccuracy: null, attempt: 0 });
  // A run that restarted after a collapse: its attempts and why, in the progress and the outcome.
  const restarts = ['attempt 1 collapsed (constant predictions); restarted with a new initialisation'];
  const done = trainingJobStatus({ ...job, progress: { epoch: 3, loss: 0.2, valAccuracy: 0.9, attempt: 2, restarts }, returnvalue: { skipped: false, version: 'm1', datasetVersion: 'd0123456789ab', valAccuracy: 0.9, epochs: 3, epochsAsked: 30, bestEpoch: 2, attempts: 2, restarts, promoted: true, promotion: 'first model', manifest: {} } } as unknown as Parameters<typeof trainingJobStatus>[0], 'completed');
  assert.deepEqual([done.progress?.restarts, done.outcome?.attempts, done.outcome?.restarts], [restarts, 2, restarts]);
  // What `train --wait` says (3 of 30 epochs, the best one published) is in `train show` and GET /v1/train/:job too;
  // the model manifest the trainer returned is not.
  assert.deepEqual(done.outcome, { skipped: false, version: 'm1', datasetVersion: 'd0123456789ab', valAccuracy: 0.9, epochs: 3, epochsAsked: 30, bestEpoch: 2, attempts: 2, restarts, promoted: true, promotion: 'first model' });
  // The line names the version `latest` was when it ran.
  assert.match(trainingJobLine(done), /^7 {2}completed {2}cells@d0123456789ab {2}fast /);
  // …and, as `train --wait` does, how many epochs ran of how many, which one is published, and why it was (not) promoted.
  assert.match(trainingJobLine(done), /model m1 \(val accuracy 0\.9000, 3 of 30 epochs \(stopped early: the validation loss stopped improving; the best, epoch 2, is published\), attempt 2; promoted\)$/);
  const kept = trainingJobStatus({ ...job, returnvalue: { skipped: false, version: 'm2', valAccuracy: 0.9, epochs: 3, promoted: false, promotion: 'production m1 was promoted by hand' } } as unknown as Parameters<typeof trainingJobStatus>[0], 'completed');
  assert.match(trainingJobLine(kept), /; not promoted: production m1 was promoted by hand\)$/);
});

test("a training job waiting out its retry backoff is listed as retrying with the failed attempt's reason, never as scheduled for a time already past", () => {
  const scheduled = { id: 'repeat:abc:1', name: 'retrain', repeatJobKey: 'abc', data: { dataset: 'cells' }, timestamp: 1_700_000_000_000, delay: 3_600_000, attemptsMade: 0 };
  const next = trainingJobStatus(scheduled as unknown as Parameters<typeof trainingJobStatus>[0], 'delayed');
  assert.equal(next.dueAt, new Date(1_700_003_600_000).toISOString());
  assert.equal(next.failedReason, undefined);
  // BullMQ moves a failed attempt back to delayed with the backoff as its delay, the first queued time kept.
  const retry = trainingJobStatus({ ...scheduled, delay: 5000, attemptsMade: 1, failedReason: 'S3 GET datasets/cells failed' } as unknown as Parameters<typeof trainingJobStatus>[0], 'delayed');
  assert.deepEqual([retry.dueAt, retry.failedReason, retry.attemptsMade], [undefined, 'S3 GET datasets/cells failed', 1]);
  assert.match(trainingJobLine(next), / {2}scheduled for 2023-11-14 23:13:20 UTC$/);
  assert.match(trainingJobLine(retry), / {2}retrying soon: attempt 1 failed: S3 GET datasets\/cells failed$/);
  // Once it ran, it is said queued when it fell due (its id carries that time), not when the schedule was set.
  const ran = trainingJobStatus({ ...scheduled, id: 'repeat:abc:1700003600000', processedOn: 1_700_003_600_500 } as unknown as Parameters<typeof trainingJobStatus>[0], 'active');
  assert.deepEqual([ran.queuedAt, ran.origin], [new Date(1_700_003_600_000).toISOString(), 'schedule']);
});

test('a REDIS_URL that reaches some other server (an HTTP port) is said to be not Redis, within the timeout, never "Please report this"', async () => {
  const { createServer } = await import('node:http');
  const server = createServer((_req, res) => res.end('hello'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const t0 = Date.now();
  try {
    await assert.rejects(probeRedis(`redis://127.0.0.1:${port}`, 3000), (e: unknown) => {
      assert.equal((e as Error).message, `Redis at redis://127.0.0.1:${port} is unreachable: that port answers, but not as Redis (its reply began with "H": an HTTP server?): check REDIS_URL`);
      return true;
    });
    assert.ok(Date.now() - t0 < 3500, `${Date.now() - t0} ms`);
  } finally {
    server.close();
  }
});

test("a keyed submission's digest: outputs as a set, the model and a prefix's trailing slash aside — and the digest batches keyed before 2026-11-29 recorded still accepted", async () => {
  const { createHash } = await import('node:crypto');
  const { Fingerprint } = await import('../../packages/ingest/src/submit.ts');
  const { camOptionsSchema } = await import('@camflow/common');
  const digests = (outputs: string[], model: string | undefined, add: (f: InstanceType<typeof Fingerprint>) => void) => {
    const f = new Fingerprint(camOptionsSchema.parse({ outputs }), 64, model);
    add(f);
    return f.digests();
  };
  const files = (f: InstanceType<typeof Fingerprint>) => f.add('Parasitized/a.png', 'ab'.repeat(32));
  const a = digests(['json', 'overlay'], undefined, files);
  assert.equal(digests(['overlay', 'json'], 'm1', files).current, a.current, 'the same request: outputs in another order, the model named');
  assert.notEqual(digests(['json'], undefined, files).current, a.current);
  assert.equal(digests(['json'], undefined, (f) => f.addPrefix('s3://lab/2026/')).current, digests(['json'], undefined, (f) => f.addPrefix('s3://lab/2026')).current);
  // What a batch keyed before recorded: the options as given, the model as named, the URL as written.
  const old = (options: unknown, model: string | null, entry: string) => createHash('sha256').update(JSON.stringify({ options, chunkSize: 64, modelVersion: model })).update(entry).digest('hex');
  const pinned = digests(['overlay', 'json'], 'm1', files);
  assert.ok(pinned.accepted.includes(old(camOptionsSchema.parse({ outputs: ['overlay', 'json'] }), 'm1', `\nParasitized/a.png\0${'ab'.repeat(32)}`)));
  const prefix = digests(['json'], undefined, (f) => f.addPrefix('s3://lab/2026/'));
  assert.ok(prefix.accepted.includes(old(camOptionsSchema.parse({ outputs: ['json'] }), null, '\ns3-prefix\0s3://lab/2026/')));
});

test('train list is newest first by when each job joined the queue: a scheduled run when it fell due, not when BullMQ made it a day before', async () => {
  const { listTrainingJobs } = await import('@camflow/common');
  const day = 86_400_000;
  const t0 = Date.parse('2026-11-28T02:00:00Z');
  const jobs: Record<string, unknown[]> = {
    // Last night's run: created at t0 (when the run before it started), due and run at t0 + 1 day.
    completed: [
      { id: `repeat:nightly:${t0 + day}`, name: 'retrain', repeatJobKey: 'nightly', data: { dataset: 'cells' }, timestamp: t0, processedOn: t0 + day, finishedOn: t0 + day + 60_000, attemptsMade: 1, returnvalue: { skipped: true, reason: 'unchanged' } },
      // A run asked for at noon the day before.
      { id: '12', name: 'train', data: { dataset: 'cells' }, timestamp: t0 + day / 2 - 4 * 3_600_000, processedOn: t0 + day / 2, finishedOn: t0 + day / 2 + 60_000, attemptsMade: 1, returnvalue: { skipped: true, reason: 'unchanged' } },
    ],
  };
  const queue = { getJobs: async ([state]: string[]) => jobs[state!] ?? [] };
  const listed = await listTrainingJobs(queue as unknown as Parameters<typeof listTrainingJobs>[0]);
  assert.deepEqual(listed.map((j) => [j.jobId, j.queuedAt]), [[`repeat:nightly:${t0 + day}`, new Date(t0 + day).toISOString()], ['12', new Date(t0 + day / 2 - 4 * 3_600_000).toISOString()]]);
});
