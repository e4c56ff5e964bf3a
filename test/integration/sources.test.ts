import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, readFile, symlink, writeFile, link } from 'node:fs/promises';
import { join } from 'node:path';
import { createDeflate } from 'node:zlib';
import { once } from 'node:events';
import { isRefused, keys, manifestLineSchema, parseJsonLines, InvalidParameterError } from '@camflow/common';
import { collectEntries, openSource, submitBatch } from '@camflow/ingest';
import { readResults, waitForBatch } from '../../packages/cli/src/wait.ts';
import { eventually, publishUntrained, runCli, startCluster, syntheticFolder, type Cluster } from '../helpers/cluster.ts';

let c: Cluster;
let cells: string[];

before(async () => {
  c = await startCluster();
  await publishUntrained(c.ctx);
  cells = (await syntheticFolder(c.dir, 4, 51)).map((n) => join(c.dir, 'batch-51', n));
});

after(async () => {
  await c?.close();
});

const camflow = (args: string[], env: Record<string, string> = {}) => runCli(c, args, env);

const reasons = (entries: Awaited<ReturnType<typeof collectEntries>>) => Object.fromEntries(entries.map((e) => [e.name, 'refused' in e ? e.refused.reason : 'read']));

test('every entry of a folder gets exactly one line: dot-files, links inside and outside, fifos, non-UTF-8 names', async () => {
  const dir = join(c.dir, 'odd');
  await mkdir(join(dir, 'sub'), { recursive: true });
  await copyFile(cells[0]!, join(dir, 'img.png'));
  await copyFile(cells[1]!, join(dir, '.hidden.png'));
  await symlink(join(dir, 'img.png'), join(dir, 'link-inside.png'));
  await symlink(cells[2]!, join(dir, 'link-outside.png'));
  await symlink(join(dir, 'sub'), join(dir, 'link-to-sub'));
  await symlink(join(dir, 'gone.png'), join(dir, 'dangling.png'));
  await copyFile(cells[3]!, join(dir, 'sub', 'deep.png'));
  assert.equal(spawnSync('mkfifo', [join(dir, 'pipe.png')]).status, 0);
  await writeFile(Buffer.concat([Buffer.from(join(dir, 'caf')), Buffer.from([0xe9]), Buffer.from('.png')]), await readFile(cells[0]!));
  const entries = await collectEntries(await openSource(dir));
  assert.deepEqual(reasons(entries), {
    '.hidden.png': 'read',
    'caf\uFFFD.png': 'read',
    'dangling.png': 'broken-link',
    'img.png': 'read',
    'link-inside.png': 'read',
    'link-outside.png': 'outside-source',
    'link-to-sub': 'link-to-folder',
    'pipe.png': 'not-a-file',
    'sub/deep.png': 'read',
  });
  // Through a real submission: one manifest line per entry, refused ones with their reason.
  const info = await submitBatch({ store: c.ctx.store, flow: c.ctx.flow, redis: c.ctx.redis, prefix: 'camflow', source: dir, chunkSize: 4 });
  const lines = parseJsonLines((await c.ctx.store.get(keys.batchManifest(info.batchId))).toString('utf8'), manifestLineSchema, 'manifest');
  assert.equal(lines.length, 9);
  assert.deepEqual(lines.filter(isRefused).map((l) => l.reason).sort(), ['broken-link', 'link-to-folder', 'not-a-file', 'outside-source']);
  assert.ok(lines.filter(isRefused).every((l) => !l.error.includes(c.dir)), 'no server path in a reason');
});

test('an empty folder is refused, naming the source', async () => {
  const empty = join(c.dir, 'empty');
  await mkdir(empty, { recursive: true });
  await assert.rejects(submitBatch({ store: c.ctx.store, flow: c.ctx.flow, redis: c.ctx.redis, prefix: 'camflow', source: empty }), (e: unknown) => e instanceof InvalidParameterError && e.field === 'source' && /at least one file/.test(e.message));
  const out = await camflow(['submit', empty]);
  assert.equal(out.code, 2);
  assert.match(out.stderr, /source/);
});

test('tar members that are hard links are read from their target; symlinks, fifos and devices get a line with a reason', async () => {
  const staging = join(c.dir, 'tarred');
  await mkdir(staging, { recursive: true });
  await copyFile(cells[0]!, join(staging, 'a.png'));
  await link(join(staging, 'a.png'), join(staging, 'hard.png'));
  await symlink('a.png', join(staging, 'soft.png'));
  assert.equal(spawnSync('mkfifo', [join(staging, 'fifo')]).status, 0);
  const tarPath = join(c.dir, 'odd.tar');
  assert.equal(spawnSync('tar', ['-cf', tarPath, '-C', staging, 'a.png', 'hard.png', 'soft.png', 'fifo']).status, 0);
  const entries = await collectEntries(await openSource(tarPath));
  assert.deepEqual(reasons(entries), { 'a.png': 'read', 'hard.png': 'read', 'soft.png': 'symlink-member', fifo: 'not-a-file' });
  const hard = entries.find((e) => e.name === 'hard.png')!;
  assert.ok('read' in hard);
  assert.deepEqual(await hard.read(), await readFile(cells[0]!));
});

/** A valid RGB PNG of `width × height` black pixels, streamed to disk (its pixels are never all in memory). */
async function pixelBomb(path: string, width: number, height: number): Promise<void> {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf: Buffer) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const deflate = createDeflate({ level: 9 });
  const parts: Buffer[] = [];
  deflate.on('data', (d: Buffer) => parts.push(d));
  const row = Buffer.alloc(1 + width * 3);
  for (let y = 0; y < height; y++) if (!deflate.write(row)) await once(deflate, 'drain');
  deflate.end();
  await once(deflate, 'end');
  const out = createWriteStream(path);
  out.write(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  out.write(chunk('IHDR', ihdr));
  out.write(chunk('IDAT', Buffer.concat(parts)));
  out.write(chunk('IEND', Buffer.alloc(0)));
  out.end();
  await once(out, 'finish');
}

test('small files that would eat memory are refused without being expanded: a 16,000² PNG and a 1 GiB zip member; peak RSS measured', async () => {
  const dir = join(c.dir, 'bombs');
  await mkdir(dir, { recursive: true });
  await pixelBomb(join(dir, 'bomb.png'), 16_000, 16_000);
  await copyFile(cells[0]!, join(dir, 'cell.png'));
  const png = (await readFile(join(dir, 'bomb.png'))).length;
  assert.ok(png < 2_000_000, `the bomb is small on disk: ${png} bytes`);
  // A zip whose one member inflates to 1 GiB, plus a real cell.
  const zipPath = join(c.dir, 'bomb.zip');
  const py = `import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED)\nw=z.open('zeros.png','w',force_zip64=True)\nb=bytes(1<<20)\nfor _ in range(1024): w.write(b)\nw.close()\nz.write(sys.argv[2],'cell.png')\nz.close()`;
  assert.equal(spawnSync('python3', ['-c', py, zipPath, cells[0]!]).status, 0);
  for (const [source, bomb, reason] of [[dir, 'bomb.png', 'too-many-pixels'], [zipPath, 'zeros.png', 'file-too-large']] as const) {
    const out = await camflow(['submit', source, '--json', '--key', `bomb-${reason}`], { LOG_LEVEL: 'debug' });
    assert.equal(out.code, 0, out.stderr);
    const info = JSON.parse(out.stdout);
    assert.deepEqual([info.accepted, info.rejected], [1, 1]);
    const manifest = parseJsonLines((await c.ctx.store.get(keys.batchManifest(info.batchId))).toString('utf8'), manifestLineSchema, 'manifest');
    const refused = manifest.filter(isRefused);
    assert.deepEqual(refused.map((l) => [l.name, l.reason]), [[bomb, reason]]);
    const rss = Number(/"maxRssMB":(\d+)/.exec(out.stderr)?.[1]);
    assert.ok(rss > 0 && rss < 600, `submit peak RSS ${rss} MB`);
    console.log(`# ${bomb}: refused (${reason}); submit peak RSS ${rss} MB`);
  }
  // A worker with the same limit refuses the bomb from the header even if a submission let it through.
  const info = await submitBatch({ store: c.ctx.store, flow: c.ctx.flow, redis: c.ctx.redis, prefix: 'camflow', source: dir, maxPixels: 300_000_000, options: { outputs: ['json', 'overlay'] } });
  assert.equal(info.accepted, 2);
  const w = c.spawnWorker('cam', { LOG_LEVEL: 'info' });
  await waitForBatch(c.ctx, info.batchId, 120_000);
  const results = await readResults(c.ctx.store, info.batchId);
  const bomb = results.find((r) => r.name === 'bomb.png')!;
  assert.equal(bomb.status, 'failed');
  assert.equal(bomb.status === 'failed' && bomb.reason, 'too-many-pixels');
  assert.equal(results.find((r) => r.name === 'cell.png')!.status, 'ok');
  const log = await readFile(join(c.dir, 'worker-cam-0.log'), 'utf8');
  const rss = Math.max(...[...log.matchAll(/"maxRssMB":(\d+)/g)].map((m) => Number(m[1])));
  assert.ok(rss > 0 && rss < 900, `worker peak RSS ${rss} MB`);
  console.log(`# worker peak RSS with the bomb in its chunk: ${rss} MB`);
  w.kill('SIGTERM');
  await w.exited;
});

test('an S3 prefix of another S3-compatible store, with its own credentials: every object one line, streamed, deduplicated by content', async () => {
  const { startS3, ObjectStore, createLimiter } = await import('@camflow/common');
  const archive = await startS3({ bucket: 'lab-archive' });
  try {
    const lab = new ObjectStore({ bucket: 'lab-archive', endpoint: archive.endpoint, credentials: archive.credentials });
    await lab.ensureBucket();
    const [a, b, u] = await Promise.all([readFile(cells[0]!), readFile(cells[1]!), readFile(cells[2]!)]);
    await lab.put('slides/2026/Parasitized/a.png', a);
    await lab.put('slides/2026/Parasitized/b.png', b);
    await lab.put('slides/2026/Uninfected/u.png', u);
    await lab.put('slides/2026/Uninfected/u-copy.png', u); // same content, another name: its own line, one stored image
    await lab.put('slides/2026/notes.txt', 'not an image');
    await lab.put('slides/2026/empty/', ''); // a folder marker: not a file
    await lab.put('slides/2026/huge.png', Buffer.alloc(300_000, 1)); // over MAX_FILE_BYTES: refused from the listing
    await lab.put('slides/2025/other.png', a); // outside the prefix
    // The source store's endpoint and credentials are the ingest workers' own configuration (no secret in a job).
    const env = { SOURCE_S3_ENDPOINT: archive.endpoint, SOURCE_AWS_ACCESS_KEY_ID: archive.credentials.accessKeyId, SOURCE_AWS_SECRET_ACCESS_KEY: archive.credentials.secretAccessKey, MAX_FILE_BYTES: '200000' };
    const worker = c.spawnWorker('cam', env);
    const run = await camflow(['submit', 's3://lab-archive/slides/2026', '--wait', '--json'], env);
    assert.equal(run.code, 0, run.stderr);
    const status = JSON.parse(run.stdout.trim().split('\n').pop()!);
    const results = await readResults(c.ctx.store, status.batchId);
    const byName = Object.fromEntries(results.map((r) => [r.name, r.status === 'failed' ? r.reason : r.status]));
    assert.deepEqual(byName, {
      'Parasitized/a.png': 'ok',
      'Parasitized/b.png': 'ok',
      'Uninfected/u-copy.png': 'ok',
      'Uninfected/u.png': 'ok',
      'huge.png': 'file-too-large',
      'notes.txt': 'unsupported-format',
    });
    assert.equal(status.info.uniqueImages, 3, 'u.png and u-copy.png are one stored image');
    // A malformed URL is bad input (exit 2, the field named); a bucket that is not there is a failure that says so.
    const bad = await camflow(['submit', 's3://Bad_Bucket/x'], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /source/);
    const missing = await camflow(['submit', 's3://no-such-bucket/x'], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot list s3:\/\/no-such-bucket\/x/);
    // More than one listing page (1,000 keys): every object, in key order.
    const limit = createLimiter(32);
    await Promise.all(Array.from({ length: 1003 }, (_, i) => limit(() => lab.put(`many/${String(i).padStart(5, '0')}.txt`, 'x'))));
    const many = await collectEntries(await openSource('s3://lab-archive/many', undefined, { endpoint: archive.endpoint, credentials: archive.credentials }));
    assert.equal(many.length, 1003);
    assert.deepEqual([many[0]!.name, many[999]!.name, many[1000]!.name, many[1002]!.name], ['00000.txt', '00999.txt', '01000.txt', '01002.txt']);
    // Over HTTP: JSON {source: "s3://…"} (the same key is the same batch); a server path is never accepted.
    const token = 'sources-token-0123456789';
    const { buildApi } = await import('@camflow/ingest');
    const { connectProducer } = await import('@camflow/common');
    const apiRedis = await connectProducer(c.env.REDIS_URL!);
    const app = await buildApi({ config: { ...c.ctx.config, API_TOKEN: token, SOURCE_S3_ENDPOINT: archive.endpoint, SOURCE_AWS_ACCESS_KEY_ID: archive.credentials.accessKeyId, SOURCE_AWS_SECRET_ACCESS_KEY: archive.credentials.secretAccessKey, MAX_FILE_BYTES: 200_000 }, store: c.ctx.store, flow: c.ctx.flow, queues: c.ctx.queues, redis: apiRedis, log: c.ctx.log });
    try {
      const post = (body: unknown) => app.inject({ method: 'POST', url: '/v1/batches', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
      const http = await post({ source: 's3://lab-archive/slides/2026/Parasitized', key: 'http-s3' });
      assert.equal(http.statusCode, 202, http.body);
      const httpInfo = http.json() as { batchId: string; listing: { state: string } };
      assert.equal(httpInfo.listing.state, 'listing', 'answered at once: the ingest workers list the prefix');
      const done = await waitForBatch(c.ctx, httpInfo.batchId, 120_000);
      assert.equal(done.info?.accepted, 2);
      assert.equal(done.summary?.listing?.state, 'done');
      assert.deepEqual((await readResults(c.ctx.store, httpInfo.batchId)).map((r) => [r.name, r.status]), [['a.png', 'ok'], ['b.png', 'ok']]);
      // The same prefix with its trailing slash, and options as JSON's own types: the same batch (a prefix is a folder).
      const again = await post({ source: 's3://lab-archive/slides/2026/Parasitized/', key: 'http-s3', restrictToCell: true, outputs: ['json', 'overlay', 'heatmap'] });
      assert.equal(again.statusCode, 200, again.body);
      assert.deepEqual([(again.json() as { batchId: string }).batchId, again.headers.location], [httpInfo.batchId, `/v1/batches/${httpInfo.batchId}`]);
      const local = await post({ source: '/etc' });
      assert.equal(local.statusCode, 400);
      assert.match(local.body, /body\.source|source/);
    } finally {
      await app.close();
      await apiRedis.quit();
    }
    worker.kill('SIGTERM');
    await worker.exited;
    // Ingest workers that cannot read the source (wrong key): a refusal no retry can change ends the listing at its
    // first attempt, and `submit --wait` says so and exits 1 — the batch is complete but holds none of the prefix.
    const denied = c.spawnWorker('cam', { ...env, SOURCE_AWS_ACCESS_KEY_ID: 'NOT-A-KEY' });
    const t0 = Date.now();
    const refused = await camflow(['submit', 's3://lab-archive/slides/2026', '--wait', '--json', '--key', 'denied'], env);
    assert.equal(refused.code, 1, refused.stderr);
    const refusedStatus = JSON.parse(refused.stdout.trim().split('\n').pop()!);
    assert.equal(refusedStatus.summary.listing.state, 'failed');
    assert.match(refused.stderr, /^the listing of s3:\/\/lab-archive\/slides\/2026 failed at page 1 \(0 objects listed before it\): listing page 1 failed for good: cannot list s3:\/\/lab-archive\/slides\/2026: /m);
    assert.doesNotMatch(refusedStatus.summary.listing.reason, /after its retries/, 'not retried');
    assert.ok(Date.now() - t0 < 30_000, `${Date.now() - t0} ms`);
    denied.kill('SIGTERM');
    await denied.exited;
    // Ingest workers pointed at a store that does not answer: retried (it may come back), and `status` meanwhile
    // says which attempt failed and why, naming the setting — not a listing that seems not to have started.
    const astray = c.spawnWorker('cam', { ...env, SOURCE_S3_ENDPOINT: 'http://127.0.0.1:1' });
    const queued = await camflow(['submit', 's3://lab-archive/slides/2026', '--json', '--key', 'astray'], env);
    assert.equal(queued.code, 0, queued.stderr);
    const astrayId = JSON.parse(queued.stdout.trim().split('\n').pop()!).batchId as string;
    const said = await eventually('status to show the failed listing attempt', async () => {
      const st = await camflow(['status', astrayId], env);
      return /^listing page 1: attempt \d+ of \d+ failed/m.test(st.stdout) ? st.stdout : undefined;
    }, 60_000, 1000);
    assert.match(said, /, listing under way \(0 pages so far\), /);
    assert.match(said, /^listing page 1: attempt \d+ of \d+ failed \(cannot list s3:\/\/lab-archive\/slides\/2026: S3 at <endpoint> does not answer \(ECONNREFUSED\): check SOURCE_S3_ENDPOINT .*\); it is tried again$/m);
    assert.equal((await camflow(['batches', 'cancel', astrayId], env)).code, 0);
    astray.kill('SIGTERM');
    await astray.exited;
  } finally {
    await archive.stop();
  }
});

test('an S3 prefix is listed page by page by ingest jobs: the batch grows, and a killed ingest worker resumes where it stopped (every object exactly one line)', async () => {
  const { startS3, ObjectStore, createLimiter, batchInfoSchema, createRedis } = await import('@camflow/common');
  const archive = await startS3({ bucket: 'resume-archive' });
  try {
    const lab = new ObjectStore({ bucket: 'resume-archive', endpoint: archive.endpoint, credentials: archive.credentials });
    await lab.ensureBucket();
    const bytes = await Promise.all(cells.map((p) => readFile(p)));
    const names: string[] = [];
    const limit = createLimiter(16);
    await Promise.all(
      Array.from({ length: 61 }, (_, i) => {
        const name = i % 20 === 19 ? `run/${String(i).padStart(3, '0')}.txt` : `run/${String(i).padStart(3, '0')}.png`;
        names.push(name.slice('run/'.length));
        return limit(() => lab.put(name, i % 20 === 19 ? 'not an image' : bytes[i % bytes.length]!));
      }),
    );
    const env = { SOURCE_S3_ENDPOINT: archive.endpoint, SOURCE_AWS_ACCESS_KEY_ID: archive.credentials.accessKeyId, SOURCE_AWS_SECRET_ACCESS_KEY: archive.credentials.secretAccessKey, SOURCE_S3_PAGE_SIZE: '2' };
    // 31 pages of 2 keys. No chunk worker runs until the kill, and the lister may run only 3 chunks ahead of the
    // workers, so the kill below lands mid-listing however fast this machine lists (CI once saw the whole listing
    // finish between two polls).
    const lister = c.spawnWorker('ingest', { ...env, INGEST_CONCURRENCY: '1', INGEST_AHEAD_CHUNKS: '3' });
    const submitted = await camflow(['submit', 's3://resume-archive/run', '--chunk-size', '3', '--json'], env);
    assert.equal(submitted.code, 0, submitted.stderr);
    const { batchId } = JSON.parse(submitted.stdout) as { batchId: string };
    const info = async () => batchInfoSchema.parse(await c.ctx.store.getJson(keys.batchInfo(batchId)));
    // The batch grows as pages are listed: seen with some pages listed and more to come.
    const growing = await eventually('two pages listed', async () => {
      const i = await info();
      return i.listing!.pages >= 2 ? i : undefined;
    }, 120_000, 20);
    lister.kill('SIGKILL');
    await lister.exited;
    const atKill = await info();
    assert.equal(atKill.listing!.state, 'listing', 'killed mid-listing');
    assert.ok(growing.items > 0 && growing.items < names.length, `batch.json counted ${growing.items} of ${names.length} entries while listing`);
    // Another ingest worker takes the page over (the killed one's job stalls and is retried, or its delayed page
    // comes due) and finishes the listing once the chunk workers run.
    const pool = [c.spawnWorker('chunks', env), c.spawnWorker('finalizer', env)];
    const resumed = c.spawnWorker('ingest', env);
    const status = await waitForBatch(c.ctx, batchId, 300_000);
    assert.equal(status.state, 'completed');
    const results = await readResults(c.ctx.store, batchId);
    assert.deepEqual(results.map((r) => r.name), names, 'every object once, in key order');
    assert.deepEqual(results.map((r) => r.imageId), names.map((_, i) => `i${String(i).padStart(7, '0')}`));
    assert.equal(results.filter((r) => r.status === 'ok').length, 58);
    assert.ok(results.filter((r) => r.status === 'failed').every((r) => r.status === 'failed' && r.reason === 'unsupported-format'));
    const final = await info();
    assert.deepEqual([final.listing!.state, final.listing!.pages, final.items, final.accepted, final.rejected], ['done', 31, 61, 58, 3]);
    assert.equal(status.summary?.listing?.state, 'done');
    // A Redis that loses everything mid-listing: the checkpoint is in S3 (the pages listed, the last key), so
    // `batches repair` re-creates the next page's job and the unfinished chunks, and the listing goes on from there.
    // Held mid-listing the same way as above: no chunk worker, a lister 3 chunks ahead at most.
    for (const w of [resumed, ...pool]) w.kill('SIGTERM');
    await Promise.all([resumed, ...pool].map((w) => w.exited));
    const holder = c.spawnWorker('ingest', { ...env, INGEST_AHEAD_CHUNKS: '3' });
    const lost = await camflow(['submit', 's3://resume-archive/run', '--chunk-size', '3', '--json'], env);
    const lostId = (JSON.parse(lost.stdout) as { batchId: string }).batchId;
    const lostInfo = async () => batchInfoSchema.parse(await c.ctx.store.getJson(keys.batchInfo(lostId)));
    await eventually('a page listed', async () => ((await lostInfo()).listing!.pages >= 1 ? true : undefined), 120_000, 20);
    holder.kill('SIGKILL');
    await holder.exited;
    const admin = createRedis(c.env.REDIS_URL!);
    await admin.flushall();
    await admin.quit();
    assert.equal((await lostInfo()).listing!.state, 'listing');
    const repaired = await camflow(['batches', 'repair', lostId, '--json'], env);
    assert.equal(repaired.code, 0, repaired.stderr);
    assert.equal((JSON.parse(repaired.stdout) as { action: string }).action, 'requeued');
    pool.splice(0, pool.length, c.spawnWorker('chunks', env), c.spawnWorker('finalizer', env));
    const relister = c.spawnWorker('ingest', env);
    await waitForBatch(c.ctx, lostId, 300_000);
    assert.deepEqual((await readResults(c.ctx.store, lostId)).map((r) => r.name), names, 'after the repair: every object once, in key order');
    relister.kill('SIGTERM');
    await relister.exited;
    // The same key again is the same batch, and nothing is read to find out.
    const again = await camflow(['submit', 's3://resume-archive/run', '--chunk-size', '3', '--key', 'resume', '--json'], env);
    const first = JSON.parse(again.stdout) as { batchId: string };
    const repeat = await camflow(['submit', 's3://resume-archive/run', '--chunk-size', '3', '--key', 'resume', '--json'], env);
    assert.equal((JSON.parse(repeat.stdout) as { batchId: string; existing: boolean }).batchId, first.batchId);
    const lister3 = c.spawnWorker('ingest', env);
    await waitForBatch(c.ctx, first.batchId, 300_000);
    for (const w of [...pool, lister3]) w.kill('SIGTERM');
    await Promise.all([...pool, lister3].map((w) => w.exited));
  } finally {
    await archive.stop();
  }
});

test('a listing runs at most INGEST_AHEAD_CHUNKS unfinished chunks ahead of the workers, then goes on as they catch up; a cancelled batch ends its listing', async () => {
  const { startS3, ObjectStore, batchInfoSchema } = await import('@camflow/common');
  const archive = await startS3({ bucket: 'ahead-archive' });
  try {
    const lab = new ObjectStore({ bucket: 'ahead-archive', endpoint: archive.endpoint, credentials: archive.credentials });
    await lab.ensureBucket();
    const png = await readFile(cells[0]!);
    for (let i = 0; i < 12; i++) await lab.put(`p/${String(i).padStart(2, '0')}.png`, png);
    const env = { SOURCE_S3_ENDPOINT: archive.endpoint, SOURCE_AWS_ACCESS_KEY_ID: archive.credentials.accessKeyId, SOURCE_AWS_SECRET_ACCESS_KEY: archive.credentials.secretAccessKey, SOURCE_S3_PAGE_SIZE: '2', INGEST_AHEAD_CHUNKS: '3' };
    const lister = c.spawnWorker('ingest', env);
    const submitted = await camflow(['submit', 's3://ahead-archive/p', '--chunk-size', '1', '--json'], env);
    assert.equal(submitted.code, 0, submitted.stderr);
    const { batchId } = JSON.parse(submitted.stdout) as { batchId: string };
    const info = async () => batchInfoSchema.parse(await c.ctx.store.getJson(keys.batchInfo(batchId)));
    // No chunk worker yet: the listing stops once more than 3 chunks wait (2 pages of 2), and stays there.
    await eventually('two pages listed', async () => ((await info()).listing!.pages >= 2 ? true : undefined), 60_000, 50);
    await new Promise((r) => setTimeout(r, 8000));
    const held = await info();
    assert.equal(held.listing!.state, 'listing');
    assert.equal(held.listing!.pages, 2, `pages listed while no worker ran: ${held.listing!.pages}`);
    // A second batch of the same prefix, cancelled while its listing waits: the listing ends at the next page, every
    // object listed until then gets its one line (cancelled), and the summary says how the listing ended.
    const second = await camflow(['submit', 's3://ahead-archive/p', '--chunk-size', '1', '--json'], env);
    const secondId = (JSON.parse(second.stdout) as { batchId: string }).batchId;
    await eventually('the second batch listed a page', async () => ((batchInfoSchema.parse(await c.ctx.store.getJson(keys.batchInfo(secondId)))).listing!.pages >= 1 ? true : undefined), 60_000, 50);
    const cancelled = await camflow(['batches', 'cancel', secondId, '--json'], env);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    const pool = [c.spawnWorker('chunks', env), c.spawnWorker('finalizer', env)];
    const status = await waitForBatch(c.ctx, batchId, 300_000);
    assert.equal(status.info?.listing?.pages, 6);
    const secondStatus = await waitForBatch(c.ctx, secondId, 300_000);
    assert.equal(secondStatus.summary?.listing?.state, 'cancelled');
    const secondLines = await readResults(c.ctx.store, secondId);
    assert.ok(secondLines.length >= 2 && secondLines.length < 12, `${secondLines.length} objects listed before the cancellation`);
    assert.deepEqual(secondLines.map((r) => r.name), Array.from({ length: secondLines.length }, (_, i) => `${String(i).padStart(2, '0')}.png`));
    assert.ok(secondLines.every((r) => r.status === 'failed' && r.reason === 'cancelled'), JSON.stringify(secondLines.map((r) => r.status)));
    assert.deepEqual((await readResults(c.ctx.store, batchId)).map((r) => [r.name, r.status]), Array.from({ length: 12 }, (_, i) => [`${String(i).padStart(2, '0')}.png`, 'ok']));
    for (const w of [lister, ...pool]) w.kill('SIGTERM');
    await Promise.all([lister, ...pool].map((w) => w.exited));
  } finally {
    await archive.stop();
  }
});
