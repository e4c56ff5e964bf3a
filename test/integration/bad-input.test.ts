import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, readFile, readdir, copyFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { InvalidParameterError, ObjectStore, keys, startS3, writeSyntheticDataset, type LocalS3 } from '@camflow/common';
import { addDataset, collectEntries, openSource } from '@camflow/ingest';

let s3: LocalS3;
let store: ObjectStore;
let dir: string;

before(async () => {
  s3 = await startS3();
  store = new ObjectStore({ bucket: s3.bucket, endpoint: s3.endpoint, credentials: s3.credentials });
  await store.ensureBucket();
  dir = await mkdtemp(join(tmpdir(), 'camflow-bad-'));
  await writeSyntheticDataset(join(dir, 'cells'), { count: 12, seed: 21 });
});

after(async () => {
  store?.destroy();
  await s3?.stop();
});

async function labelled(name: string, layout: Record<string, number>): Promise<string> {
  const root = join(dir, name);
  const pool = [...(await readdir(join(dir, 'cells', 'Parasitized'))).map((f) => join(dir, 'cells', 'Parasitized', f)), ...(await readdir(join(dir, 'cells', 'Uninfected'))).map((f) => join(dir, 'cells', 'Uninfected', f))];
  let k = 0;
  for (const [cls, n] of Object.entries(layout)) {
    await mkdir(join(root, cls), { recursive: true });
    for (let i = 0; i < n; i++) await copyFile(pool[k++ % pool.length]!, join(root, cls, `img${i}.png`));
  }
  return root;
}

test('a folder given one level too high (a class folder holding the class folders) is refused before anything is stored, naming the folder to give; with the classes named it is taken as it is', async () => {
  const root = await labelled('high', { 'cells/Parasitized': 3, 'cells/Uninfected': 3, mixed: 3 });
  await assert.rejects(addDataset({ store, name: 'high', folder: root, size: 32 }), (e: unknown) => {
    assert.ok(e instanceof InvalidParameterError && e.field === 'folder', String(e));
    assert.match(e.message, /^Expected class folders holding their images \(<folder>\/<class>\/<image>\), or the classes named \(--classes cells,mixed\) to take this layout as it is for folder but received ".*high: class \\"cells\\": all its 6 images sit in sub-folders \(Parasitized, Uninfected\) and are all labelled \\"cells\\"; if those sub-folders are the classes, give \\"cells\\" as the folder"$/);
    return true;
  });
  assert.deepEqual(await store.list('datasets/high/'), [], 'nothing registered, the latest left as it was');
  const named = await addDataset({ store, name: 'high', folder: root, size: 32, classes: ['cells', 'mixed'] });
  assert.deepEqual([named.manifest.classNames, named.manifest.items.length], [['cells', 'mixed'], 9]);
  assert.match(named.warnings[0]!, /all its 6 images sit in sub-folders/, 'still said');
  // A folder of labelled folders, every one nested the same way (train/ and test/, each with the classes): refused too.
  const split = await labelled('split', { 'train/Parasitized': 3, 'train/Uninfected': 3, 'test/Parasitized': 2, 'test/Uninfected': 2 });
  await assert.rejects(addDataset({ store, name: 'split', folder: split, size: 32 }), (e: unknown) => {
    assert.ok(e instanceof InvalidParameterError && e.field === 'folder', String(e));
    assert.match(e.message, /class \\"test\\": all its 4 images sit in sub-folders \(Parasitized, Uninfected\), the same ones as \\"train\\", and are all labelled \\"test\\"; if those sub-folders are the classes, give \\"test\\" as the folder/);
    return true;
  });
  // Classes holding patients' or slides' folders (class/slide/image), the same slides in both classes (a slide has
  // cells of both), however few: a layout, taken as it is.
  const patients = Object.fromEntries(['Parasitized', 'Uninfected'].flatMap((cls) => ['C1', 'C2', 'C3', 'C4', 'C5', 'C6'].map((p) => [`${cls}/${p}`, 1])));
  const byPatient = await addDataset({ store, name: 'bypatient', folder: await labelled('bypatient', patients), size: 32 });
  assert.deepEqual([byPatient.manifest.classNames, byPatient.manifest.items.length, byPatient.warnings], [['Parasitized', 'Uninfected'], 12, []]);
  const slides = await addDataset({ store, name: 'byslide', folder: await labelled('byslide', { 'Parasitized/slide-01': 2, 'Parasitized/slide-02': 2, 'Uninfected/slide-01': 2, 'Uninfected/slide-02': 2 }), size: 32 });
  assert.deepEqual([slides.manifest.classNames, slides.manifest.items.length, slides.warnings], [['Parasitized', 'Uninfected'], 8, []]);
});

test('a labelled folder with a third, unknown class: its files are reported, the dataset keeps the named classes', async () => {
  const root = await labelled('three', { Parasitized: 3, Uninfected: 3, Platelets: 2 });
  const { manifest } = await addDataset({ store, name: 'three', folder: root, size: 32, classes: ['Parasitized', 'Uninfected'] });
  assert.equal(manifest.items.length, 6);
  assert.deepEqual(manifest.rejected.map((r) => r.name).sort(), ['Platelets/img0.png', 'Platelets/img1.png']);
  assert.match(manifest.rejected[0]!.error, /unknown class "Platelets"/);
});

test('a grey crop in a labelled folder is reported, not learned from (the cam-workers refuse grey crops too)', async () => {
  const root = await labelled('grey', { Parasitized: 3, Uninfected: 3 });
  const colour = await sharp(join(root, 'Uninfected', 'img0.png')).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  await sharp(colour.data, { raw: { width: colour.info.width, height: colour.info.height, channels: 3 } }).toColourspace('b-w').png().toFile(join(root, 'Uninfected', 'grey.png'));
  const { manifest } = await addDataset({ store, name: 'grey', folder: root, size: 32 });
  assert.equal(manifest.items.length, 6);
  assert.deepEqual(manifest.rejected, [{ name: 'Uninfected/grey.png', error: "greyscale: the cell crop has no colour (stored as one grey channel, 119×106): camflow tells parasites (and, in a field, cells) by the Giemsa stain's colours; submit the colour image" }]);
  // A smear field in a class folder is not a cell to learn from.
  const wide = await labelled('wide', { Parasitized: 3, Uninfected: 3 });
  await sharp({ create: { width: 1200, height: 1100, channels: 3, background: { r: 200, g: 120, b: 160 } } }).png().toFile(join(wide, 'Parasitized', 'field.png'));
  const withField = await addDataset({ store, name: 'wide', folder: wide, size: 32 });
  assert.deepEqual(withField.manifest.rejected, [{ name: 'Parasitized/field.png', error: "not-a-cell: image is 1200×1100, more than 8 cells of ~130 px across both ways: a smear field? a dataset holds one cell per image" }]);
  // What the snapshot refuses is not stored; what it keeps is.
  const digest = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex');
  assert.equal(await store.exists(keys.original(await digest(join(root, 'Uninfected', 'grey.png')), 'png')), false, 'the refused grey crop was stored under originals/');
  assert.equal(await store.exists(keys.original(await digest(join(root, 'Uninfected', 'img0.png')), 'png')), true);
});

test('identical images in a labelled folder: a copy in the same class is learned once, copies under two classes not at all — each listed with why', async () => {
  const root = await labelled('copies', { Parasitized: 4, Uninfected: 4 });
  await copyFile(join(root, 'Parasitized', 'img0.png'), join(root, 'Parasitized', 'zz-copy-of-img0.png'));
  await copyFile(join(root, 'Parasitized', 'img1.png'), join(root, 'Uninfected', 'img1-relabelled.png'));
  const { manifest } = await addDataset({ store, name: 'copies', folder: root, size: 32 });
  assert.deepEqual(manifest.items.map((i) => i.name).sort(), ['Parasitized/img0.png', 'Parasitized/img2.png', 'Parasitized/img3.png', 'Uninfected/img0.png', 'Uninfected/img1.png', 'Uninfected/img2.png', 'Uninfected/img3.png']);
  assert.equal(new Set(manifest.items.map((i) => i.sha256)).size, manifest.items.length, 'no content twice');
  const why = new Map(manifest.rejected.map((r) => [r.name, r.error]));
  assert.equal(why.get('Parasitized/zz-copy-of-img0.png'), 'duplicate: the same image (identical content) as Parasitized/img0.png, learned once');
  for (const name of ['Parasitized/img1.png', 'Uninfected/img1-relabelled.png']) {
    assert.equal(why.get(name), 'conflicting-labels: the same image (identical content) is in 2 classes: Parasitized/img1.png (Parasitized), Uninfected/img1-relabelled.png (Uninfected); which label is right cannot be told, so none is learned');
  }
  assert.equal(manifest.rejected.length, 3);
});

test('an empty class folder, a class with a single image, a missing folder are refused, naming what is wrong', async () => {
  const empty = await labelled('empty', { Parasitized: 3 });
  await mkdir(join(empty, 'Uninfected'), { recursive: true });
  await assert.rejects(addDataset({ store, name: 'empty', folder: empty, size: 32 }), (e: unknown) => e instanceof InvalidParameterError && /class "Uninfected"/.test(e.message));
  const single = await labelled('single', { Parasitized: 3, Uninfected: 1 });
  await assert.rejects(addDataset({ store, name: 'single', folder: single, size: 32 }), (e: unknown) => e instanceof InvalidParameterError && /class "Uninfected"/.test(e.message) && /at least 2/.test(e.message));
  const one = await labelled('oneclass', { Parasitized: 3 });
  await assert.rejects(addDataset({ store, name: 'oneclass', folder: one, size: 32 }), /at least two class folders/);
  // A patient pattern that is no regular expression, or has no capture group to name the patient: refused naming the
  // flag (exit 2 from the CLI), before any image is read.
  for (const pattern of ['(C\\d+', 'C\\d+']) {
    await assert.rejects(addDataset({ store, name: 'pattern', folder: single, size: 32, groupPattern: pattern }), (e: unknown) => e instanceof InvalidParameterError && e.field === '--group-pattern' && e.message.includes('first capture group is the patient') && e.message.includes(JSON.stringify(pattern)));
  }
  // A folder that is not there, or a file: named as such (not a raw ENOENT).
  await assert.rejects(addDataset({ store, name: 'missing', folder: join(dir, 'no-such-folder'), size: 32 }), (e: unknown) => e instanceof InvalidParameterError && e.field === 'folder' && /no such folder/.test(e.message));
  const file = join(single, 'Parasitized', (await readdir(join(single, 'Parasitized')))[0]!);
  await assert.rejects(addDataset({ store, name: 'file', folder: file, size: 32 }), (e: unknown) => e instanceof InvalidParameterError && /a file/.test(e.message));
});

test('archive members with ../ or absolute paths stay metadata: nothing is written outside, names are cleaned', async () => {
  const png = await readFile(join(dir, 'cells', 'Parasitized', (await readdir(join(dir, 'cells', 'Parasitized')))[0]!));
  const staging = join(dir, 'evil', 'inner');
  await mkdir(staging, { recursive: true });
  await writeFile(join(staging, 'ok.png'), png);
  await writeFile(join(staging, 'abs.png'), png); // its own inode: tar would store a second name of ok.png as a hard link
  await writeFile(join(dir, 'evil', 'escape.png'), png);
  await writeFile(join(staging, 'notes.txt'), 'not an image');
  // Build tar and zip archives whose members climb out with ../ and start with /, using the system tools.
  const tarPath = join(dir, 'evil.tar');
  const tarGz = join(dir, 'evil.tar.gz');
  assert.equal(spawnSync('tar', ['-cf', tarPath, '-P', '-C', staging, 'ok.png', 'notes.txt', '../escape.png', `${staging}/abs.png`]).status, 0);
  assert.equal(spawnSync('tar', ['-czf', tarGz, '-P', '-C', staging, 'ok.png', '../escape.png']).status, 0);
  const zipPath = join(dir, 'evil.zip');
  const py = `import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1],'w')\nz.writestr('../../escape.png', open(sys.argv[2],'rb').read())\nz.writestr('/abs/x.png', open(sys.argv[2],'rb').read())\nz.writestr('docs/readme.txt', 'hello')\nz.close()`;
  assert.equal(spawnSync('python3', ['-c', py, zipPath, join(staging, 'ok.png')]).status, 0);
  const tarFiles = await collectEntries(await openSource(tarPath));
  assert.deepEqual(tarFiles.map((f) => f.name).sort(), ['escape.png', 'notes.txt', 'ok.png', `${staging.slice(1)}/abs.png`].sort());
  assert.deepEqual((await collectEntries(await openSource(tarGz))).map((f) => f.name).sort(), ['escape.png', 'ok.png']);
  const zipFiles = await collectEntries(await openSource(zipPath));
  assert.deepEqual(zipFiles.map((f) => f.name).sort(), ['abs/x.png', 'docs/readme.txt', 'escape.png']);
  const escaped = zipFiles.find((f) => f.name === 'escape.png')!;
  assert.ok('read' in escaped);
  assert.deepEqual(await escaped.read(), png);
  // Nothing was extracted next to the archives.
  await assert.rejects(stat(join(dir, 'escape.png')));
  await assert.rejects(stat('/abs/x.png'));
  assert.equal(keys.original('a'.repeat(64), 'png').includes('..'), false);
});

test('animated or multi-page images are refused with a reason; a single-page file of the same kind is accepted', async () => {
  const { inspectImage, ImageInputError } = await import('@camflow/common');
  const frame = (r: number) => sharp({ create: { width: 16, height: 16, channels: 3, background: { r, g: 0, b: 0 } } }).png().toBuffer();
  const animated = await sharp([await frame(10), await frame(200)], { join: { animated: true } }).webp().toBuffer();
  await assert.rejects(inspectImage(animated), (e: unknown) => e instanceof ImageInputError && e.reason === 'multi-page');
  const tiff = await sharp([await frame(10), await frame(200)], { join: { animated: true } }).tiff().toBuffer();
  await assert.rejects(inspectImage(tiff), (e: unknown) => e instanceof ImageInputError && e.reason === 'multi-page');
  assert.equal((await inspectImage(await sharp(await frame(5)).webp().toBuffer())).format, 'webp');
  // A pyramidal TIFF (a slide scanner's layout: each page a smaller copy of the first) is one image: its first page.
  const pyramid = await sharp({ create: { width: 1024, height: 768, channels: 3, background: { r: 200, g: 150, b: 160 } } }).tiff({ tile: true, pyramid: true, tileWidth: 128, tileHeight: 128 }).toBuffer();
  assert.ok(((await sharp(pyramid).metadata()).pages ?? 1) > 1, 'the pyramid has several pages');
  assert.deepEqual(await inspectImage(pyramid).then((i) => [i.format, i.width, i.height]), ['tiff', 1024, 768]);
});

test('a stored JSON object that does not parse is reported as corrupt, naming the key; a missing one is undefined', async () => {
  await store.put('results/b-x/summary.json', '{"ok": 3, "fail', 'application/json');
  await assert.rejects(store.getJsonIfExists('results/b-x/summary.json'), (e: Error & { code?: string }) => e.code === 'CORRUPT_OBJECT' && /results\/b-x\/summary\.json/.test(e.message));
  assert.equal(await store.getJsonIfExists('results/b-x/absent.json'), undefined);
  await store.put('results/b-x/summary.json', '{"ok": 3}', 'application/json');
  assert.deepEqual(await store.getJson('results/b-x/summary.json'), { ok: 3 });
});
