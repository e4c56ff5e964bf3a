import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { esc, isCellResult, type Box, type ModelManifest, type ObjectStore } from '@camflow/common/core';
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
