import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  ROC_SPECIFICITY,
  blend,
  camAtSize,
  cellForeground,
  encodePng,
  esc,
  groupOf,
  heatmapRgb,
  isCellResult,
  isRefused,
  keys,
  manifestLineSchema,
  parseJsonLines,
  preprocess,
  type Box,
  type CamOptions,
  type EvaluationReport,
  type ModelManifest,
  type ObjectStore,
  type OkResult,
  type StainPointing,
} from '@camflow/common/core';
import type { ImageResult } from '@camflow/cam-worker';
import type { LocalizationReport } from './evaluate.js';


function curve(points: number[], width: number, height: number, colour: string, max: number): string {
  if (points.length === 0) return '';
  const step = points.length > 1 ? width / (points.length - 1) : 0;
  const d = points.map((v, i) => `${i === 0 ? 'M' : 'L'}${(i * step).toFixed(1)},${(height - (v / max) * height).toFixed(1)}`).join(' ');
  return `<path d="${d}" fill="none" stroke="${colour}" stroke-width="2"/>`;
}

/**
 * Write an HTML report: training curves, the localization scores, and a gallery of overlays with the predicted
 * box (white, drawn in the overlay) and the ground-truth boxes (green, SVG).
 */
export async function writeReport(
  dir: string,
  store: ObjectStore,
  model: ModelManifest,
  results: ImageResult[],
  truth: Record<string, Box[]>,
  scores: LocalizationReport,
  extra: Record<string, unknown>,
  galleryLimit = 48,
): Promise<string> {
  await mkdir(join(dir, 'overlays'), { recursive: true });
  const ok = results.filter(isCellResult);
  // Parasitized examples first: they are where localization shows.
  const chosen = [...ok.filter((r) => (truth[r.name]?.length ?? 0) > 0).slice(0, galleryLimit * 0.75), ...ok.filter((r) => !(truth[r.name]?.length ?? 0)).slice(0, galleryLimit / 4)];
  const tiles: string[] = [];
  for (const r of chosen) {
    if (!r.outputs.overlay) continue;
    const file = `overlays/${r.imageId}.png`;
    await writeFile(join(dir, file), await store.get(r.outputs.overlay));
    const gt = (truth[r.name] ?? []).map((b) => `<rect x="${b.x}" y="${b.y}" width="${b.width}" height="${b.height}" fill="none" stroke="#0f0" stroke-width="1.5"/>`).join('');
    tiles.push(
      `<figure><svg viewBox="0 0 ${r.width} ${r.height}" width="160" height="${Math.round((160 * r.height) / r.width)}"><image href="${file}" width="${r.width}" height="${r.height}"/>${gt}</svg>` +
        `<figcaption>${esc(r.name.split('/')[0]!)} → <b>${esc(r.predicted.label)}</b> ${(r.predicted.probability * 100).toFixed(1)}%</figcaption></figure>`,
    );
  }
  const h = model.metrics.history;
  const maxLoss = Math.max(...h.map((e) => Math.max(e.loss ?? 0, e.valLoss ?? 0)), 1e-6);
  const svg = `<svg width="420" height="180" style="background:#fff;border:1px solid #ccc">
    <g transform="translate(10,10)">${curve(h.map((e) => e.loss ?? 0), 400, 160, '#c33', maxLoss)}${curve(h.map((e) => e.valLoss ?? 0), 400, 160, '#f90', maxLoss)}${curve(h.map((e) => e.valAccuracy ?? 0), 400, 160, '#36c', 1)}</g></svg>`;
  const failures = results.filter((r) => r.status === 'failed');
  const html = `<!doctype html><meta charset="utf-8"><title>camflow report — ${esc(model.version)}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;background:#fafafa}figure{display:inline-block;margin:6px;text-align:center}figcaption{font-size:12px}td,th{padding:2px 10px;text-align:left}</style>
<h1>camflow — Class Activation Mapping report</h1>
<p>Model <b>${esc(model.version)}</b> (${esc(model.preset)} preset, ${model.inputSize}×${model.inputSize}, backend ${esc(model.backend)}), trained on dataset
<b>${esc(model.dataset.name)}@${esc(model.dataset.version)}</b> (${model.dataset.trainItems} train / ${model.dataset.validationItems} validation).</p>
<h2>Training</h2><p><span style="color:#c33">loss</span>, <span style="color:#f90">validation loss</span>, <span style="color:#36c">validation accuracy</span> per epoch.</p>${svg}
<table><tr><th>epoch</th><th>loss</th><th>val loss</th><th>val accuracy</th><th>seconds</th></tr>${h
    .map((e) => `<tr><td>${e.epoch}</td><td>${e.loss?.toFixed(4)}</td><td>${e.valLoss?.toFixed(4)}</td><td>${e.valAccuracy?.toFixed(4)}</td><td>${e.seconds?.toFixed(1)}</td></tr>`)
    .join('')}</table>
<h2>Localization on the held-out batch</h2>
<table>
<tr><td>images localized</td><td>${scores.images}</td></tr>
<tr><td>classification accuracy</td><td>${scores.accuracy.toFixed(4)}</td></tr>
<tr><td>parasitized images with ground truth</td><td>${scores.parasitized}</td></tr>
<tr><td>pointing game (CAM peak inside a parasite box)</td><td>${scores.pointingGame.toFixed(4)}</td></tr>
<tr><td>top box IoU ≥ 0.5 (20 %-of-max rule)</td><td>${scores.locIou50.toFixed(4)}</td></tr>
<tr><td>MaxBoxAccV2 (IoU 0.3/0.5/0.7)</td><td>${scores.maxBoxAccV2.toFixed(4)} ${esc(JSON.stringify(scores.maxBoxAccV2PerIou))}</td></tr>
${Object.entries(extra)
  .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(String(v))}</td></tr>`)
  .join('\n')}
</table>
${failures.length ? `<h2>Failed items</h2><ul>${failures.map((f) => `<li>${esc(f.name)}: ${esc((f as { error: string }).error)}</li>`).join('')}</ul>` : ''}
<h2>Gallery</h2><p>Overlay: jet CAM of the predicted class at alpha 0.3; white: the box of the 20 %-of-max rule; green: ground-truth parasite boxes.</p>
${tiles.join('\n')}
`;
  const path = join(dir, 'index.html');
  await writeFile(path, html);
  return path;
}

/** Which images of the source are scored, and how many of them the model trained on (when known). */
export interface Subset {
  subset: 'folder' | 'validation' | 'all';
  /** Images of the scored set that were the model's training images; absent when that cannot be known. */
  trainingImages?: number;
  /** How they were counted: by the split the model recorded for its own snapshot, or by content (a folder, another snapshot). */
  trainingBy?: 'split' | 'content';
  /** Why the training images among these cannot be told (the model's snapshot removed, no split recorded). */
  trainingUnknown?: string;
  /** Images in the snapshot (the scored set is a part of it for `validation`). */
  of?: number;
}

const pct = (v: number | null | undefined) => (v === null || v === undefined ? '—' : `${(v * 100).toFixed(1)} %`);

/** Pointing against the stain; "—" with the reason when no positive image showed stain (nothing was pointed at). */
function stainPointingSection(sp: StainPointing, positiveClass: string): string {
  const cls = esc(positiveClass);
  const score = (v: number | null) => (v !== null ? pct(v) : `— (no ${cls} images with stain)`);
  return `<h2>Localization against the parasite stain (${sp.images} ${cls} images)</h2><p>Truth: the dark purple chromatin found in each cell's pixels (${sp.noStain} ${cls} images showed none and are left out). A hit: the served CAM peak within 15/224 of the image's longer side of a stain pixel (the pointing game's tolerance).</p><table class="m"><tr><td>pointing (CAM peak on the stain)</td><td>${score(sp.pointing)}</td></tr><tr><td>chance (a random point in the cell)</td><td>${score(sp.chance)}</td></tr></table>`;
}

/** The label audit: the positive images whose pixels show no stain, and the scores without them — when there are any. */
function labelAuditSection(sp: StainPointing, supported: NonNullable<EvaluationReport['stainSupported']>, positiveClass: string): string {
  const cls = esc(positiveClass);
  const head = '<h2>Labels the pixels do not support</h2>';
  if (sp.noStain === 0) return `${head}<p>None: no ${cls} image here lacks parasite stain in its pixels${sp.images ? '' : ` (there is no ${cls} image)`}.</p>`;
  return `${head}<p>${sp.noStain} ${cls} images show no parasite stain in their pixels (no dark purple chromatin found: an uninfected-looking cell under an infected label, or a parasite too faint for the stain finder). Without them:</p><table class="m"><tr><td>images</td><td>${supported.images}</td></tr><tr><td>accuracy</td><td>${pct(supported.accuracy)}</td></tr><tr><td>recall</td><td>${pct(supported.recall)}</td></tr><tr><td>specificity</td><td>${pct(supported.specificity)}</td></tr></table><details><summary>the ${sp.noStain} images</summary><ul>${sp.noStainNames.slice(0, 500).map((n) => `<li>${esc(n)}</li>`).join('')}</ul></details>`;
}

/** What the eval report is drawn from. */
export interface EvalReportInput {
  store: ObjectStore;
  model: ModelManifest;
  /** The scored batch, and the options its images were localized with (the overlays are drawn with the same). */
  batchId: string;
  options: CamOptions;
  ok: OkResult[];
  report: EvaluationReport;
  positiveClass: string;
  group: RegExp;
  subset: Subset;
}

/** The stored original's extension of each image of a batch (its manifest). */
async function originalExtensions(store: ObjectStore, batchId: string): Promise<Map<string, string>> {
  const key = keys.batchManifest(batchId);
  const ext = new Map<string, string>();
  for (const line of parseJsonLines((await store.get(key)).toString('utf8'), manifestLineSchema, key)) if (!isRefused(line)) ext.set(line.imageId, line.ext);
  return ext;
}

/** One class's CAM over the cell as the worker draws it (restricted to the cell, min-max normalised, jet, alpha); no box. */
async function camOverlay(store: ObjectStore, r: OkResult, ext: string, cam: OkResult['cams'][number], inputSize: number, options: CamOptions): Promise<Buffer> {
  const { input, original, width, height } = await preprocess(await store.get(keys.original(r.sha256, ext)), inputSize);
  const foreground = options.restrictToCell ? cellForeground(input, inputSize, width, height) : undefined;
  const { map } = camAtSize(Float32Array.from(cam.featureCam), r.featureSize.height, r.featureSize.width, height, width, foreground);
  return encodePng(blend(original!.data, heatmapRgb(map), options.alpha), width, height);
}

const JET_GRADIENT = 'linear-gradient(to right, #00007f, #0000ff 12.5%, #00ffff 37.5%, #ffff00 62.5%, #ff0000 87.5%, #7f0000)';
const round2 = (v: number) => Math.round(v * 100) / 100;

/**
 * The most confident errors, each shown with the positive class's CAM: on a missed parasite, where the model would
 * have seen it (the predicted class's CAM there is a cold spot that says nothing). The served box is drawn over the
 * image just inside its edges, so a box of the whole cell is not taken for the image's border.
 */
async function errorGallery(dir: string, input: EvalReportInput, worst: number): Promise<{ tiles: string[]; legend: string }> {
  const { store, model, options, positiveClass, report } = input;
  const errors = input.ok.filter((r) => r.name.split('/')[0] !== r.predicted.label).sort((a, b) => b.predicted.probability - a.predicted.probability).slice(0, worst);
  const ext = errors.length ? await originalExtensions(store, input.batchId) : new Map<string, string>();
  const doubtful = new Set(report.stainPointing?.noStainNames ?? []);
  const tiles: string[] = [];
  for (const r of errors) {
    const cam = r.cams.find((x) => x.class === positiveClass);
    const e = ext.get(r.imageId);
    const file = `overlays/${r.imageId}.png`;
    let shown: string;
    let box: Box | null = null;
    if (cam && e) {
      await writeFile(join(dir, file), await camOverlay(store, r, e, cam, model.inputSize, options));
      shown = `CAM of ${esc(positiveClass)}`;
      box = cam.box;
    } else if (r.outputs.overlay) {
      // No CAM of the positive class in the results (a batch localized with --target predicted, scored with --truth
      // none): the worker's overlay, its box drawn in, of the class it mapped.
      await writeFile(join(dir, file), await store.get(r.outputs.overlay));
      shown = `CAM of ${esc(r.cams[0]?.class ?? r.predicted.label)} (this batch has no ${esc(positiveClass)} CAM)`;
    } else continue;
    const stroke = Math.max(r.width, r.height) / 70;
    const inset = box ? Math.min(stroke / 2, box.width / 3, box.height / 3) : 0;
    const rect = box ? `<rect x="${round2(box.x + inset)}" y="${round2(box.y + inset)}" width="${round2(box.width - 2 * inset)}" height="${round2(box.height - 2 * inset)}" fill="none" stroke="#fff" stroke-width="${round2(stroke)}"/>` : '';
    tiles.push(
      `<figure><svg viewBox="0 0 ${r.width} ${r.height}" width="140" height="${Math.round((140 * r.height) / r.width)}"><image href="${file}" width="${r.width}" height="${r.height}"/>${rect}</svg>` +
        `<figcaption><span class="id">${esc(r.name)}</span><br>truth ${esc(r.name.split('/')[0]!)} → <b>${esc(r.predicted.label)}</b> ${pct(r.predicted.probability)}<br>${shown}${doubtful.has(r.name) ? '<br><i>no parasite stain in its pixels: check the label</i>' : ''}</figcaption></figure>`,
    );
  }
  const cls = esc(positiveClass);
  const legend = `<div class="legend">Overlays: the CAM of ${cls} (where the model sees ${cls} — on a missed one, where it would have), scaled to its own range within each cell and laid over it at alpha ${options.alpha}: low <span class="bar" style="background:${JET_GRADIENT}"></span> high. White box: the served box, the largest region above ${Math.round(options.fraction * 100)} % of that CAM's maximum, drawn just inside its edges; a box along the image's edge covers the whole cell (the CAM is above ${Math.round(options.fraction * 100)} % of its maximum all over it: no one spot).</div>`;
  return { tiles, legend };
}

/**
 * Remove what an earlier eval report in `dir` wrote — its overlays, as named in its own index.html — so a re-run into
 * the same folder shows no stale overlay beside the new report (image ids restart at i0000000 in every batch). Nothing
 * else in `dir` is touched, in `overlays/` or beside it.
 */
async function removePreviousReport(dir: string): Promise<void> {
  const previous = await readFile(join(dir, 'index.html'), 'utf8').catch(() => undefined);
  if (!previous?.includes('<title>camflow eval')) return;
  const written = new Set(Array.from(previous.matchAll(/(?:href|src)="overlays\/([A-Za-z0-9][A-Za-z0-9_.-]*\.png)"/g), (m) => m[1]!));
  await Promise.all([...written].map((file) => rm(join(dir, 'overlays', file), { force: true })));
}

/** The HTML report: scores, confusion matrix, per-patient table, and the most confident errors with their overlays. */
export async function writeEvalReport(dir: string, input: EvalReportInput, worst = 24): Promise<string> {
  const { model, report, positiveClass, group, subset } = input;
  await removePreviousReport(dir);
  await mkdir(join(dir, 'overlays'), { recursive: true });
  const c = report.classification;
  const snapshot = `${model.dataset.name}@${model.dataset.version}`;
  const { tiles, legend } = await errorGallery(dir, input, worst);
  const classes = model.classNames;
  const matrix = `<table class="m"><tr><th>truth \\ predicted</th>${classes.map((p) => `<th>${esc(p)}</th>`).join('')}</tr>${classes
    .map((t) => `<tr><th>${esc(t)}</th>${classes.map((p) => `<td>${c.confusion[t]?.[p] ?? 0}</td>`).join('')}</tr>`)
    .join('')}</table>`;
  // Per group, the positive labels whose pixels show no stain (the audit): where the doubtful labels come from.
  const noStainByGroup = new Map<string, number>();
  for (const name of report.stainPointing?.noStainNames ?? []) {
    const g = groupOf(name, group);
    if (g !== undefined) noStainByGroup.set(g, (noStainByGroup.get(g) ?? 0) + 1);
  }
  const audit = report.stainPointing !== undefined;
  const groups = c.groups
    ? `<h2>Per patient / slide</h2><table class="m"><tr><th>group</th><th>images</th><th>${esc(positiveClass)}</th>${audit ? '<th>… without stain</th>' : ''}<th>accuracy</th><th>recall</th><th>specificity</th></tr>${Object.entries(c.groups)
        .map(([g, s]) => `<tr><td>${esc(g)}</td><td>${s.images}</td><td>${s.positives}</td>${audit ? `<td>${noStainByGroup.get(g) ?? 0}</td>` : ''}<td>${pct(s.accuracy)}</td><td>${pct(s.recall)}</td><td>${pct(s.specificity)}</td></tr>`)
        .join('')}</table>`
    : '';
  const loc = report.localization;
  const html = `<!doctype html><meta charset="utf-8"><title>camflow eval — ${esc(model.version)}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;background:#fafafa}figure{display:inline-block;margin:6px;text-align:center;width:150px;vertical-align:top}figcaption{font-size:11px}.id{overflow-wrap:anywhere}.legend{max-width:60em;margin:0 0 8px}.bar{display:inline-block;width:120px;height:10px;vertical-align:middle;border:1px solid #999}table.m td,table.m th{border:1px solid #ccc;padding:2px 8px}</style>
<h1>camflow evaluation</h1>
<p>Model <b>${esc(model.version)}</b> (${esc(model.preset)}, ${model.inputSize}², trained on ${esc(model.dataset.name)}@${esc(model.dataset.version)}). ${c.images} labelled images scored, ${report.skipped.length} skipped.</p>
${subset.subset === 'validation' ? `<p>The model's validation images of its own snapshot (${c.images + report.skipped.length} of ${subset.of}): it never trained on them.</p>` : ''}${subset.trainingImages ? `<p style="color:#b00"><b>${subset.trainingImages} of these images trained the model</b>: these scores are not those of unseen images (${subset.trainingBy === 'content' ? `the same content as its training images in ${esc(snapshot)}; <code>camflow eval ${esc(snapshot)}</code> scores its validation images` : '<code>--subset validation</code> scores the others'}).</p>` : ''}
<h2>Classification (positive class: ${esc(positiveClass)})</h2>
<table class="m"><tr><th></th><th>argmax</th>${c.screening ? `<th>screening (P ≥ ${c.screening.threshold.toFixed(3)})</th>` : ''}</tr>
<tr><td>accuracy</td><td>${pct(c.accuracy)}</td>${c.screening ? `<td>${pct(c.screening.accuracy)}</td>` : ''}</tr>
<tr><td>recall</td><td>${pct(c.recall)}</td>${c.screening ? `<td>${pct(c.screening.recall)}</td>` : ''}</tr>
<tr><td>specificity</td><td>${pct(c.specificity)}</td>${c.screening ? `<td>${pct(c.screening.specificity)}</td>` : ''}</tr>
<tr><td>precision</td><td>${pct(c.precision)}</td>${c.screening ? `<td>${pct(c.screening.precision)}</td>` : ''}</tr>
<tr><td>ROC AUC</td><td colspan="2">${c.rocAuc === null ? '— (needs images of both classes)' : c.rocAuc.toFixed(4)}</td></tr>
${c.recallAtSpecificity ? `<tr><td>recall at specificity ≥ ${pct(ROC_SPECIFICITY)} (the best threshold on these images: P &gt; ${c.recallAtSpecificity.threshold.toFixed(3)})</td><td colspan="2">${pct(c.recallAtSpecificity.recall)} (specificity ${pct(c.recallAtSpecificity.specificity)})</td></tr>` : ''}
<tr><td>ECE (10 bins)</td><td colspan="2">${c.ece.toFixed(4)}</td></tr></table>
<h3>Confusion matrix (argmax)</h3>${matrix}
${groups}
${loc ? `<h2>Localization (${loc.images} ${esc(positiveClass)} images with truth boxes)</h2><table class="m"><tr><td>pointing (served CAM peak in a truth box)</td><td>${pct(loc.pointing)}</td></tr><tr><td>served box IoU ≥ 0.5</td><td>${pct(loc.locIou50)}</td></tr><tr><td>MaxBoxAccV2, threshold chosen on the other half</td><td>${loc.maxBoxAccV2.toFixed(4)}</td></tr><tr><td>MaxBoxAccV2, in-sample threshold (optimistic)</td><td>${loc.maxBoxAccV2InSample.toFixed(4)}</td></tr></table>` : ''}
${report.stainPointing ? stainPointingSection(report.stainPointing, positiveClass) : ''}
${report.stainSupported && report.stainPointing ? labelAuditSection(report.stainPointing, report.stainSupported, positiveClass) : ''}
<h2>Most confident errors</h2>${tiles.length ? `${legend}\n${tiles.join('\n')}` : '<p>none</p>'}
${report.skipped.length ? `<h2>Skipped</h2><ul>${report.skipped.slice(0, 200).map((s) => `<li>${esc(s.name)}: ${esc(s.why)}</li>`).join('')}</ul>` : ''}
`;
  const path = resolve(dir, 'index.html');
  await writeFile(path, html);
  return path;
}
