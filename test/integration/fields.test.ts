import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { createRng, encodePng, manifestLineSchema, parseJsonLines, fieldDocumentSchema, generateCell, generateField, iou, isCellResult, keys, scoreDetections, smallFieldWarning, type FieldResult } from '@camflow/common';
import { readResults } from '../../packages/cli/src/wait.ts';
import { batchStatus, buildApi, submitBatch } from '@camflow/ingest';
import { connectProducer } from '@camflow/common';
import { publishUntrained, runCli, startCluster, type Cluster } from '../helpers/cluster.ts';
import { launchChromium } from '../helpers/browser.ts';

// Browser-side callbacks (page.evaluate) run in Chromium; they are typed loosely here (no DOM lib in the tests).
declare const document: any, window: any; // eslint-disable-line @typescript-eslint/no-explicit-any

let c: Cluster;
let batchId: string;
let field: ReturnType<typeof generateField>;

before(async () => {
  // 8 cells per part: the field's ~40 cells go over the pool as several `field-cells` jobs. The queue prefix is a
  // Redis Cluster hash tag, as the README advises there: flows name their parents and children with it.
  c = await startCluster({ FIELD_CELLS_PER_JOB: '8', QUEUE_PREFIX: '{camflow}' });
  // With a screening operating point, as the trainer publishes every model.
  await publishUntrained(c.ctx, 'm-untrained', 1, { positiveClass: 'Parasitized', threshold: 0.05, targetRecall: 0.98, validation: { images: 100, recall: 0.98, specificity: 0.6 } });
  const folder = join(c.dir, 'smears');
  await mkdir(folder, { recursive: true });
  // A field (no eyepiece window, 40 cells attempted) next to two cell crops: `kind: auto` tells them apart.
  field = generateField(4, { width: 1400, height: 1000, cells: 40, fov: false });
  await writeFile(join(folder, 'field.png'), await encodePng(field.rgb, field.width, field.height));
  const rng = createRng(9);
  for (const name of ['cell-a.png', 'cell-b.png']) {
    const cell = generateCell(rng, 'Parasitized');
    await writeFile(join(folder, name), await encodePng(cell.rgb, cell.width, cell.height));
  }
  c.spawnWorker('cam');
  const run = await runCli(c, ['submit', folder, '--wait', '--json']);
  assert.equal(run.code, 0, run.stderr);
  batchId = JSON.parse(run.stdout.trim().split('\n').pop()!).batchId as string;
});

after(async () => {
  await c?.close();
});

test('a smear field submitted with the defaults is read as a field: cells found, each classified and localized, parasitemia, field.json and QuPath GeoJSON', async () => {
    const results = await readResults(c.ctx.store, batchId);
    assert.equal(results.length, 3, 'one line per submitted file');
    const cells = results.filter(isCellResult);
    assert.deepEqual(cells.map((r) => r.name).sort(), ['cell-a.png', 'cell-b.png']);
    // Cell crops carry the model's screening call; a field's cells do not (the threshold is chosen on crops).
    for (const r of cells) assert.equal(r.screen?.threshold, 0.05, r.name);
    const line = results.find((r) => r.name === 'field.png') as FieldResult;
    assert.equal(line.status, 'ok');
    assert.equal(line.kind, 'field', 'a 1400×1000 image is a field under kind auto');

    const raw = JSON.parse((await c.ctx.store.get(line.outputs.field)).toString('utf8'));
    assert.ok(raw.cells.length > 0 && raw.cells.every((x: object) => !('screen' in x)), 'no screening call on field cells');
    assert.ok(!('screenPositive' in raw.summary) && !('screenPositive' in line.field));
    const doc = fieldDocumentSchema.parse(raw);
    const s = doc.summary;
    assert.deepEqual(s, line.field, 'the result line carries the field summary');
    assert.equal(doc.cells.length, s.cells);
    // The cells found are the field's cells (boxes in field pixels).
    const score = scoreDetections(doc.cells.map((x) => x.box), field.cells.map((x) => ({ box: x.box, ignore: x.visible < 0.5 })));
    assert.ok(score.recall >= 0.9 && score.precision >= 0.9, JSON.stringify(score));
    // Parasitemia: counted (uncut) cells predicted as the positive class, with a Wilson interval around it.
    const counted = doc.cells.filter((x) => !x.clipped);
    assert.equal(s.counted, counted.length);
    assert.equal(s.infected, counted.filter((x) => x.predicted.label === s.positiveClass).length);
    assert.equal(s.parasitemia, s.counted ? s.infected / s.counted : 0);
    assert.ok(s.interval[0] <= s.parasitemia && s.parasitemia <= s.interval[1]);
    // Each cell's CAM peak and parasite box lie in that cell, in field coordinates.
    for (const x of doc.cells) {
      const inBox = (p: { x: number; y: number }) => p.x >= x.box.x && p.x <= x.box.x + x.box.width && p.y >= x.box.y && p.y <= x.box.y + x.box.height;
      assert.ok(inBox(x.peak), `peak of cell ${x.cell}`);
      if (x.parasiteBox) assert.ok(iou(x.parasiteBox, x.box) > 0 && inBox(x.parasiteBox), `parasite box of cell ${x.cell}`);
      const pSum = Object.values(x.probabilities).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(pSum - 1) < 1e-4);
    }
    // QuPath GeoJSON: one polygon detection per cell (closed ring), one per parasite box of a positive cell.
    const geo = JSON.parse((await c.ctx.store.get(line.outputs.geojson)).toString('utf8')) as { type: string; features: { geometry: { type: string; coordinates: number[][][] }; properties: { objectType: string; classification: { name: string; color: number[] } } }[] };
    assert.equal(geo.type, 'FeatureCollection');
    const cellFeatures = geo.features.filter((f) => f.properties.classification.name !== 'Parasite');
    const parasiteFeatures = geo.features.filter((f) => f.properties.classification.name === 'Parasite');
    assert.equal(cellFeatures.length, doc.cells.length);
    assert.equal(parasiteFeatures.length, doc.cells.filter((x) => x.parasiteBox && x.predicted.label === s.positiveClass).length);
    for (const f of geo.features) {
      assert.equal(f.geometry.type, 'Polygon');
      assert.equal(f.properties.objectType, 'detection');
      const ring = f.geometry.coordinates[0]!;
      assert.ok(ring.length >= 4);
      assert.deepEqual(ring[0], ring[ring.length - 1], 'closed ring');
      assert.equal(f.properties.classification.color.length, 3);
    }
  assert.ok(line.outputs.overlay && (await c.ctx.store.exists(line.outputs.overlay)), 'the field overlay is written');
    // Deep Zoom pyramids of the field and of its stitched heatmap, same size, tiles beside each descriptor.
    for (const key of [line.outputs.fieldDzi!, line.outputs.heatmapDzi!]) {
      const dzi = (await c.ctx.store.get(key)).toString('utf8');
      assert.match(dzi, new RegExp(`Height="${field.height}"`));
      assert.match(dzi, new RegExp(`Width="${field.width}"`));
      const tiles = (await c.ctx.store.list(key.replace(/\.dzi$/, '_files/'))).length;
      // Levels 0…11 for 1400×1000 at 256-px tiles: 6×4 tiles at full size, 3×2, 2×1, then 1 each.
      assert.ok(tiles >= 6 * 4 + 3 * 2 + 2 + 9, `${tiles} tiles under ${key}`);
    }
});

test('QUEUE_PREFIX={camflow} (a hash tag): every queue key carries it, and the flows above ran under it', async () => {
  const all = await c.ctx.redis.keys('*');
  assert.ok(all.some((k) => k.startsWith('{camflow}:cam:')) && all.some((k) => k.startsWith('{camflow}:batch:')), all.slice(0, 20).join(' '));
  assert.deepEqual(all.filter((k) => !k.startsWith('{camflow}:')), [], 'no key outside the prefix');
});

test('`camflow download` copies the batch to a folder: each key of the result lines is a file there, byte for byte; a second run keeps what is there; --only picks kinds', async () => {
  const out = join(c.dir, 'download');
  const prefix = keys.resultPrefix(batchId);
  const first = await runCli(c, ['download', batchId, '--out', out, '--json']);
  assert.equal(first.code, 0, first.stderr);
  const report = JSON.parse(first.stdout) as { batchId: string; out: string; files: number; bytes: number; kept: number; skipped: number };
  // Everything stored for the batch but the workers' chunk records (results.jsonl holds their lines).
  const stored = (await c.ctx.store.list(prefix)).filter((o) => !o.key.startsWith(`${prefix}chunks/`));
  // …and results.csv beside them: the lines as a spreadsheet, its *_file columns paths in this folder.
  const csv = await readFile(join(out, 'results.csv'), 'utf8');
  assert.equal(csv, (await runCli(c, ['results', batchId, '--format', 'csv'])).stdout);
  assert.deepEqual([report.batchId, report.out, report.files, report.kept, report.skipped], [batchId, out, stored.length + 1, 0, 0]);
  assert.equal(report.bytes, stored.reduce((sum, o) => sum + o.size, 0) + Buffer.byteLength(csv));
  const files = async () => (await readdir(out, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name).slice(out.length + 1)).sort();
  assert.deepEqual(await files(), [...stored.map((o) => o.key.slice(prefix.length)), 'results.csv'].sort(), 'no chunk record, no .part file left');
  const header = csv.split('\r\n')[0]!.split(',');
  for (const row of csv.trimEnd().split('\r\n').slice(1)) {
    const cells = row.split(',');
    for (const column of ['overlay_file', 'heatmap_file', 'json_file', 'geojson_file']) {
      const path = cells[header.indexOf(column)];
      if (path) assert.ok((await readFile(join(out, path))).length > 0, `${column} ${path} is a file in the folder`);
    }
  }
  const results = await readResults(c.ctx.store, batchId);
  const outputs = results.flatMap((r) => (r.status === 'ok' ? Object.values(r.outputs).filter((k): k is string => typeof k === 'string') : []));
  assert.ok(outputs.some((k) => k.endsWith('.overlay.png')) && outputs.some((k) => k.endsWith('.dzi')) && outputs.some((k) => k.endsWith('.geojson')), outputs.join(' '));
  for (const key of [...outputs, keys.resultsJsonl(batchId)]) {
    assert.ok((await readFile(join(out, key.slice(prefix.length)))).equals(await c.ctx.store.get(key)), `${key} byte for byte`);
  }
  // Run again (after Ctrl-C, say): what a copy left is kept; a file cut short, or changed since at the same size, is
  // copied again; a killed copy's .part file is removed. A "folder" object (an S3 console's marker) is skipped with a
  // warning, never made a file.
  await writeFile(join(out, 'fields', 'left-by-kill-9.json.2147483646-0a1b2c3d.part'), '{"half":');
  // …but only camflow's own, where a batch's files go: the user's files are theirs.
  await mkdir(join(out, 'mine'), { recursive: true });
  await writeFile(join(out, 'mine', 'scan.json.2147483646-0a1b2c3d.part'), 'mine');
  await writeFile(join(out, 'notes.12345.part'), 'mine');
  const summaryBytes = stored.find((o) => o.key === keys.resultsSummary(batchId))!.size;
  await writeFile(join(out, 'summary.json'), '{');
  await writeFile(join(out, 'results.jsonl'), 'x'.repeat(stored.find((o) => o.key === keys.resultsJsonl(batchId))!.size));
  await c.ctx.store.put(`${prefix}fields/`, '');
  const again = await runCli(c, ['download', batchId, '--out', out]);
  assert.equal(again.code, 0, again.stderr);
  const jsonlBytes = stored.find((o) => o.key === keys.resultsJsonl(batchId))!.size;
  assert.equal(again.stdout, `downloaded 3 files (${((summaryBytes + jsonlBytes + Buffer.byteLength(csv)) / 1e6).toFixed(1)} MB), ${stored.length - 2} already there, 1 skipped to ${out}\n`);
  assert.deepEqual(await files(), [...stored.map((o) => o.key.slice(prefix.length)), 'results.csv', 'mine/scan.json.2147483646-0a1b2c3d.part', 'notes.12345.part'].sort(), 'the stale .part removed, the user\'s files kept');
  assert.equal(again.stderr, `warning: ${prefix}fields/ not downloaded: a folder marker, not a file\n`);
  for (const key of [keys.resultsSummary(batchId), keys.resultsJsonl(batchId)]) assert.ok((await readFile(join(out, key.slice(prefix.length)))).equals(await c.ctx.store.get(key)), key);
  await c.ctx.store.deleteMany([`${prefix}fields/`]);
  // --only: the fields' answers and GeoJSON, for QuPath, without the tiles.
  const fieldsOnly = join(c.dir, 'download-fields');
  const picked = await runCli(c, ['download', batchId, '--out', fieldsOnly, '--only', 'fields', '--json']);
  assert.equal(picked.code, 0, picked.stderr);
  const field = results.find((r) => r.name === 'field.png')!;
  assert.deepEqual((await readdir(join(fieldsOnly, 'fields', field.imageId))).sort(), ['cells.geojson', 'field.json']);
  assert.deepEqual(await readdir(fieldsOnly), ['fields'], 'no results.csv unless results are asked for');
  // Asked wrong: the flag is named with the kinds (before anything is contacted); an unknown batch is named.
  const bad = await runCli(c, ['download', batchId, '--only', 'tile', '--out', join(c.dir, 'never')]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /did you mean "tiles"\?\) for --only but received "tile"/);
  const none = await runCli(c, ['download', 'nosuchbatch', '--out', join(c.dir, 'never')]);
  assert.deepEqual([none.code, none.stderr.trim()], [1, 'batch not found: nosuchbatch']);
  await assert.rejects(readdir(join(c.dir, 'never')), /ENOENT/, 'nothing made for a refused download');
  const onFile = await runCli(c, ['download', batchId, '--out', join(out, 'summary.json')]);
  assert.deepEqual([onFile.code, onFile.stderr.trim()], [2, `Expected a folder (made when missing) for --out but received "${join(out, 'summary.json')} (a file)"`]);
});

test('a single cell photographed larger, read as a field by its size under `auto`, carries a warning saying to submit it with --kind cells; with it, it is a cell', async () => {
  const cell = generateCell(createRng(77), 'Parasitized');
  const big = await sharp(Buffer.from(cell.rgb), { raw: { width: cell.width, height: cell.height, channels: 3 } }).resize(560, 560, { kernel: 'cubic' }).png().toBuffer();
  await mkdir(join(c.dir, 'big'), { recursive: true });
  await writeFile(join(c.dir, 'big', 'big-cell.png'), big);
  const run = await runCli(c, ['submit', join(c.dir, 'big', 'big-cell.png'), '--wait']);
  assert.equal(run.code, 0, run.stderr);
  const id = /batch (\S+) completed/.exec(run.stdout)![1]!;
  const [line] = await readResults(c.ctx.store, id);
  assert.ok(line && line.status === 'ok' && line.kind === 'field', JSON.stringify(line));
  const f = (line as FieldResult).field;
  assert.ok(f.counted < 10, `${f.counted} cells counted`);
  assert.equal(f.warning, smallFieldWarning('auto', 560, 560, f.counted));
  assert.ok(run.stdout.includes(`warning: ${f.warning}`), run.stdout);
  const asCell = await runCli(c, ['submit', join(c.dir, 'big', 'big-cell.png'), '--kind', 'cells', '--wait', '--json']);
  assert.equal(asCell.code, 0, asCell.stderr);
  const [cellLine] = await readResults(c.ctx.store, JSON.parse(asCell.stdout.trim().split('\n').pop()!).batchId);
  assert.deepEqual([cellLine!.status, cellLine!.status === 'ok' && cellLine!.kind], ['ok', 'cell']);
});

test('one image is a batch of one: `submit field.png --wait` reads it as a field and prints its parasitemia; the summary pools the fields', async () => {
  const run = await runCli(c, ['submit', join(c.dir, 'smears', 'field.png'), '--wait']);
  assert.equal(run.code, 0, run.stderr);
  const id = /batch (\S+) completed/.exec(run.stdout)![1]!;
  const [line] = (await readResults(c.ctx.store, id)) as FieldResult[];
  assert.equal(line!.name, 'field.png');
  assert.equal(line!.kind, 'field');
  const s = line!.field;
  const summary = await c.ctx.store.getJson<{ fields: { images: number; cells: number; counted: number; infected: number; parasitemia: number; interval: [number, number] } }>(keys.resultsSummary(id));
  assert.deepEqual(summary.fields, {
    images: 1,
    positiveClass: s.positiveClass,
    cells: s.cells,
    counted: s.counted,
    infected: s.infected,
    parasitemia: s.parasitemia,
    interval: s.interval,
    range: [s.parasitemia, s.parasitemia],
    each: [{ name: 'field.png', counted: s.counted, infected: s.infected, parasitemia: s.parasitemia }],
  });
  assert.match(run.stdout, new RegExp(`1 field: ${s.infected} of ${s.counted} counted cells ${s.positiveClass}, parasitemia ${(s.parasitemia * 100).toFixed(1)} %`));
  // `status` of the finished batch says the same in sentences, not a JSON dump.
  const status = await runCli(c, ['status', id]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`^${id}: completed, images 1/1, chunks 1/1\\n1 file: 1 localized \\(.+\\); model \\S+; completed \\S+\\n(screening: .*\\n)?1 field: ${s.infected} of ${s.counted} counted cells`));
  assert.doesNotMatch(status.stdout, /[{}]/);
  // The first batch (a field beside two cell crops): the fields' cells are pooled, the crops are not.
  const first = await c.ctx.store.getJson<{ fields: { images: number; counted: number } }>(keys.resultsSummary(batchId));
  assert.deepEqual([first.fields.images, first.fields.counted], [1, s.counted]);
});

test("a field's cells go over the worker pool as `field-cells` jobs of the cam queue, the chunk waiting for them; their working objects are removed after the commit", async () => {
  const results = await readResults(c.ctx.store, batchId);
  const line = results.find((r) => r.name === 'field.png') as FieldResult;
  const doc = fieldDocumentSchema.parse(JSON.parse((await c.ctx.store.get(line.outputs.field)).toString('utf8')));
  const parts = (await c.ctx.queues.cam.getJobs(['completed'])).filter((j) => j.name === 'field-cells' && j.data.batchId === batchId);
  assert.equal(parts.length, Math.ceil(doc.cells.length / 8), `${doc.cells.length} cells in parts of 8 (FIELD_CELLS_PER_JOB)`);
  const localized = parts.flatMap((j) => (j.data.cells as { cell: number }[]).map((x) => x.cell)).sort((a, b) => a - b);
  assert.deepEqual(localized, doc.cells.map((x) => x.cell), 'every cell in exactly one part');
  // Each part is a child of the chunk that holds the field.
  for (const j of parts) assert.match(j.parentKey ?? '', /:cam:.*-c0$/);
  assert.deepEqual(await c.ctx.store.list(`batches/${batchId}/fields/`), [], 'plans, part inputs and part results removed');
  assert.deepEqual(await c.ctx.store.list(`batches/${batchId}/pending/`), [], 'the chunk\'s kept cell lines removed');
});

test("while a field's cells are out, `status` counts their groups: a whole-slide scan is one image for minutes, its groups move", async () => {
  const folder = join(c.dir, 'one-field');
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'field.png'), await encodePng(field.rgb, field.width, field.height));
  const info = await submitBatch({ store: c.ctx.store, flow: c.ctx.flow, redis: c.ctx.redis, prefix: c.ctx.config.QUEUE_PREFIX, source: folder, options: { outputs: ['json'] } });
  const seen: { done: number; total: number }[] = [];
  for (let status = await batchStatus(c.ctx.store, c.ctx.queues.batch, info.batchId, c.ctx.queues); status.state === 'running'; status = await batchStatus(c.ctx.store, c.ctx.queues.batch, info.batchId, c.ctx.queues)) {
    if (status.fieldParts) seen.push(status.fieldParts);
    await new Promise((r) => setTimeout(r, 10));
  }
  const doc = fieldDocumentSchema.parse(await c.ctx.store.getJson(((await readResults(c.ctx.store, info.batchId))[0] as FieldResult).outputs.field));
  const groups = Math.ceil(doc.cells.length / 8);
  assert.ok(seen.length > 0, 'the groups were seen while the field ran');
  // The groups are added in one pipeline (not atomically): a poll may see some of them, never more.
  assert.ok(seen.every((p) => p.total <= groups && p.done <= p.total), `${groups} groups of 8 cells: ${JSON.stringify(seen)}`);
  assert.ok(seen.some((p) => p.total === groups && p.done < p.total), JSON.stringify(seen));
});

test('the viewer, in a real browser: sign in with the token, the batch list and page, and the field over Deep Zoom with its cells, parasite boxes and heatmap', async () => {
  const token = 'viewer-token-0123456789abcdef';
  const apiRedis = await connectProducer(c.env.REDIS_URL!);
  const app = await buildApi({ config: { ...c.ctx.config, API_TOKEN: token }, store: c.ctx.store, flow: c.ctx.flow, queues: c.ctx.queues, redis: apiRedis, log: c.ctx.log });
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  try {
    browser = await launchChromium();
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    // Without the token: no data, over HTTP or in the viewer.
    assert.equal((await fetch(`${base}/v1/batches/${batchId}/files/results.jsonl`)).status, 401);
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    page.on('pageerror', (e) => problems.push(`page error: ${(e as Error).message}`));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
    page.on('response', (r) => r.status() >= 400 && problems.push(`HTTP ${r.status()}: ${r.url()}`));
    await page.goto(`${base}/viewer`);
    assert.match(page.url(), /\/login\?next=/, 'the viewer asks for the token first');
    await page.type('input[name=token]', 'wrong');
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    assert.match(await page.content(), /not the API token/);
    problems.length = 0; // the 401 of the wrong token is expected
    await page.type('input[name=token]', token);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    const cookies = await browser.cookies();
    assert.ok(cookies.some((k) => k.name === 'camflow_token' && k.httpOnly), 'the session is an HttpOnly cookie');
    // A mistyped batch in the address bar: a page saying so, with the way back (not the API's JSON).
    const missing = await page.goto(`${base}/viewer/batches/nosuchbatch`);
    assert.equal(missing?.status(), 404);
    assert.equal(await page.$eval('p.bad', (e) => e.textContent), 'batch not found: nosuchbatch');
    problems.length = 0; // that 404 was asked for
    await page.goto(`${base}/viewer`);
    // Batch list → batch page.
    assert.ok(await page.$(`a[href="/viewer/batches/${batchId}"]`), 'the batch is listed');
    assert.equal(await page.$eval(`a[href="/viewer/batches/${batchId}"]`, (a) => a.closest('tr')!.querySelector('td.source')!.textContent), 'smears', 'with the name of the folder submitted');
    await Promise.all([page.waitForNavigation(), page.click(`a[href="/viewer/batches/${batchId}"]`)]);
    assert.equal(await page.$$eval('figure.cell', (f) => f.length), 2, 'two cell overlays in the gallery');
    await page.waitForFunction(() => [...document.querySelectorAll('figure.cell img')].every((i) => (i as any).complete && (i as any).naturalWidth > 0));
    // Filters: a probability above every cell's hides them all.
    await page.$eval('#minp', (el) => {
      (el as any).value = '1';
      el.dispatchEvent(new Event('input'));
    });
    assert.equal(await page.$$eval('figure.cell', (f) => f.filter((x) => (x as any).style.display !== 'none').length), 0);
    // Field page: OpenSeadragon, one outline per cell, one box per parasite, the heatmap layer toggles.
    const results = await readResults(c.ctx.store, batchId);
    const line = results.find((r) => r.name === 'field.png') as FieldResult;
    const doc = fieldDocumentSchema.parse(JSON.parse((await c.ctx.store.get(line.outputs.field)).toString('utf8')));
    await Promise.all([page.waitForNavigation(), page.click(`#fields a`)]);
    await page.waitForFunction(() => (window as unknown as { camflow?: { ready: boolean } }).camflow?.ready === true, { timeout: 30_000 });
    assert.equal(await page.$$eval('#cells polygon.cell', (p) => p.length), doc.cells.length);
    assert.equal(await page.$$eval('#cells rect.parasite', (p) => p.length), doc.cells.filter((x) => x.parasiteBox && x.predicted.label === doc.summary.positiveClass).length);
    assert.match(await page.$eval('#parasitemia', (e) => e.textContent ?? ''), /parasitemia \d+\.\d %/);
    // The heatmap's colour scale says what it measures (comparable across cells: CAM times the probability).
    assert.match(await page.$eval('#legend', (e) => e.textContent ?? ''), /^P\(Parasitized\) × CAM: 0 +1$/);
    const opacity = () => page.evaluate(() => (window as unknown as { camflow: { heat: { getOpacity(): number } } }).camflow.heat.getOpacity());
    assert.equal(await opacity(), 0.5);
    await page.click('#heat');
    assert.equal(await opacity(), 0, 'the heatmap toggles off');
    await page.click('#heat');
    assert.equal(await opacity(), 0.5);
    // Tiles of both pyramids were drawn (requests for the field's and the heatmap's tiles succeeded).
    await page.waitForNetworkIdle({ idleTime: 500, timeout: 20_000 });
    // A click on a cell names it: the cell `cell`, clicked at its box's centre on the page.
    const clickCell = async (cell: (typeof doc.cells)[number]) => {
      const point = await page.evaluate((x: number, y: number) => {
        // The field is the world's first image (the heatmap the second): its own image → element coordinates.
        const p = window.camflow.viewer.world.getItemAt(0).imageToViewerElementCoordinates(new window.OpenSeadragon.Point(x, y));
        const r = document.getElementById('osd')!.getBoundingClientRect();
        return { x: r.left + p.x, y: r.top + p.y };
      }, cell.box.x + cell.box.width / 2, cell.box.y + cell.box.height / 2);
      await page.mouse.click(point.x, point.y);
      await page.waitForFunction((n: number) => (document.getElementById('info')!.textContent ?? '').startsWith(`cell ${n}:`), { timeout: 5000 }, cell.cell);
    };
    await clickCell(doc.cells.find((x) => !x.clipped)!);
    // The minimap sits beside the field, not over it: the top-right cell (where OpenSeadragon puts its navigator) is
    // clickable like any other.
    const [view, minimap] = await page.evaluate(() => [document.getElementById('osd')!, document.querySelector('.navigator')!].map((e) => { const r = e.getBoundingClientRect(); return { left: r.left, right: r.right, top: r.top, bottom: r.bottom }; }));
    const centre = (x: (typeof doc.cells)[number]) => x.box.x + x.box.width / 2 - (x.box.y + x.box.height / 2);
    await clickCell(doc.cells.filter((x) => !x.clipped).reduce((a, b) => (centre(b) > centre(a) ? b : a)));
    assert.ok(minimap!.left >= view!.right || minimap!.top >= view!.bottom, `the navigator does not cover the field: ${JSON.stringify({ view, minimap })}`);
    if (process.env.CAMFLOW_SCREENSHOT) await page.screenshot({ path: process.env.CAMFLOW_SCREENSHOT });
    // A field submitted without its pyramid (--outputs none): the page says so and still draws every cell.
    const bare = await runCli(c, ['submit', join(c.dir, 'smears', 'field.png'), '--outputs', 'none', '--wait', '--json']);
    assert.equal(bare.code, 0, bare.stderr);
    const bareId = JSON.parse(bare.stdout.trim().split('\n').pop()!).batchId as string;
    const bareLine = (await readResults(c.ctx.store, bareId))[0] as FieldResult;
    assert.equal(bareLine.outputs.fieldDzi, undefined);
    await page.goto(`${base}/viewer/batches/${bareId}/fields/${bareLine.imageId}`);
    await page.waitForFunction(() => (window as unknown as { camflow?: { ready: boolean } }).camflow?.ready === true, { timeout: 30_000 });
    assert.match(await page.$eval('#nopyramid', (e) => e.textContent ?? ''), /No Deep Zoom pyramid was written/);
    assert.equal(await page.$('#heat'), null, 'no heatmap switch without a heatmap');
    assert.equal(await page.$$eval('#cells polygon.cell', (p) => p.length), bareLine.field.cells);
    const overlay = await page.$eval('#cells', (e) => { const r = (e as unknown as { getBoundingClientRect(): { width: number; height: number } }).getBoundingClientRect(); return { w: r.width, h: r.height }; });
    assert.ok(Math.abs(overlay.w / overlay.h - 1400 / 1000) < 0.02 && overlay.w > 100, `the outlines span the field's shape: ${JSON.stringify(overlay)}`);
    assert.deepEqual(problems, [], 'no console errors, no failed requests');
  } finally {
    // Closed whatever failed (no chromium at all included): an open server or connection would hang the file.
    await browser?.close();
    await app.close();
    await apiRedis.quit();
  }
});

test("a field whose part failed for good gets one failed line naming the part and why, never a parasitemia over cells never classified", async () => {
  const { assembleField } = await import('../../packages/cam-worker/src/field.ts');
  const item = { imageId: 'i0000009', name: 'f.png', sha256: 'a'.repeat(64), ext: 'png', width: 1400, height: 1000, kind: 'field' as const };
  const job = { batchId: 'b-part-failed', chunk: 0, modelVersion: 'm1', items: [item], options: { target: 'predicted', fraction: 0.2, minArea: 16, outputs: ['json'], restrictToCell: true, alpha: 0.3, precision: 'fp32', kind: 'auto' } } as never;
  const plan = { batchId: 'b-part-failed', imageId: 'i0000009', width: 1400, height: 1000, whole: true, diameter: 100, regions: 1, whiteCells: 0, cells: [], parts: [{ first: 0, count: 8 }, { first: 8, count: 8 }] };
  const ok = { part: 0, engine: 'cpu', precision: 'fp32' as const, cells: [] };
  const line = await assembleField(item as never, plan as never, [ok, 'ONNX Runtime: out of memory'], { store: c.ctx.store, job, write: () => assert.fail('nothing is written for a failed field') } as never);
  assert.equal(line.status, 'failed');
  assert.ok(line.status === 'failed' && line.reason === 'cells-failed' && /part 1 of the field's 0 cells \(2 parts\) failed after its retries: ONNX Runtime: out of memory/.test(line.error), JSON.stringify(line));
});

test('a greyscale field or cell crop gets its own failed line saying why (cells are told apart by colour) — refused at submission, nothing stored, where its header or a crop\'s pixels show it; the colour field and the crop in its chunk are unaffected', async () => {
  const folder = join(c.dir, 'grey-mix');
  await mkdir(folder, { recursive: true });
  const colour = generateField(6, { width: 1200, height: 900, cells: 30, fov: false });
  const grey = Uint8Array.from(colour.rgb);
  for (let i = 0; i < grey.length; i += 3) grey[i] = grey[i + 1] = grey[i + 2] = Math.round(0.299 * grey[i]! + 0.587 * grey[i + 1]! + 0.114 * grey[i + 2]!);
  await writeFile(join(folder, 'colour.png'), await encodePng(colour.rgb, colour.width, colour.height));
  // Grey stored two ways: three equal channels, and a one-channel JPEG (what a monochrome camera writes).
  await writeFile(join(folder, 'grey-rgb.png'), await encodePng(grey, colour.width, colour.height));
  await writeFile(join(folder, 'grey-1ch.jpg'), await sharp(Buffer.from(grey), { raw: { width: colour.width, height: colour.height, channels: 3 } }).toColourspace('b-w').jpeg().toBuffer());
  const cell = generateCell(createRng(3), 'Uninfected');
  await writeFile(join(folder, 'cell.png'), await encodePng(cell.rgb, cell.width, cell.height));
  const greyCell = Uint8Array.from(cell.rgb);
  for (let i = 0; i < greyCell.length; i += 3) greyCell[i] = greyCell[i + 1] = greyCell[i + 2] = Math.round(0.299 * greyCell[i]! + 0.587 * greyCell[i + 1]! + 0.114 * greyCell[i + 2]!);
  await writeFile(join(folder, 'grey-cell.png'), await encodePng(greyCell, cell.width, cell.height));
  const t0 = Date.now();
  const run = await runCli(c, ['submit', folder, '--wait', '--json']);
  assert.equal(run.code, 0, run.stderr);
  const id = JSON.parse(run.stdout.trim().split('\n').pop()!).batchId as string;
  const byName = new Map((await readResults(c.ctx.store, id)).map((r) => [r.name, r]));
  assert.equal(byName.size, 5, 'one line per file');
  for (const name of ['grey-rgb.png', 'grey-1ch.jpg', 'grey-cell.png']) {
    const line = byName.get(name)!;
    assert.deepEqual([line.status, line.status === 'failed' ? line.reason : ''], ['failed', 'greyscale'], JSON.stringify(line));
    assert.match(line.status === 'failed' ? line.error : '', /no colour/);
  }
  assert.equal(byName.get('colour.png')!.status, 'ok');
  assert.equal(byName.get('cell.png')!.status, 'ok');
  assert.ok(Date.now() - t0 < 60_000, 'no retries of a failure that cannot change');
  // A one-channel file (its header) and a grey crop (decoded at ingest, as the worker would) never reach a worker:
  // refused in the batch manifest, their bytes not stored. A field stored grey as RGB needs its pixels: the worker's.
  const manifest = parseJsonLines((await c.ctx.store.get(keys.batchManifest(id))).toString('utf8'), manifestLineSchema, 'manifest');
  const refused = new Map(manifest.filter((l) => 'reason' in l).map((l) => [l.name, l]));
  assert.deepEqual([...refused.keys()].sort(), ['grey-1ch.jpg', 'grey-cell.png']);
  for (const name of ['grey-1ch.jpg', 'grey-cell.png']) {
    const bytes = await readFile(join(folder, name));
    const sha = createHash('sha256').update(bytes).digest('hex');
    assert.deepEqual(await c.ctx.store.list(`originals/${sha.slice(0, 2)}/${sha}`), [], `${name}: no original stored`);
  }
});

test('`submit --wait` of files none of which can be localized (a TIFF cut short, a text file) exits 1 saying so and why, after every file got its line', async () => {
  const folder = join(c.dir, 'nothing-good');
  await mkdir(folder, { recursive: true });
  const tif = await sharp({ create: { width: 900, height: 700, channels: 3, background: { r: 200, g: 120, b: 160 } } }).tiff({ tile: true, pyramid: true, compression: 'jpeg' }).toBuffer();
  await writeFile(join(folder, 'cut.tif'), tif.subarray(0, tif.length >> 1));
  await writeFile(join(folder, 'notes.txt'), 'slide 7, stained 2026-11-28\n');
  const run = await runCli(c, ['submit', folder, '--wait', '--json']);
  const batchId = JSON.parse(run.stdout.trim().split('\n').pop()!).batchId as string;
  assert.deepEqual([run.code, run.stderr.trim().split('\n').pop()], [1, `none of the 2 files was localized (truncated 1, unsupported-format 1): \`camflow results ${batchId}\` gives each one's reason`], run.stderr);
  const lines = await readResults(c.ctx.store, batchId);
  assert.deepEqual(lines.map((r) => [r.name, r.status === 'failed' ? r.reason : r.status]).sort(), [['cut.tif', 'truncated'], ['notes.txt', 'unsupported-format']]);
});

test('--kind fields on cell crops refuses each crop with its reason (never searched for cells); the field beside them is localized', async () => {
  const run = await runCli(c, ['submit', join(c.dir, 'smears'), '--kind', 'fields', '--wait', '--json']);
  assert.equal(run.code, 0, run.stderr);
  const results = await readResults(c.ctx.store, JSON.parse(run.stdout.trim().split('\n').pop()!).batchId as string);
  const byName = new Map(results.map((r) => [r.name, r]));
  for (const name of ['cell-a.png', 'cell-b.png']) {
    const line = byName.get(name)!;
    assert.deepEqual([line.status, line.status === 'failed' ? line.reason : ''], ['failed', 'not-a-field'], JSON.stringify(line));
    assert.match(line.status === 'failed' ? line.error : '', /less than 2 cells across .* a cell crop\? submit crops with --kind cells or auto/);
  }
  const fieldLine = byName.get('field.png')!;
  assert.deepEqual([fieldLine.status, fieldLine.status === 'ok' && fieldLine.kind], ['ok', 'field']);
});

test("a committed line the result schema refuses (an older worker's, a defect) fails its own image at finalization, not the batch again and again", async () => {
  const { finalizeBatch } = await import('@camflow/cam-worker');
  const run = await runCli(c, ['submit', join(c.dir, 'smears'), '--kind', 'cells', '--wait', '--json']);
  assert.equal(run.code, 0, run.stderr);
  const status = JSON.parse(run.stdout.trim().split('\n').pop()!) as { batchId: string; info: { modelVersion: string } };
  const before = await readResults(c.ctx.store, status.batchId);
  const key = keys.resultChunk(status.batchId, 0);
  const lines = (await c.ctx.store.get(key)).toString('utf8').trim().split('\n');
  const broken = JSON.parse(lines[0]!) as Record<string, unknown>;
  broken.featureSize = 'not a number';
  lines[0] = JSON.stringify(broken);
  await c.ctx.store.put(key, `${lines.join('\n')}\n`, 'application/x-ndjson');
  const summary = await finalizeBatch({ batchId: status.batchId, modelVersion: status.info.modelVersion }, c.ctx.store, () => undefined, c.ctx.log);
  const after = await readResults(c.ctx.store, status.batchId);
  assert.deepEqual(after.map((r) => r.name), before.map((r) => r.name), 'one line per entry, same order');
  const first = after.find((r) => r.imageId === broken.imageId)!;
  assert.deepEqual([first.status, first.status === 'failed' && first.reason, first.name], ['failed', 'internal-error', broken.name]);
  assert.match(first.status === 'failed' ? first.error : '', /featureSize/);
  assert.deepEqual(after.filter((r) => r.imageId !== broken.imageId), before.filter((r) => r.imageId !== broken.imageId));
  assert.equal(summary.failures['internal-error'], 1);
});
