import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  compileGroupPattern,
  defaultPositiveClass,
  InvalidParameterError,
  evaluateForModel,
  stainPointingForBatch,
  withStainAudit,
  getDatasetManifest,
  namedModel,
  trainingContent,
  unknownTrainingText,
  getProduction,
  keys,
  type Box,
  truthBoxesSchema,
  type EvaluationReport,
  type ModelManifest,
  isCellResult,
  NotFoundError,
  manifestLineSchema,
  parseJsonLines,
  parseWith,
  batchInfoSchema,
  suggest,
} from '@camflow/common/core';
import { batchProgress, listFolder, submitBatch, noModelError, type SourceFile } from '@camflow/ingest';
import type { Context } from './context.js';
import { writeEvalReport, type Subset } from './report.js';
import { readResults, waitForBatch } from './wait.js';

export interface EvalOptions {
  /** A labelled folder (`<folder>/<class>/<image>`) or a dataset (`name` or `name@version`). */
  source: string;
  model?: string;
  /** A regex whose first group is the patient / slide in a file name (default: `DEFAULT_GROUP_PATTERN`, `^([A-Za-z]+\d+)`: NIH `C<n>`, synthetic `S<n>`). */
  groupPattern?: string;
  /** Truth boxes: a JSON map name → boxes, or the synthetic generator's `{ boxes: {…} }` (default: `<folder>/boxes.json`). */
  boxes?: string;
  /**
   * What the CAM's localization is scored against: `boxes` (the truth boxes), `stain` (the parasite stain found in
   * each positive image's pixels), `none`, or `auto` (default): boxes where given, else the stain.
   */
  truth?: 'auto' | 'boxes' | 'stain' | 'none';
  /**
   * Which images of a dataset snapshot: `validation` (the images the model was validated on, never trained on — needs
   * the model's own snapshot), `all`, or `auto` (default): `validation` for the model's own snapshot when its split
   * is recorded, else `all`. Folders are always scored whole.
   */
  subset?: 'auto' | 'validation' | 'all';
  out: string;
  /**
   * A batch already submitted for this source (by a `camflow eval` whose wait was stopped with Ctrl-C): its results
   * are scored instead of the images being submitted again. Its images must be the source's, localized by the model
   * scored (by default the batch's own).
   */
  batch?: string;
  /** Images localized so far of those submitted (chunks while the images are not counted yet). */
  onProgress?: (done: number, total: number) => void;
  /** A warning for the user, in words (default: a `warning: …` line on stderr, never on stdout). */
  onWarning?: (message: string) => void;
  /** Called once the batch is known, before the wait; returns what to call when the wait ends. */
  onBatch?: (batchId: string) => () => void;
}

export { DEFAULT_GROUP_PATTERN } from '@camflow/common/core';

/** A batch given with `--batch` must hold exactly the source's images (its model is checked before the wait). */
function batchOfSource(batchId: string, results: readonly { name: string }[], names: string[], source: string): void {
  const expected = `a batch of the ${names.length} images of ${source}`;
  const wanted = new Set(names);
  const got = new Set(results.map((r) => r.name));
  const missing = names.filter((n) => !got.has(n));
  const extra = [...got].filter((n) => !wanted.has(n));
  if (missing.length || extra.length) {
    const detail = [missing.length ? `${missing.length} of the source's images not in it (${missing.slice(0, 3).join(', ')})` : '', extra.length ? `${extra.length} images not in the source (${extra.slice(0, 3).join(', ')})` : ''].filter(Boolean).join(', ');
    throw new InvalidParameterError('--batch', expected, `${batchId}: ${detail}`);
  }
}


/**
 * The labelled images of a folder or a dataset snapshot, each named `<class>/<file>`: for the model's own snapshot,
 * by default only the images it was validated on (`EvalOptions.subset`).
 */
async function labelledSource(ctx: Context, source: string, model: ModelManifest, want: 'auto' | 'validation' | 'all'): Promise<{ files: SourceFile[]; folder?: string } & Subset> {
  const entry = await stat(source).catch(() => undefined);
  if (entry?.isDirectory()) {
    if (want === 'validation') throw new InvalidParameterError('--subset', 'validation only with a dataset snapshot (a folder is scored whole)', want);
    const files = (await listFolder(source)).filter((f) => f.name.includes('/'));
    return { files, folder: source, subset: 'folder' };
  }
  if (entry) throw new InvalidParameterError('source', 'a labelled folder (<folder>/<class>/<image>) or a dataset name[@version]', `${source} (a file)`);
  if (/[/\\]/.test(source) || source.startsWith('.')) throw new InvalidParameterError('source', 'a labelled folder (<folder>/<class>/<image>) or a dataset name[@version]', `${source} (no such folder)`);
  const [name, version] = source.split('@');
  const manifest = await getDatasetManifest(ctx.store, name!, version ?? 'latest');
  const own = model.dataset.name === manifest.name && model.dataset.version === manifest.version;
  const recorded = own ? model.dataset.validation : undefined;
  if (want === 'validation' && !recorded) {
    throw new InvalidParameterError(
      '--subset',
      `validation only for the model's own snapshot (${model.dataset.name}@${model.dataset.version}) with its split recorded (models published since 2026-11-28)`,
      `${manifest.name}@${manifest.version} with model ${model.version}`,
    );
  }
  const validation = want !== 'all' && recorded ? new Set(recorded) : undefined;
  const files: SourceFile[] = manifest.items
    .filter((_, i) => !validation || validation.has(i))
    .map((item) => ({
      name: `${manifest.classNames[item.label]}/${basename(item.name)}`,
      read: () => ctx.store.get(keys.original(item.sha256, item.ext)),
    }));
  const of = manifest.items.length;
  if (validation) return { files, subset: 'validation', trainingImages: 0, trainingBy: 'split', of };
  // The model's own snapshot, whole: all but its validation images were training images.
  if (own) return { files, subset: 'all', trainingImages: model.dataset.trainItems, trainingBy: 'split', of };
  // Another snapshot (another name, or another version of the model's own) may hold its training images: by content.
  const seen = await trainingImagesAmong(ctx, model, manifest.items.map((item) => item.sha256));
  return { files, subset: 'all', ...(typeof seen === 'number' ? { trainingImages: seen, trainingBy: 'content' as const } : { trainingUnknown: seen.unknown }), of };
}

/**
 * How many of these images, by their content hashes (a folder's batch results, another snapshot's items), are training
 * images of the model; when that cannot be known (no split recorded, the snapshot removed), why, in words.
 */
async function trainingImagesAmong(ctx: Context, model: ModelManifest, sha256s: readonly (string | undefined)[]): Promise<number | { unknown: string }> {
  const seen = await trainingContent(ctx.store, model);
  if (!seen.known) return { unknown: unknownTrainingText(model, seen.why) };
  return sha256s.filter((sha256) => sha256 !== undefined && seen.sha256s.has(sha256)).length;
}

/** The warning when some of the scored images trained the model, in words; undefined when none did (or unknown). */
function trainingImagesWarning(subset: Subset, images: number, model: ModelManifest): string | undefined {
  if (subset.trainingUnknown) return `which of these ${images} images trained model ${model.version} cannot be told (${subset.trainingUnknown}): if some did, these scores are not those of unseen images`;
  if (!subset.trainingImages) return undefined;
  const snapshot = `${model.dataset.name}@${model.dataset.version}`;
  return subset.trainingBy === 'content'
    ? `${subset.trainingImages} of these ${images} images trained model ${model.version} (the same content as its training images in ${snapshot}): these scores are not those of unseen images (\`camflow eval ${snapshot}\` scores its validation images)`
    : `${subset.trainingImages} of these ${images} images trained model ${model.version} (its training images in ${snapshot}): these scores are not those of unseen images (--subset validation scores the others)`;
}

const warnOnStderr = (message: string) => process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}warning: ${message}\n`);

/** What a class folder the model does not know may have meant: the nearest class, or the case slip said as such. */
function classHint(folder: string, classNames: readonly string[]): string {
  const near = suggest(folder, classNames);
  if (!near) return '';
  return near.toLowerCase() === folder.toLowerCase() ? ` (class names are case-sensitive: ${near})` : ` (did you mean ${near}?)`;
}

const BOXES_EXPECTED = 'a JSON file of truth boxes: {"<class>/<file>": [{"x", "y", "width", "height"}, …]} (or that object under "boxes")';

/** The truth boxes of `--boxes`: a missing, unreadable or malformed file is refused naming it, before anything is submitted. */
async function readBoxes(path: string): Promise<Record<string, Box[]>> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    throw new InvalidParameterError('--boxes', BOXES_EXPECTED, `${path} (${e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'a folder' : e.code ? e.code : `not JSON: ${e.message}`})`);
  }
  const inner = raw !== null && typeof raw === 'object' && 'boxes' in raw && raw.boxes && typeof raw.boxes === 'object' && !Array.isArray(raw.boxes) ? raw.boxes : raw;
  const parsed = truthBoxesSchema.safeParse(inner);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InvalidParameterError('--boxes', BOXES_EXPECTED, `${path} (at ${issue.path.length ? issue.path.join('.') : 'the top'}: ${issue.message})`);
  }
  return parsed.data;
}

/**
 * `camflow eval`: localize a labelled set through the real queues with a model version, and score it:
 * classification (accuracy, recall, specificity, ROC AUC, ECE, confusion matrix, the screening operating point,
 * per patient), localization where truth boxes exist, an HTML report with the worst errors, and one JSON line.
 */
export async function runEval(ctx: Context, options: EvalOptions): Promise<{ line: Record<string, unknown>; report: EvaluationReport; html: string }> {
  const given = options.batch ? await batchProgress(ctx.store, ctx.queues.batch, options.batch) : undefined;
  if (given && given.state === 'unknown') throw new NotFoundError('batch', options.batch!);
  const version = options.model ?? given?.info?.modelVersion ?? (await getProduction(ctx.store))?.version;
  if (!version) throw await noModelError(ctx.store);
  const model = await namedModel(ctx.store, version);
  const want = options.subset ?? 'auto';
  if (!['auto', 'validation', 'all'].includes(want)) throw new InvalidParameterError('--subset', 'one of auto, validation, all', want);
  const { files, folder, ...subset } = await labelledSource(ctx, options.source, model, want);
  if (files.length === 0) throw new InvalidParameterError('source', 'a labelled folder (<folder>/<class>/<image>) or a dataset', options.source);
  // Scores need images under the model's class folders: a folder named otherwise would score nothing.
  const folders = [...new Set(files.map((f) => f.name.split('/')[0]!))];
  // Every folder: one the model does not know would be submitted, then skipped when scored.
  const unknown = folders.filter((f) => !model.classNames.includes(f));
  if (unknown.length) {
    const named = unknown.slice(0, 5).map((f) => `${f}${classHint(f, model.classNames)}`);
    throw new InvalidParameterError('source', `class folders named as model ${model.version}'s classes (${model.classNames.join(', ')})`, `folder${unknown.length === 1 ? '' : 's'} ${named.join(', ')} in ${options.source}`);
  }
  const warn = options.onWarning ?? warnOnStderr;
  const before = trainingImagesWarning(subset, files.length, model);
  if (before) warn(before);
  const group = compileGroupPattern(options.groupPattern, '--group-pattern');
  const truth = options.truth ?? 'auto';
  if (!['auto', 'boxes', 'stain', 'none'].includes(truth)) throw new InvalidParameterError('--truth', 'one of auto, boxes, stain, none', truth);
  const boxesPath = truth === 'stain' || truth === 'none' ? undefined : (options.boxes ?? (folder && existsSync(join(folder, 'boxes.json')) ? join(folder, 'boxes.json') : undefined));
  if (truth === 'boxes' && !boxesPath) throw new InvalidParameterError('--boxes', 'a boxes.json (or one in the folder) with --truth boxes', options.boxes);
  const boxes = boxesPath ? await readBoxes(boxesPath) : undefined;
  if (boxes) {
    // Boxes keyed otherwise than the images (bare file names, absolute paths) would score no localization, silently.
    const names = new Set(files.map((f) => f.name));
    const boxNames = Object.keys(boxes);
    const matched = boxNames.filter((n) => names.has(n)).length;
    if (matched === 0) {
      throw new InvalidParameterError('--boxes', `boxes keyed by the source's image names, <class>/<file> (e.g. "${files[0]!.name}")`, `${boxesPath}: ${boxNames.length ? `none of its ${boxNames.length} names is one (e.g. "${boxNames[0]}")` : 'no boxes'}`);
    }
    if (matched < boxNames.length) warn(`${boxNames.length - matched} of the ${boxNames.length} names in ${boxesPath} are no image of the source (e.g. "${boxNames.find((n) => !names.has(n))}"): their boxes are not used`);
  }
  // A batch of other images, or of another model, is refused before any wait (names are checked once results are in).
  if (given?.info && given.info.modelVersion !== version) throw new InvalidParameterError('--batch', `a batch localized by model ${version} (--model)`, `${options.batch}, localized by ${given.info.modelVersion}`);
  if (given?.info && given.info.items !== files.length) throw new InvalidParameterError('--batch', `a batch of the ${files.length} images of ${options.source}`, `${options.batch}, which holds ${given.info.items}`);
  if (given?.info && truth !== 'none' && given.info.options.target !== 'all' && given.info.options.target !== (model.screening?.positiveClass ?? defaultPositiveClass(model.classNames))) {
    // Localization is scored on the positive class's CAM, which `--target predicted` computes only for the images the
    // model already called positive: a pointing score over those alone.
    throw new InvalidParameterError('--batch', "a batch localized with --target all, as eval submits (localization is scored on every image's positive-class CAM), or --truth none", `${options.batch}, localized with --target ${given.info.options.target}`);
  }
  if (given?.cancelled) throw new InvalidParameterError('--batch', 'a batch that was not cancelled (its cancelled images have no result to score)', `${options.batch}, cancelled at ${given.cancelled.at}`);
  if (given) {
    // Its entries' names, before any wait (an S3-prefix batch still listing has no manifest yet: checked after).
    const manifest = await ctx.store.getIfExists(keys.batchManifest(given.batchId));
    if (manifest) batchOfSource(options.batch!, parseJsonLines(manifest.toString('utf8'), manifestLineSchema, keys.batchManifest(given.batchId)), files.map((f) => f.name), options.source);
  }
  const t0 = Date.now();
  const batch = given ? { batchId: given.batchId } : await submitBatch({
    store: ctx.store,
    flow: ctx.flow,
    redis: ctx.redis,
    queues: ctx.queues,
    prefix: ctx.config.QUEUE_PREFIX,
    source: files,
    modelVersion: version,
    options: { target: 'all', outputs: ['overlay'] },
    chunkSize: ctx.config.CAM_CHUNK_SIZE,
    attempts: ctx.config.CAM_ATTEMPTS,
    backoffMs: ctx.config.CAM_BACKOFF_MS,
    maxPixels: ctx.config.MAX_IMAGE_PIXELS,
    log: ctx.log,
  });
  const release = options.onBatch?.(batch.batchId);
  // Images, as `submit --wait` counts them (a chunk holds 256: a small evaluation is one chunk for its whole run).
  await waitForBatch(ctx, batch.batchId, 24 * 3600_000, (s) => (s.images ? options.onProgress?.(s.images.done, s.images.total) : options.onProgress?.(s.chunks.done, s.chunks.total))).finally(release);
  const results = await readResults(ctx.store, batch.batchId);
  if (given) batchOfSource(options.batch!, results, files.map((f) => f.name), options.source);
  if (subset.subset === 'folder') {
    // A folder may hold the model's own training images (dev cells copied aside): found by content, said plainly.
    const seen = await trainingImagesAmong(ctx, model, results.map((r) => ('sha256' in r ? r.sha256 : undefined)));
    Object.assign(subset, typeof seen === 'number' ? { trainingImages: seen, trainingBy: 'content' } : { trainingUnknown: seen.unknown });
    const after = trainingImagesWarning(subset, results.length, model);
    if (after) warn(after);
  }
  const { positiveClass, ...scores } = evaluateForModel(results, model, { groupPattern: group, ...(boxes ? { boxes } : {}) });
  const ok = results.filter(isCellResult);
  const stain = !boxes && (truth === 'auto' || truth === 'stain') ? await stainPointingForBatch(ctx.store, batch.batchId, ok, positiveClass) : undefined;
  const report: EvaluationReport = stain ? withStainAudit(scores, results, model, stain, { groupPattern: group }) : scores;
  // The options the batch's images were localized with (a --batch's may differ from eval's own): the report's
  // overlays are drawn with them.
  const { options: camOptions } = parseWith(batchInfoSchema, await ctx.store.getJson(keys.batchInfo(batch.batchId)), 'batch info');
  const html = await writeEvalReport(options.out, { store: ctx.store, model, batchId: batch.batchId, options: camOptions, ok, report, positiveClass, group, subset });
  const c = report.classification;
  const sp = report.stainPointing;
  // Null stays null: a folder of one class has no specificity (or recall) and no ROC AUC.
  const round = <T extends number | null>(v: T): T => (v === null ? v : (Math.round(v * 10_000) / 10_000) as T);
  const line = {
    eval: {
      model: version,
      batchId: batch.batchId,
      images: c.images,
      subset: subset.subset,
      ...(subset.trainingImages !== undefined ? { training_images: subset.trainingImages } : {}),
      skipped: report.skipped.length,
      positiveClass,
      accuracy: round(c.accuracy),
      recall: round(c.recall),
      specificity: round(c.specificity),
      roc_auc: round(c.rocAuc),
      ece: round(c.ece),
      ...(c.recallAtSpecificity ? { recall_at_spec_097: round(c.recallAtSpecificity.recall) } : {}),
      ...(c.screening ? { screen_threshold: round(c.screening.threshold), screen_recall: round(c.screening.recall), screen_specificity: round(c.screening.specificity) } : {}),
      ...(c.groups ? { groups: Object.keys(c.groups).length } : {}),
      ...(report.localization ? { pointing: round(report.localization.pointing), loc_iou50: round(report.localization.locIou50), max_box_acc_v2: round(report.localization.maxBoxAccV2), localized_images: report.localization.images } : {}),
      // No positive image with stain (a folder of negatives): nothing was pointed at — no score, not a score of 0.
      ...(sp ? { pointing_stain: sp.pointing === null ? null : round(sp.pointing), pointing_chance: sp.chance === null ? null : round(sp.chance), stain_images: sp.images, no_stain_images: sp.noStain } : {}),
      ...(report.stainSupported
        ? {
            accuracy_stain_supported: round(report.stainSupported.accuracy),
            recall_stain_supported: round(report.stainSupported.recall),
            specificity_stain_supported: round(report.stainSupported.specificity),
            ...(report.stainSupported.recallAtSpecificity ? { recall_at_spec_097_stain_supported: round(report.stainSupported.recallAtSpecificity.recall) } : {}),
          }
        : {}),
      seconds: Math.round((Date.now() - t0) / 1000),
      report: html,
    },
  };
  return { line, report, html };
}
