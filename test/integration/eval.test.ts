import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer } from 'node:net';

/** A TCP port free right now (the worker binds it a moment later). */
const freePort = () => new Promise<number>((resolve) => { const srv = createServer().listen(0, '127.0.0.1', () => { const { port } = srv.address() as { port: number }; srv.close(() => resolve(port)); }); });
import { blend, buildModel, connectProducer, decodeRgb, isCellResult, writeSyntheticDataset } from '@camflow/common';
import { buildApi } from '@camflow/ingest';
import { readResults } from '../../packages/cli/src/wait.ts';
import { publishAsIs, publishUntrained, runCli, startCluster, type Cluster } from '../helpers/cluster.ts';

test('`camflow eval` scores a labelled folder through the queues: one JSON line, an HTML report, and the HTTP view of the same batch', async () => {
  const c = await startCluster();
  try {
    await publishUntrained(c.ctx);
    await writeSyntheticDataset(join(c.dir, 'labelled'), { count: 40, seed: 71 });
    // A wrong label, as the NIH set has them: an uninfected cell filed under Parasitized (no chromatin to see).
    const relabelled = 'Parasitized/S99_relabelled.png';
    await copyFile(join(c.dir, 'labelled', 'Uninfected', 'S0_cell_000000.png'), join(c.dir, 'labelled', relabelled));
    const metricsPort = await freePort();
    c.spawnWorker('cam', { METRICS_PORT: String(metricsPort) });
    const out = join(c.dir, 'eval-report');
    const run = await runCli(c, ['eval', join(c.dir, 'labelled'), '--out', out, '--json']);
    assert.equal(run.code, 0, run.stderr);
    // The worker process's Prometheus metrics: every image counted, chunk durations, the model it serves.
    const prom = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const sample = (name: string, labels: Record<string, string>) =>
      prom.split('\n').find((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)))?.split(' ').pop();
    assert.equal(sample('camflow_images_total', { status: 'ok', role: 'cam' }), '41');
    assert.ok(Number(sample('camflow_job_duration_seconds_count', { queue: 'cam' })) >= 1);
    assert.equal(sample('camflow_model_loaded', { version: 'm-untrained', engine: 'onnxruntime/cpu' }), '1');
    // Counters with no event yet are there at 0, so an alert tells "none" from "not scraped".
    assert.equal(sample('camflow_job_stalls_total', { queue: 'cam', role: 'cam' }), '0');
    assert.equal(sample('camflow_job_failures_total', { queue: 'cam', final: 'true' }), '0');
    const lines = run.stdout.trim().split('\n');
    assert.equal(lines.length, 1, 'one JSON line');
    const line = JSON.parse(lines[0]!).eval;
    assert.equal(line.images, 41);
    assert.equal(line.skipped, 0, 'boxes.json at the root is not an image of the set');
    // The line's numbers are the batch's results, scored: recompute accuracy from the stored lines.
    const results = await readResults(c.ctx.store, line.batchId);
    const ok = results.filter((r) => r.status === 'ok');
    const correct = ok.filter((r) => isCellResult(r) && r.name.split('/')[0] === r.predicted.label).length;
    assert.equal(line.accuracy, Math.round((correct / ok.length) * 10_000) / 10_000);
    // …and the ROC's recall at specificity ≥ 0.97 from the stored probabilities (the threshold above all but 3 % of
    // the negatives).
    const cells = ok.filter(isCellResult);
    const pPos = (r: (typeof cells)[number]) => r.probabilities[line.positiveClass] ?? 0;
    const negatives = cells.filter((r) => !r.name.startsWith(`${line.positiveClass}/`)).map(pPos).sort((a, b) => b - a);
    const cut = negatives[Math.floor(0.03 * negatives.length)]!;
    const positives = cells.filter((r) => r.name.startsWith(`${line.positiveClass}/`));
    assert.equal(line.recall_at_spec_097, Math.round((positives.filter((r) => pPos(r) > cut).length / positives.length) * 10_000) / 10_000);
    for (const k of ['recall', 'specificity', 'roc_auc', 'ece', 'recall_at_spec_097', 'pointing', 'max_box_acc_v2']) assert.ok(line[k] >= 0 && line[k] <= 1, `${k}: ${line[k]}`);
    assert.ok(line.localized_images > 0, 'the synthetic truth boxes were used');
    assert.ok(line.groups >= 2, 'per-patient rows from the S<n>_ prefix');
    const html = await readFile(join(out, 'index.html'), 'utf8');
    assert.match(html, /Confusion matrix/);
    assert.match(html, /recall at specificity ≥ 97\.0 %/);
    assert.match(html, /Per patient \/ slide/);
    assert.match(html, /MaxBoxAccV2, threshold chosen on the other half/);

    // Ctrl-C ends the wait, not the batch; the line says how to score that batch later, and `--batch` does so
    // without submitting the images again.
    const stopped = await runCli(c, ['eval', join(c.dir, 'labelled'), '--out', join(c.dir, 'eval-stopped')], {}, { when: /Ctrl-C ends the wait, not the work/, signal: 'SIGINT' });
    assert.equal(stopped.code, 130, stopped.stderr);
    // The command it prints keeps every flag given (here --out) and scores that batch.
    const resume = /stopped waiting; this evaluation's batch (\S+) goes on in the cam-workers: `camflow eval \S+ --out (\S+) --batch (\S+)` follows it/.exec(stopped.stderr);
    assert.ok(resume && resume[1] === resume[3] && resume[2] === join(c.dir, 'eval-stopped'), stopped.stderr);
    const again = await runCli(c, ['eval', join(c.dir, 'labelled'), '--batch', resume[1]!, '--out', join(c.dir, 'eval-again'), '--json']);
    assert.equal(again.code, 0, again.stderr);
    const againLine = JSON.parse(again.stdout.trim()).eval;
    assert.deepEqual([againLine.batchId, againLine.images, againLine.accuracy, againLine.roc_auc], [resume[1], 41, line.accuracy, line.roc_auc]);
    // A batch of other images, or none, is refused naming the flag.
    await mkdir(join(c.dir, 'few', 'Parasitized'), { recursive: true });
    await mkdir(join(c.dir, 'few', 'Uninfected'), { recursive: true });
    for (const cls of ['Parasitized', 'Uninfected']) {
      for (const f of (await readdir(join(c.dir, 'labelled', cls))).slice(0, 2)) await copyFile(join(c.dir, 'labelled', cls, f), join(c.dir, 'few', cls, f));
    }
    const mismatch = await runCli(c, ['eval', join(c.dir, 'few'), '--batch', line.batchId]);
    assert.equal(mismatch.code, 2, mismatch.stderr);
    assert.match(mismatch.stderr, new RegExp(`^Expected a batch of the 4 images of \\S+ for --batch but received "${line.batchId}, which holds 41"$`, 'm'));
    assert.doesNotMatch(mismatch.stderr, /evaluate \[/, 'refused before any wait');
    const noBatch = await runCli(c, ['eval', join(c.dir, 'few'), '--batch', 'b20990101-000000-000000000000']);
    assert.match(noBatch.stderr, /batch not found: b20990101-000000-000000000000/);
    // A batch eval would not have made is refused before any wait: one localized with `submit`'s --target predicted
    // (the positive class's CAM only where the model already said positive: a pointing score over those alone), a
    // cancelled one, one of as many images under other names.
    for (const cls of ['Parasitized', 'Uninfected']) {
      await mkdir(join(c.dir, 'same', cls), { recursive: true });
      await mkdir(join(c.dir, 'renamed', cls), { recursive: true });
      for (const f of await readdir(join(c.dir, 'labelled', cls))) {
        await copyFile(join(c.dir, 'labelled', cls, f), join(c.dir, 'same', cls, f));
        await copyFile(join(c.dir, 'labelled', cls, f), join(c.dir, 'renamed', cls, `copy-${f}`));
      }
    }
    // (The cam queue is paused while this batch is looked at, so it is cancelled before the workers finish it.)
    await c.ctx.queues.cam.pause();
    const plain = await runCli(c, ['submit', join(c.dir, 'same'), '--json']);
    assert.equal(plain.code, 0, plain.stderr);
    const plainId = JSON.parse(plain.stdout.trim().split('\n').pop()!).batchId as string;
    const predictedOnly = await runCli(c, ['eval', join(c.dir, 'labelled'), '--batch', plainId]);
    assert.equal(predictedOnly.code, 2, predictedOnly.stderr);
    assert.match(predictedOnly.stderr, new RegExp(`^Expected a batch localized with --target all, as eval submits .* for --batch but received "${plainId}, localized with --target predicted"$`, 'm'));
    assert.doesNotMatch(predictedOnly.stderr, /evaluate \[/);
    assert.equal((await runCli(c, ['batches', 'cancel', plainId])).code, 0);
    const cancelled = await runCli(c, ['eval', join(c.dir, 'labelled'), '--batch', plainId, '--truth', 'none']);
    assert.equal(cancelled.code, 2, cancelled.stderr);
    assert.match(cancelled.stderr, new RegExp(`for --batch but received "${plainId}, cancelled at \\d{4}-`));
    await c.ctx.queues.cam.resume();
    const renamed = await runCli(c, ['submit', join(c.dir, 'renamed'), '--target', 'all', '--json']);
    assert.equal(renamed.code, 0, renamed.stderr);
    const otherId = JSON.parse(renamed.stdout.trim().split('\n').pop()!).batchId as string;
    const otherNames = await runCli(c, ['eval', join(c.dir, 'labelled'), '--batch', otherId]);
    assert.equal(otherNames.code, 2, otherNames.stderr);
    assert.match(otherNames.stderr, new RegExp(`for --batch but received "${otherId}: 41 of the source's images not in it \\(Parasitized/.*\\), 41 images not in the source \\(`));
    assert.doesNotMatch(otherNames.stderr, /evaluate \[/);

    // The same scores over HTTP, for a completed batch whose names carry their class.
    const token = 'eval-token-0123456789abcdef';
    const apiRedis = await connectProducer(c.env.REDIS_URL!);
    const app = await buildApi({ config: { ...c.ctx.config, API_TOKEN: token }, store: c.ctx.store, flow: c.ctx.flow, queues: c.ctx.queues, redis: apiRedis, log: c.ctx.log });
    try {
      const base = await app.listen({ port: 0, host: '127.0.0.1' });
      const res = await fetch(`${base}/v1/batches/${line.batchId}/eval?groupPattern=${encodeURIComponent('^(S\\d+)_')}`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200, await res.clone().text());
      type Scores = { accuracy: number; recall: number; images: number; groups: Record<string, unknown> };
      const body = (await res.json()) as { classification: Scores; stainSupported?: Scores; stainPointing?: { truth: string; images: number; noStain: number; noStainNames: string[]; pointing: number; chance: number } };
      assert.equal(body.classification.images, 41);
      assert.equal(Math.round(body.classification.accuracy * 10_000) / 10_000, line.accuracy);
      assert.ok(Object.keys(body.classification.groups).length >= 2);
      // No truth boxes over HTTP: the CAM peaks are scored against the stain in the stored originals.
      const parasitized = ok.filter((r) => r.name.startsWith('Parasitized/')).length;
      const sp = body.stainPointing!;
      assert.equal(sp.truth, 'stain');
      assert.equal(sp.images + sp.noStain, parasitized, 'every parasitized image scored or counted as showing no stain');
      assert.ok(sp.images >= parasitized * 0.7, `stain found in ${sp.images} of ${parasitized} synthetic parasitized cells`);
      assert.ok(sp.chance > 0 && sp.chance < 0.5 && sp.pointing >= 0 && sp.pointing <= 1, JSON.stringify(sp));
      // The stain audit: the mislabelled cell is named, and the scores without such labels are those of the results
      // that remain.
      assert.equal(sp.noStainNames.length, sp.noStain);
      assert.ok(sp.noStainNames.includes(relabelled), JSON.stringify(sp.noStainNames));
      const supported = ok.filter((r) => !sp.noStainNames.includes(r.name));
      const supportedCorrect = supported.filter((r) => isCellResult(r) && r.name.split('/')[0] === r.predicted.label).length;
      assert.equal(body.stainSupported!.images, 41 - sp.noStain);
      assert.equal(body.stainSupported!.accuracy, supportedCorrect / supported.length);
      // The CLI's line and report carry the same audit when the truth is the stain.
      const byStain = await runCli(c, ['eval', join(c.dir, 'labelled'), '--truth', 'stain', '--out', join(c.dir, 'eval-stain'), '--json']);
      assert.equal(byStain.code, 0, byStain.stderr);
      const stainLine = JSON.parse(byStain.stdout.trim()).eval;
      assert.equal(stainLine.no_stain_images, sp.noStain);
      assert.equal(stainLine.accuracy_stain_supported, Math.round((supportedCorrect / supported.length) * 10_000) / 10_000);
      const stainHtml = await readFile(join(c.dir, 'eval-stain', 'index.html'), 'utf8');
      assert.match(stainHtml, /Labels the pixels do not support/);
      assert.ok(stainHtml.includes(relabelled), 'the doubtful label is listed for a person to check');
      // Per patient, how many positive labels show no stain: S99 holds just the relabelled cell.
      assert.match(stainHtml, /<tr><td>S99<\/td><td>1<\/td><td>1<\/td><td>1<\/td>/);
      const none = await fetch(`${base}/v1/batches/${line.batchId}/eval?truth=none`, { headers: { authorization: `Bearer ${token}` } });
      const noneBody = (await none.json()) as { stainPointing?: unknown; classification: { groups: Record<string, unknown> } };
      assert.equal(noneBody.stainPointing, undefined);
      // With no groupPattern the API groups by the same default pattern as the CLI (and `dataset add`).
      assert.equal(Object.keys(noneBody.classification.groups).length, line.groups);
      const bad = await fetch(`${base}/v1/batches/${line.batchId}/eval?groupPattern=${encodeURIComponent('(')}`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(bad.status, 400);
    } finally {
      await app.close();
      await apiRedis.quit();
    }

    // A dataset snapshot: for the model's own snapshot only the images it was validated on (never trained on),
    // unless --subset all, which says how many of the scored images trained it.
    const added = await runCli(c, ['dataset', 'add', 'evalset', join(c.dir, 'labelled'), '--json']);
    assert.equal(added.code, 0, added.stderr);
    const snapshot = JSON.parse(added.stdout) as { version: string; items: number; rejected: { name: string; error: string }[] };
    // The relabelled copy and its original: one content under two classes, learned under neither.
    const conflicting = snapshot.rejected.filter((r) => r.name !== 'boxes.json');
    assert.deepEqual(conflicting.map((r) => r.name).sort(), [relabelled, 'Uninfected/S0_cell_000000.png']);
    for (const r of conflicting) assert.match(r.error, /^conflicting-labels: the same image \(identical content\) is in 2 classes/);
    assert.equal(snapshot.items, 39);
    const validation = [0, 3, 5, 20, 30, 38];
    const own = buildModel('fast', 2, 3);
    await publishAsIs(c.ctx.store, own, 'fast', 'm-own', { name: 'evalset', version: snapshot.version, trainItems: 39 - validation.length, validationItems: validation.length, splitBy: 'item', validation });
    own.dispose();
    const evalLine = async (args: string[]) => {
      const r = await runCli(c, ['eval', ...args, '--out', join(c.dir, `eval-${args.join('-').replace(/\W+/g, '_')}`), '--json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout.trim()).eval as Record<string, unknown>;
    };
    const onValidation = await evalLine(['evalset', '--model', 'm-own']);
    assert.deepEqual([onValidation.images, onValidation.subset, onValidation.training_images], [validation.length, 'validation', 0]);
    const onAll = await evalLine(['evalset', '--model', 'm-own', '--subset', 'all']);
    assert.deepEqual([onAll.images, onAll.subset, onAll.training_images], [39, 'all', 39 - validation.length]);
    assert.match(await readFile(join(String(onAll.report)), 'utf8'), /33 of these images trained the model/);
    // The same images as a folder (dev cells copied aside, the two refused ones included): found by content to be the
    // model's training images, said.
    const asFolder = await evalLine([join(c.dir, 'labelled'), '--model', 'm-own']);
    assert.deepEqual([asFolder.images, asFolder.subset, asFolder.training_images], [41, 'folder', 39 - validation.length]);
    assert.match(await readFile(join(String(asFolder.report)), 'utf8'), /33 of these images trained the model<\/b>: these scores are not those of unseen images \(the same content as its training images in evalset@/);
    // Another model's view of the same snapshot: all of it, nothing claimed about training images.
    const other = await evalLine(['evalset', '--model', 'm-untrained']);
    assert.deepEqual([other.images, other.subset, other.training_images], [39, 'all', undefined]);
    // A batch of another model than the one asked for: refused before any wait.
    const otherModel = await runCli(c, ['eval', join(c.dir, 'labelled'), '--batch', line.batchId, '--model', 'm-own']);
    assert.equal(otherModel.code, 2, otherModel.stderr);
    assert.match(otherModel.stderr, new RegExp(`Expected a batch localized by model m-own \\(--model\\) for --batch but received "${line.batchId}, localized by m-untrained"`));
    const refused = await runCli(c, ['eval', 'evalset', '--model', 'm-untrained', '--subset', 'validation']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /the model's own snapshot \(none@none\).*for --subset/);

    // Mistakes fail before any work, naming what is wrong: a missing folder, class folders the model does not know.
    const missing = await runCli(c, ['eval', join(c.dir, 'no-such-folder')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no such folder/);
    await mkdir(join(c.dir, 'lower', 'parasitized'), { recursive: true });
    await copyFile(join(c.dir, 'labelled', 'Uninfected', 'S0_cell_000000.png'), join(c.dir, 'lower', 'parasitized', 'a.png'));
    // One folder right, one not: refused too (its images used to be submitted, then skipped in silence).
    await mkdir(join(c.dir, 'lower', 'Uninfected'), { recursive: true });
    await copyFile(join(c.dir, 'labelled', 'Uninfected', 'S0_cell_000000.png'), join(c.dir, 'lower', 'Uninfected', 'b.png'));
    const wrongClasses = await runCli(c, ['eval', join(c.dir, 'lower')]);
    assert.equal(wrongClasses.code, 2, wrongClasses.stdout);
    assert.match(wrongClasses.stderr, /class folders named as model m-untrained's classes \(Parasitized, Uninfected\) for source but received "folder parasitized \(class names are case-sensitive: Parasitized\) in /);
    // A --boxes file that is missing or not boxes: refused naming the flag, the file and what is wrong.
    const noBoxes = await runCli(c, ['eval', join(c.dir, 'labelled'), '--boxes', join(c.dir, 'no-such-boxes.json')]);
    assert.equal(noBoxes.code, 2, noBoxes.stderr);
    assert.match(noBoxes.stderr, /^Expected a JSON file of truth boxes: .* for --boxes but received ".*no-such-boxes\.json \(no such file\)"$/m);
    await writeFile(join(c.dir, 'bad-boxes.json'), JSON.stringify({ 'Parasitized/a.png': [[1, 2, 3, 4]] }));
    const badBoxes = await runCli(c, ['eval', join(c.dir, 'labelled'), '--boxes', join(c.dir, 'bad-boxes.json')]);
    assert.equal(badBoxes.code, 2, badBoxes.stderr);
    assert.match(badBoxes.stderr, /bad-boxes\.json \(at Parasitized\/a\.png\.0: /);
    // Boxes keyed by bare file names name no image of the folder (<class>/<file>): refused before any work, rather
    // than an evaluation with no localization scores and no word why.
    const bare = Object.fromEntries(Object.entries(JSON.parse(await readFile(join(c.dir, 'labelled', 'boxes.json'), 'utf8')).boxes as Record<string, unknown>).map(([k, v]) => [k.split('/').pop()!, v]));
    await writeFile(join(c.dir, 'bare-boxes.json'), JSON.stringify(bare));
    const bareBoxes = await runCli(c, ['eval', join(c.dir, 'labelled'), '--boxes', join(c.dir, 'bare-boxes.json')]);
    assert.equal(bareBoxes.code, 2, bareBoxes.stderr);
    assert.match(bareBoxes.stderr, /^Expected boxes keyed by the source's image names, <class>\/<file> \(e\.g\. "(Parasitized|Uninfected)\/S\d+_cell_\d+\.png"\) for --boxes but received ".*bare-boxes\.json: none of its \d+ names is one/m);
    // One class only: scored, with no specificity and no ROC AUC to report (null), never a 0 read as a failure.
    await mkdir(join(c.dir, 'only-positive', 'Parasitized'), { recursive: true });
    for (const f of (await readdir(join(c.dir, 'labelled', 'Parasitized'))).slice(0, 3)) await copyFile(join(c.dir, 'labelled', 'Parasitized', f), join(c.dir, 'only-positive', 'Parasitized', f));
    // (Its boxes from the whole labelled set: those of images not in this folder are said to be unused, in plain words.)
    const onlyPositive = await runCli(c, ['eval', join(c.dir, 'only-positive'), '--boxes', join(c.dir, 'labelled', 'boxes.json'), '--out', join(c.dir, 'eval-only-positive'), '--json']);
    assert.equal(onlyPositive.code, 0, onlyPositive.stderr);
    assert.match(onlyPositive.stderr, /^warning: \d+ of the \d+ names in .*labelled\/boxes\.json are no image of the source \(e\.g\. "(Parasitized|Uninfected)\/S\d+_cell_\d+\.png"\): their boxes are not used$/m);
    const op = JSON.parse(onlyPositive.stdout).eval;
    assert.deepEqual([op.images, op.specificity, op.roc_auc, 'recall_at_spec_097' in op], [3, null, null, false]);
    assert.equal(typeof op.recall, 'number');
    // `dataset add` of one class folder says so, in words.
    const oneClass = await runCli(c, ['dataset', 'add', 'oneclass', join(c.dir, 'only-positive')]);
    assert.equal(oneClass.code, 2, oneClass.stderr);
    assert.match(oneClass.stderr, /at least two class folders of images, .* \(a model learns to tell its classes apart\) for folder but received "one class folder \(Parasitized\) in /);
  } finally {
    await c.close();
  }
});

describe('eval on one cluster: what it claims, what it shows, what it says', () => {
  let c: Cluster;
  /** 24 synthetic cells, `<class>/<file>`, with their truth boxes. */
  let cells: string;
  /** The Uninfected cells of `cells` alone. */
  let negatives: string;
  /** Run `camflow eval` with `--json`; the parsed line, and stderr (warnings). */
  const evalJson = async (args: string[], out: string) => {
    const r = await runCli(c, ['eval', ...args, '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, `one JSON line on stdout: ${r.stdout}`);
    return { line: JSON.parse(lines[0]!).eval as Record<string, unknown>, stderr: r.stderr };
  };

  before(async () => {
    c = await startCluster();
    await publishUntrained(c.ctx);
    cells = join(c.dir, 'cells');
    await writeSyntheticDataset(cells, { count: 24, seed: 72 });
    negatives = join(c.dir, 'negatives');
    await mkdir(join(negatives, 'Uninfected'), { recursive: true });
    for (const f of await readdir(join(cells, 'Uninfected'))) await copyFile(join(cells, 'Uninfected', f), join(negatives, 'Uninfected', f));
    c.spawnWorker('cam');
  });
  after(async () => {
    await c?.close();
  });

  test('a dataset snapshot other than the model\'s own is checked for its training images by content, as a folder is: training_images, a plain warning, the red line', async () => {
    const added = await runCli(c, ['dataset', 'add', 'cells', cells, '--json']);
    assert.equal(added.code, 0, added.stderr);
    const own = JSON.parse(added.stdout) as { version: string; items: number };
    const validation = [1, 7, 12, 18];
    const model = buildModel('fast', 2, 5);
    await publishAsIs(c.ctx.store, model, 'fast', 'm-cells', { name: 'cells', version: own.version, trainItems: own.items - validation.length, validationItems: validation.length, splitBy: 'item', validation });
    model.dispose();
    const manifest = async (name: string, version: string) => (await c.ctx.store.getJson<{ items: { sha256: string }[] }>(`datasets/${name}/${version}/manifest.json`)).items;
    const ownItems = await manifest('cells', own.version);
    const training = new Set(ownItems.filter((_, i) => !validation.includes(i)).map((item) => item.sha256));

    // The same cells registered under another name (a colleague's copy of them).
    const copy = await runCli(c, ['dataset', 'add', 'copied', cells, '--json']);
    assert.equal(copy.code, 0, copy.stderr);
    const copied = JSON.parse(copy.stdout) as { version: string; items: number };
    const seen = (await manifest('copied', copied.version)).filter((item) => training.has(item.sha256)).length;
    assert.ok(seen >= own.items - validation.length, `${seen} of the copy's images are training images`);
    const asDataset = await evalJson(['copied', '--model', 'm-cells'], join(c.dir, 'eval-copied'));
    assert.deepEqual([asDataset.line.images, asDataset.line.subset, asDataset.line.training_images], [copied.items, 'all', seen]);
    // The same images as a folder: the same count, the same warning, the same red line.
    const asFolder = await evalJson([cells, '--model', 'm-cells'], join(c.dir, 'eval-cells-folder'));
    assert.deepEqual([asFolder.line.subset, asFolder.line.training_images], ['folder', seen]);
    const warning = `warning: ${seen} of these ${copied.items} images trained model m-cells (the same content as its training images in cells@${own.version}): these scores are not those of unseen images (\`camflow eval cells@${own.version}\` scores its validation images)`;
    for (const { stderr } of [asDataset, asFolder]) {
      assert.ok(stderr.split('\n').includes(warning), `a plain warning line, not a log record:\n${stderr}`);
      assert.doesNotMatch(stderr, /"msg":"[^"]*trained/, 'not as a JSON log record');
    }
    for (const { line } of [asDataset, asFolder]) {
      assert.match(await readFile(String(line.report), 'utf8'), new RegExp(`${seen} of these images trained the model</b>: these scores are not those of unseen images \\(the same content as its training images in cells@${own.version}; <code>camflow eval cells@${own.version}</code> scores its validation images\\)`));
    }

    // Another version of the model's own dataset: a part of the same cells, checked the same way.
    const part = join(c.dir, 'cells-part');
    for (const cls of ['Parasitized', 'Uninfected']) {
      await mkdir(join(part, cls), { recursive: true });
      for (const f of (await readdir(join(cells, cls))).slice(0, 4)) await copyFile(join(cells, cls, f), join(part, cls, f));
    }
    const v2 = await runCli(c, ['dataset', 'add', 'cells', part, '--json']);
    assert.equal(v2.code, 0, v2.stderr);
    const second = JSON.parse(v2.stdout) as { version: string; items: number };
    assert.notEqual(second.version, own.version);
    const seenInPart = (await manifest('cells', second.version)).filter((item) => training.has(item.sha256)).length;
    assert.ok(seenInPart > 0);
    const otherVersion = await evalJson([`cells@${second.version}`, '--model', 'm-cells'], join(c.dir, 'eval-cells-v2'));
    assert.deepEqual([otherVersion.line.images, otherVersion.line.subset, otherVersion.line.training_images], [8, 'all', seenInPart]);
    assert.match(otherVersion.stderr, new RegExp(`^warning: ${seenInPart} of these 8 images trained model m-cells \\(the same content as its training images in cells@${own.version}\\)`, 'm'));
    // The model's own snapshot still defaults to its validation images, none of them a training image by the split.
    const onValidation = await evalJson([`cells@${own.version}`, '--model', 'm-cells'], join(c.dir, 'eval-cells-own'));
    assert.deepEqual([onValidation.line.images, onValidation.line.subset, onValidation.line.training_images], [validation.length, 'validation', 0]);
    assert.doesNotMatch(onValidation.stderr, /^warning:/m);

    // Its snapshot removed (not production's, so it may go): the removal names the model trained on it, and eval then
    // says it cannot tell the training images apart — not silence, as if none were.
    const removed = await runCli(c, ['dataset', 'remove', `cells@${own.version}`]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stderr, /^warning: model m-cells was trained on it: `camflow eval` can no longer tell which images trained it/m);
    const blind = await evalJson(['copied', '--model', 'm-cells'], join(c.dir, 'eval-copied-blind'));
    assert.equal(blind.line.training_images, undefined);
    assert.ok(blind.stderr.split('\n').includes(`warning: which of these ${copied.items} images trained model m-cells cannot be told (its training snapshot cells@${own.version} was removed): if some did, these scores are not those of unseen images`), blind.stderr);
  });

  test('a folder without positive images has no pointing score: null in the line, "—" with the reason in the report, and no table of labels to doubt', async () => {
    const out = join(c.dir, 'eval-negatives');
    const { line } = await evalJson([negatives], out);
    assert.deepEqual([line.positiveClass, line.stain_images, line.no_stain_images], ['Parasitized', 0, 0]);
    assert.deepEqual([line.pointing_stain, line.pointing_chance], [null, null], 'no image to point at: not a pointing score of 0');
    const html = await readFile(join(out, 'index.html'), 'utf8');
    assert.match(html, /<td>pointing \(CAM peak on the stain\)<\/td><td>— \(no Parasitized images with stain\)<\/td>/);
    assert.match(html, /<td>chance \(a random point in the cell\)<\/td><td>— \(no Parasitized images with stain\)<\/td>/);
    // No label lacks stain: nothing to leave out, so no "without them" table repeating the scores.
    assert.doesNotMatch(html, /Without them/);
    assert.match(html, /<h2>Labels the pixels do not support<\/h2><p>None: no Parasitized image here lacks parasite stain/);
  });

  test("the error gallery shows each error's positive-class CAM and says so, with a legend, the box inside the image, and class names never broken mid-word", async () => {
    const out = join(c.dir, 'eval-gallery');
    const { line } = await evalJson([cells, '--truth', 'none'], out);
    const html = await readFile(join(out, 'index.html'), 'utf8');
    const results = (await readResults(c.ctx.store, String(line.batchId))).filter(isCellResult);
    const byId = new Map(results.map((r) => [r.imageId, r]));
    const tiles = [...html.matchAll(/<figure>(.*?)<\/figure>/g)].map((m) => m[1]!);
    const errors = results.filter((r) => r.name.split('/')[0] !== r.predicted.label);
    assert.equal(tiles.length, errors.length, 'every error shown (fewer than 24)');
    const misses = errors.filter((r) => r.name.startsWith('Parasitized/'));
    assert.ok(misses.length > 0, `the untrained model misses parasitized cells: ${JSON.stringify(results.map((r) => [r.name, r.predicted.label]))}`);
    // Each tile: the file name (which may wrap anywhere), the truth → the prediction, and whose CAM the overlay is.
    for (const tile of tiles) {
      const id = /(?:href|src)="overlays\/([^"]+)\.png"/.exec(tile)?.[1];
      const r = byId.get(id ?? '');
      assert.ok(r, tile);
      assert.ok(tile.includes(`<span class="id">${r.name}</span>`), tile);
      assert.ok(tile.includes(`truth ${r.name.split('/')[0]} → <b>${r.predicted.label}</b>`), tile);
      assert.ok(tile.includes('CAM of Parasitized'), tile);
      // The served box of that CAM, drawn inside the image (a box of the whole cell is not lost on its border).
      const box = r.cams.find((cam) => cam.class === 'Parasitized')!.box;
      const rect = /<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"/.exec(tile);
      assert.equal(!!rect, !!box, tile);
      if (rect && box) {
        const [x, y, w, h] = rect.slice(1).map(Number) as [number, number, number, number];
        assert.ok(x > box.x && y > box.y && x + w < box.x + box.width && y + h < box.y + box.height, `${tile} inside ${JSON.stringify(box)}`);
        assert.ok(x > 0 && y > 0 && x + w < r.width && y + h < r.height, tile);
      }
    }
    // A missed parasite's overlay is the positive class's CAM as the worker maps it for `--target Parasitized`, over
    // the cell at alpha 0.3 — not the predicted class's (a cold spot where the parasite is).
    const miss = misses[0]!;
    const alone = join(c.dir, 'the-miss');
    await mkdir(alone, { recursive: true });
    await copyFile(join(cells, miss.name), join(alone, 'miss.png'));
    const submitted = await runCli(c, ['submit', alone, '--target', 'Parasitized', '--outputs', 'heatmap', '--wait', '--json']);
    assert.equal(submitted.code, 0, submitted.stderr);
    const [byWorker] = await readResults(c.ctx.store, JSON.parse(submitted.stdout.trim().split('\n').pop()!).batchId);
    assert.ok(byWorker && isCellResult(byWorker) && byWorker.outputs.heatmap);
    const original = await decodeRgb(await readFile(join(cells, miss.name)));
    const heat = await decodeRgb(await c.ctx.store.get(byWorker.outputs.heatmap));
    const expected = blend(original.data, heat.data, 0.3);
    const shown = await decodeRgb(await readFile(join(out, 'overlays', `${miss.imageId}.png`)));
    assert.deepEqual([shown.width, shown.height], [original.width, original.height]);
    let worst = 0;
    for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(expected[i]! - shown.data[i]!));
    // (The stored CAM is rounded to 1e-5: a pixel may fall one step of the 256-colour map apart.)
    assert.ok(worst <= 2, `largest difference from the positive class's overlay: ${worst}`);
    const predictedOverlay = await decodeRgb(await c.ctx.store.get(miss.outputs.overlay!));
    assert.notDeepEqual(shown.data, predictedOverlay.data, "not the worker's overlay of the predicted class");
    // A legend: the colour map's ends, the box, and what a box along the whole cell means.
    const legend = /<div class="legend">(.*?)<\/div>/.exec(html)?.[1] ?? '';
    assert.match(legend, /^Overlays: the CAM of Parasitized \(where the model sees Parasitized — on a missed one, where it would have\)/);
    assert.match(legend, /low <span class="bar" style="background:linear-gradient\(to right, #00007f, .*, #7f0000\)"><\/span> high/);
    assert.match(legend, /White box: the served box, the largest region above 20 % of that CAM's maximum, .*; a box along the image's edge covers the whole cell/);
    // Captions break between words; only a file name may break anywhere.
    assert.doesNotMatch(html, /break-all/);
    assert.match(html, /\.id\{overflow-wrap:anywhere\}/);
    assert.doesNotMatch(/figcaption\{[^}]*\}/.exec(html)![0], /overflow-wrap|word-break/);
  });

  test("a second eval into the same --out replaces the first report's overlays, and leaves everything else in the folder alone", async () => {
    const out = join(c.dir, 'eval-twice');
    await evalJson([cells, '--truth', 'none'], out);
    const first = await readdir(join(out, 'overlays'));
    assert.ok(first.length > 0, 'the first report shows errors');
    // What a person keeps beside the report: not the report's to remove.
    await writeFile(join(out, 'notes.txt'), 'mine');
    await writeFile(join(out, 'overlays', 'mine.png'), 'mine');
    // The negatives: the untrained model errs on none of them, so the new report shows no overlay at all.
    await evalJson([negatives, '--truth', 'none'], out);
    const html = await readFile(join(out, 'index.html'), 'utf8');
    const shown = [...html.matchAll(/href="overlays\/([^"]+)"/g)].map((m) => m[1]!);
    assert.ok(first.some((f) => !shown.includes(f)), 'an overlay of the first report is not one of the second\'s: its removal is what is tested');
    assert.deepEqual((await readdir(join(out, 'overlays'))).sort(), [...shown, 'mine.png'].sort(), 'only the new report\'s overlays, and the file it did not write');
    assert.equal(await readFile(join(out, 'notes.txt'), 'utf8'), 'mine');
    assert.ok((await stat(join(out, 'index.html'))).isFile());
  });

  test('mistakes are named with the way out: the nearest class for a misspelled class folder, case-sensitivity for a case slip, `camflow models` for an unknown model', async () => {
    const wrong = join(c.dir, 'misspelled');
    for (const [from, to] of [['Parasitized', 'Parasitised'], ['Uninfected', 'uninfected']] as const) {
      await mkdir(join(wrong, to), { recursive: true });
      const first = (await readdir(join(cells, from)))[0]!;
      await copyFile(join(cells, from, first), join(wrong, to, first));
    }
    const misspelled = await runCli(c, ['eval', wrong]);
    assert.equal(misspelled.code, 2, misspelled.stderr);
    const expected = `Expected class folders named as model m-untrained's classes (Parasitized, Uninfected) for source but received "folders Parasitised (did you mean Parasitized?), uninfected (class names are case-sensitive: Uninfected) in ${wrong}"`;
    assert.ok(misspelled.stderr.split('\n').includes(expected), misspelled.stderr);
    // A folder named like no class gets no guess.
    const unlike = join(c.dir, 'unlike');
    await mkdir(join(unlike, 'Parasitized'), { recursive: true });
    await mkdir(join(unlike, 'cells'), { recursive: true });
    const one = (await readdir(join(cells, 'Parasitized')))[0]!;
    await copyFile(join(cells, 'Parasitized', one), join(unlike, 'Parasitized', one));
    await copyFile(join(cells, 'Parasitized', one), join(unlike, 'cells', one));
    const noGuess = await runCli(c, ['eval', unlike]);
    assert.equal(noGuess.code, 2, noGuess.stderr);
    assert.ok(noGuess.stderr.includes(`but received "folder cells in ${unlike}"`), noGuess.stderr);

    const noModel = await runCli(c, ['eval', cells, '--model', 'nosuch']);
    assert.equal(noModel.code, 1, noModel.stderr);
    assert.match(noModel.stderr, /^model version not found: nosuch \(`camflow models` or GET \/v1\/models lists them\)$/m);
  });
});
