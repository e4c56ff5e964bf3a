import {
  compileGroupPattern,
  kindContradiction,
  DEFAULT_CELL_SIDE,
  InvalidParameterError,
  ImageInputError,
  greyCellRefusal,
  datasetManifestSchema,
  datasetVersion,
  itemsPerShard,
  keys,
  mapLimit,
  parseWith,
  preprocess,
  type DatasetItem,
  type DatasetManifest,
  type Logger,
  type ObjectStore,
} from '@camflow/common/core';
import { readdir, stat } from 'node:fs/promises';
import { listFolder } from './sources.js';
import { checkOriginal, putOriginal, rejectionReason } from './store-image.js';

export interface AddDatasetOptions {
  store: ObjectStore;
  name: string;
  folder: string;
  /** Side of the preprocessed square images in the shards (seed: 128). */
  size?: number;
  /** Expected class folders; others are reported. Default: every sub-folder, sorted. */
  classes?: string[];
  /** Regex whose first group names the patient/slide in a file name (NIH: `C123`). */
  groupPattern?: string;
  /** How the caller names that option in an error (`--group-pattern`, `fields.groupPattern`). */
  groupPatternField?: string;
  maxPixels?: number;
  concurrency?: number;
  log?: Logger;
  onProgress?: (done: number, total: number) => void;
  /** Called before the snapshot's manifest and the `latest` pointer are written: throws to stop (a lost lease). */
  beforeCommit?: () => Promise<void>;
}

/** Default group: the NIH patient prefix `C<n>` (or the synthetic `S<n>`); one pattern, shared with `camflow eval`. */
export { DEFAULT_GROUP_PATTERN } from '@camflow/common/core';

export interface AddDatasetResult {
  manifest: DatasetManifest;
  created: boolean;
  /** What looks wrong but was accepted: images nested under a class folder's sub-folders, classes far apart in size. */
  warnings: string[];
  /** The version that was the dataset's latest before this one, when another (it stays addressable as name@version). */
  replaced?: { version: string; items: number };
}

/** Pure: what looks wrong in a class layout (each class's file names relative to the folder). */
export function layoutWarnings(byClass: Map<string, { name: string }[]>, classNames: readonly string[]): string[] {
  return [...misplacedClasses(byClass, classNames), ...sizeWarnings(byClass, classNames)];
}

/**
 * Pure: class folders that hold class folders — a folder given one level too high (`data/` holding `cells/{P,U}` and
 * `smears/`): every image of such a "class" would be learned under the wrong name. Sub-folders in every class are a
 * layout (class/patient/image), not this.
 */
export function misplacedClasses(byClass: Map<string, { name: string }[]>, classNames: readonly string[]): string[] {
  const warnings: string[] = [];
  const nested = (cls: string) => (byClass.get(cls) ?? []).every((f) => f.name.split('/').length >= 3);
  // Sub-folders in every class are a layout (class/patient/image); in one class beside flat ones, a folder too high.
  const someFlat = classNames.some((c) => (byClass.get(c) ?? []).length > 0 && !nested(c));
  for (const cls of classNames) {
    const list = byClass.get(cls) ?? [];
    const subfolders = new Set(list.map((f) => f.name.split('/')).filter((parts) => parts.length >= 3).map((parts) => parts[1]!));
    if (someFlat && list.length > 0 && subfolders.size >= 2 && nested(cls)) {
      const shown = [...subfolders].sort().slice(0, 4);
      warnings.push(`class "${cls}": all its ${list.length} images sit in sub-folders (${shown.join(', ')}${subfolders.size > 4 ? ', …' : ''}) and are all labelled "${cls}"; if those sub-folders are the classes, give "${cls}" as the folder`);
    }
  }
  // Every "class" a split or a version (`split/{train,test}/{Parasitized,Uninfected}`, `{v1,v2}/…`), each holding the
  // same few sub-folders: a folder of labelled folders. Classes holding the same slides (`Parasitized/slide-01`,
  // `Uninfected/slide-01`: a slide has cells of both) are a layout, whatever their number.
  if (!someFlat) {
    const byLayout = new Map<string, string[]>();
    for (const cls of classNames) {
      const list = byClass.get(cls) ?? [];
      if (list.length === 0 || !nested(cls) || !SPLIT_OR_VERSION.test(cls)) continue;
      const subs = [...new Set(list.map((f) => f.name.split('/')[1]!))].sort();
      if (subs.length < 2 || subs.length > 5) continue;
      const layout = subs.join('/');
      byLayout.set(layout, [...(byLayout.get(layout) ?? []), cls]);
    }
    for (const [layout, classes] of byLayout) {
      if (classes.length < 2) continue;
      for (const cls of classes) {
        warnings.push(`class "${cls}": all its ${(byClass.get(cls) ?? []).length} images sit in sub-folders (${layout.split('/').join(', ')}), the same ones as ${classes.filter((c) => c !== cls).map((c) => `"${c}"`).join(', ')}, and are all labelled "${cls}"; if those sub-folders are the classes, give "${cls}" as the folder`);
      }
    }
  }
  return warnings;
}

/** Folder names that are a dataset's split or version, never a class of cells. */
const SPLIT_OR_VERSION = /^(train(ing)?|test(ing)?|val(id(ation)?)?|dev|holdout|eval(uation)?|v\d+([._]\d+)*|\d{4}([-_.]?\d{2}){0,2})$/i;

function sizeWarnings(byClass: Map<string, { name: string }[]>, classNames: readonly string[]): string[] {
  const warnings: string[] = [];
  const counts = classNames.map((c) => ({ c, n: (byClass.get(c) ?? []).length }));
  const most = counts.reduce((a, b) => (b.n > a.n ? b : a));
  const least = counts.reduce((a, b) => (b.n < a.n ? b : a));
  if (least.n > 0 && most.n >= 10 * least.n) warnings.push(`classes far apart in size: "${most.c}" has ${most.n} images, "${least.c}" ${least.n} (the trainer weights the classes, but check the folder)`);
  return warnings;
}

/**
 * Pure: images of identical content (same SHA-256) among a snapshot's accepted items. A copy in the same class is kept
 * once (the first by position: class order, then name) — learned twice it weighs double, and the patient split could
 * put the two copies on both sides, scoring the model on an image it trained on. Copies under different classes are
 * all refused: which label is right cannot be told. Returns the positions to drop, each with its reason.
 */
export function duplicateContent(items: readonly { name: string; sha256: string; label: number }[], classNames: readonly string[]): Map<number, string> {
  const bySha = new Map<string, number[]>();
  items.forEach((item, i) => {
    bySha.set(item.sha256, [...(bySha.get(item.sha256) ?? []), i]);
  });
  const drop = new Map<number, string>();
  for (const positions of bySha.values()) {
    if (positions.length < 2) continue;
    const labels = new Set(positions.map((i) => items[i]!.label));
    if (labels.size > 1) {
      const where = positions.map((i) => `${items[i]!.name} (${classNames[items[i]!.label]})`).join(', ');
      for (const i of positions) drop.set(i, `conflicting-labels: the same image (identical content) is in ${labels.size} classes: ${where}; which label is right cannot be told, so none is learned`);
      continue;
    }
    const [kept, ...copies] = positions;
    for (const i of copies) drop.set(i, `duplicate: the same image (identical content) as ${items[kept!]!.name}, learned once`);
  }
  return drop;
}

/**
 * Register a labelled folder (`<folder>/<class>/<image>`) as an immutable, content-versioned dataset snapshot:
 * originals stored content-addressed, images preprocessed with sharp into packed shards (O(N/1000) objects to
 * load), and a manifest. Registering the same folder again is a no-op returning the same version.
 * @example const m = await addDataset({ store, name: 'cells', folder: './cells' });
 */
export async function addDataset(options: AddDatasetOptions): Promise<AddDatasetResult> {
  const { store, name, folder } = options;
  const size = options.size ?? 128;
  const group = compileGroupPattern(options.groupPattern, options.groupPatternField ?? '--group-pattern');
  keys.datasetPrefix(name); // validates the name early
  const entry = await stat(folder).catch(() => undefined);
  if (!entry?.isDirectory()) throw new InvalidParameterError('folder', 'a folder of class folders (<folder>/<class>/<image>)', `${folder} (${entry ? 'a file' : 'no such folder'})`);
  const entries = await listFolder(folder);
  const rejected: { name: string; error: string }[] = [];
  const files: Extract<(typeof entries)[number], { read(): Promise<Buffer> }>[] = [];
  for (const e of entries) {
    if ('refused' in e) rejected.push({ name: e.name, error: `${e.refused.reason}: ${e.refused.error}` });
    else files.push(e);
  }
  const byClass = new Map<string, typeof files>();
  for (const f of files) {
    const parts = f.name.split('/');
    if (parts.length < 2) {
      rejected.push({ name: f.name, error: 'not inside a class folder (<folder>/<class>/<image>)' });
      continue;
    }
    const list = byClass.get(parts[0]!) ?? [];
    list.push(f);
    byClass.set(parts[0]!, list);
  }
  // Empty class folders hold no files, so they are found from the directory listing itself.
  const folders = (await readdir(folder, { withFileTypes: true })).filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
  for (const f of folders) if (!byClass.has(f) && (!options.classes || options.classes.includes(f))) throw new InvalidParameterError(`class "${f}"`, 'a folder with at least 2 images', 'an empty folder');
  const classNames = options.classes ?? [...byClass.keys()].sort();
  if (classNames.length < 2) {
    const found = classNames.length === 0 ? 'no class folder with images' : `one class folder (${classNames[0]})`;
    throw new InvalidParameterError('folder', 'at least two class folders of images, <folder>/<class>/<image> (a model learns to tell its classes apart)', `${found} in ${folder}`);
  }
  for (const [cls, list] of byClass) {
    if (!classNames.includes(cls)) {
      for (const f of list) rejected.push({ name: f.name, error: `unknown class "${cls}" (expected one of ${classNames.join(', ')})` });
    }
  }
  // A folder given one level too high would be registered — and become the latest — under the wrong class names:
  // refused before any image is read, unless the classes were named (the layout is then what the user means).
  const misplaced = options.classes ? [] : misplacedClasses(byClass, classNames);
  if (misplaced.length) {
    throw new InvalidParameterError('folder', `class folders holding their images (<folder>/<class>/<image>), or the classes named (--classes ${classNames.join(',')}) to take this layout as it is`, `${folder}: ${misplaced[0]}${misplaced.length > 1 ? ` (and ${misplaced.length - 1} more class${misplaced.length > 2 ? 'es' : ''} so)` : ''}`);
  }
  const warnings = layoutWarnings(byClass, classNames);
  for (const w of warnings) options.log?.warn({ dataset: name }, w);
  const candidates = classNames.flatMap((cls, label) => (byClass.get(cls) ?? []).map((f) => ({ file: f, label })));
  const known = new Set<string>();
  let done = 0;
  const prepared = await mapLimit(candidates, options.concurrency ?? 8, async ({ file, label }) => {
    try {
      const bytes = await file.read();
      const { kind: _kind, format, ...stored } = await checkOriginal(bytes, options.maxPixels ?? 268_402_689);
      // A smear field dropped into a class folder would be shrunk to one "cell" and learned as one: refused as submit
      // refuses it under --kind cells.
      const notACell = kindContradiction('cells', stored.width, stored.height);
      if (notACell) throw new ImageInputError(notACell.reason, `image is ${stored.width}×${stored.height}, more than 8 cells of ~${DEFAULT_CELL_SIDE} px across both ways: a smear field? a dataset holds one cell per image`);
      const { input } = await preprocess(bytes, size, options.maxPixels, { keepOriginal: false });
      // The cam-workers refuse a grey crop (no stain to read); a model must not learn from one either.
      const grey = greyCellRefusal(input, stored.width, stored.height);
      if (grey) throw grey;
      // Only what the snapshot may keep is stored: a refused file leaves nothing under originals/ (copies refused
      // later as conflicting labels share one stored original, content-addressed, unreferenced by the snapshot).
      await putOriginal(store, bytes, { ...stored, format }, known);
      const base = file.name.split('/').pop()!;
      return { item: { name: file.name, ...stored, label, group: group.exec(base)?.[1] ?? base }, input };
    } catch (error) {
      rejected.push({ name: file.name, error: rejectionReason(error) });
      return undefined;
    } finally {
      options.onProgress?.(++done, candidates.length);
    }
  });
  const readable = prepared.filter((p): p is NonNullable<typeof p> => p !== undefined);
  const duplicates = duplicateContent(readable.map((p) => p.item), classNames);
  for (const [i, error] of duplicates) rejected.push({ name: readable[i]!.item.name, error });
  const accepted = readable.filter((_, i) => !duplicates.has(i));
  for (const [label, cls] of classNames.entries()) {
    const n = accepted.filter((p) => p.item.label === label).length;
    if (n < 2) throw new InvalidParameterError(`class "${cls}"`, 'at least 2 readable images', n);
  }
  const version = datasetVersion(size, classNames, accepted.map((p) => p.item));
  // The version this one replaces as the latest (said, never silent: `train --dataset` follows the latest).
  const before = (await store.getJsonIfExists(keys.datasetLatest(name))) as { version: string } | undefined;
  const previous = before && before.version !== version ? await store.getJsonIfExists(keys.datasetManifest(name, before.version)) : undefined;
  const replaced = previous ? { version: before!.version, items: parseWith(datasetManifestSchema, previous, 'dataset manifest').items.length } : undefined;
  const existing = await store.getJsonIfExists(keys.datasetManifest(name, version));
  if (existing) {
    options.log?.info({ dataset: name, version }, 'dataset snapshot already registered');
    await options.beforeCommit?.();
    await store.putJson(keys.datasetLatest(name), { version });
    return { manifest: parseWith(datasetManifestSchema, existing, 'dataset manifest'), created: false, warnings, ...(replaced ? { replaced } : {}) };
  }
  const perShard = itemsPerShard(size);
  const per = size * size * 3;
  const items: DatasetItem[] = [];
  const shards: DatasetManifest['shards'] = [];
  for (let s = 0; s * perShard < accepted.length; s++) {
    const slice = accepted.slice(s * perShard, (s + 1) * perShard);
    const body = new Uint8Array(slice.length * per);
    slice.forEach((p, slot) => {
      body.set(p.input, slot * per);
      items.push({ ...p.item, shard: s, slot });
    });
    await store.put(keys.datasetShard(name, version, s), body);
    shards.push({ index: s, count: slice.length, bytes: body.byteLength });
  }
  const manifest: DatasetManifest = { name, version, createdAt: new Date().toISOString(), classNames, size, items, shards, rejected };
  // The manifest is the commit point: shards without a manifest are invisible.
  await options.beforeCommit?.();
  await store.putJson(keys.datasetManifest(name, version), manifest);
  await store.putJson(keys.datasetLatest(name), { version });
  options.log?.info({ dataset: name, version, items: items.length, rejected: rejected.length, shards: shards.length }, 'dataset snapshot registered');
  return { manifest, created: true, warnings, ...(replaced ? { replaced } : {}) };
}
