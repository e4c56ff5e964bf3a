import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import {
  NotFoundError,
  batchSummarySchema,
  esc,
  fieldDocumentSchema,
  jet,
  keys,
  parseWith,
  type FieldResult,
  type ImageResult,
  type ObjectStore,
  type OkResult,
} from '@camflow/common/core';
import { listBatches } from '../status.js';
import { batchResultLines } from '../results.js';

/**
 * The results viewer, served by the API process under `/viewer` (behind the API's token: a login form sets it as an
 * HttpOnly cookie): the batch list, a batch page (overlay gallery filtered by class and probability, fields with
 * their parasitemia, failed items with reasons), and a field page (OpenSeadragon over the field's Deep Zoom pyramid,
 * the stitched CAM heatmap as a second layer with an opacity slider, cell outlines and parasite boxes from the
 * field's cells, a click on a cell for its class, probability and CAM peak). Every asset is served from npm
 * packages; nothing is fetched from elsewhere.
 */

const require = createRequire(import.meta.url);
const OSD_DIR = join(dirname(require.resolve('openseadragon/package.json')), 'build', 'openseadragon');

const idParam = z.object({ id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/) });
const fieldParams = idParam.extend({ imageId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/) });
/** A result file under `results/<batch>/`: letters, digits, `_ . / -`, no `..`. */
const filePath = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_./-]{0,300}$/).refine((p) => !p.includes('..'), 'no ".."');

const CONTENT_TYPES: Record<string, string> = { png: 'image/png', jpeg: 'image/jpeg', jpg: 'image/jpeg', json: 'application/json', geojson: 'application/geo+json', dzi: 'application/xml', jsonl: 'application/x-ndjson' };

/** The heatmap's colour scale, from the same colour map the tiles were painted with (jet), and what it measures. */
function heatLegend(positiveClass: string): string {
  const stops = Array.from({ length: 9 }, (_, i) => `rgb(${jet(i / 8).join(',')}) ${(i * 12.5).toFixed(1)}%`).join(',');
  return `<span id="legend" title="Each cell's CAM of ${esc(positiveClass)}, normalised to its own peak, times the cell's probability of ${esc(positiveClass)}: a cell the model calls negative stays cold">P(${esc(positiveClass)}) × CAM: 0 <i class="bar" style="background:linear-gradient(to right,${stops})"></i> 1</span>`;
}

const STYLE = `body{font:14px system-ui,sans-serif;margin:0;background:#f6f6f4;color:#222}header{background:#2d2346;color:#fff;padding:10px 20px}header a{color:#fff;text-decoration:none;font-weight:600}main{padding:16px 20px}table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}figure{display:inline-block;margin:6px;width:150px;text-align:center;vertical-align:top}figure img{width:140px;height:140px;object-fit:contain;background:#000}figcaption{font-size:11px;word-break:break-all}.bad{color:#b00}#view{display:grid;grid-template-columns:minmax(0,1fr) 180px;gap:8px;align-items:start}#osd{height:72vh;background:#111}#nav{width:180px;height:135px;box-sizing:border-box;background:#111;border:1px solid #999}.panel{display:flex;gap:18px;align-items:center;margin:8px 0}#info{min-height:1.5em}.bar{display:inline-block;width:140px;height:10px;vertical-align:middle;margin:0 4px;border:1px solid #999}.panel label,#legend{white-space:nowrap}.panel{flex-wrap:wrap}`;

function page(title: string, body: string, head = ''): string {
  return `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${esc(title)} — camflow</title><link rel="icon" href="data:,"><style>${STYLE}</style>${head}<header><a href="/viewer">camflow</a> · ${esc(title)}</header><main>${body}</main></html>`;
}

/** A viewer page's error as a page (a browser was showing a page, not reading JSON), with the way back. */
export function viewerErrorPage(status: number, message: string): string {
  return page(status === 404 ? 'not found' : 'error', `<p class="bad">${esc(message)}</p><p><a href="/viewer">← the batches</a></p>`);
}

/** Whether a request is for a viewer page (HTML), not one of its assets. */
export const isViewerPage = (url: string) => /^\/viewer(\/(?!assets\/)|$|\?)/.test(url);

/** Cells shown in a batch page's gallery. */
export const GALLERY_LIMIT = 1000;

const pct = (v: number) => `${(v * 100).toFixed(1)} %`;

/** The newest batches (at most `max`), from their `batch.json`. */
/**
 * What a batch page shows, read a line at a time: counts of everything, but only the first `limit` cells, fields and
 * failures (memory stays flat for archive-sized batches; every line is in results.jsonl).
 */
async function scanBatch(store: ObjectStore, id: string, limit: number) {
  if (!(await store.exists(keys.resultsJsonl(id)))) return undefined;
  const out = { cells: [] as OkResult[], fields: [] as FieldResult[], failed: [] as ImageResult[], counts: { cells: 0, fields: 0, failed: 0 }, classes: new Set<string>() };
  for await (const r of batchResultLines(store, id)) {
    if (r.status === 'failed') {
      if (out.counts.failed++ < limit) out.failed.push(r);
    } else if (r.kind === 'field') {
      if (out.counts.fields++ < limit) out.fields.push(r as FieldResult);
    } else {
      out.classes.add((r as OkResult).predicted.label);
      if (out.counts.cells++ < limit) out.cells.push(r as OkResult);
    }
  }
  return out;
}

const fileUrl = (batchId: string, key: string) => `/v1/batches/${batchId}/files/${key.slice(keys.resultPrefix(batchId).length)}`;

export function registerViewer(app: FastifyInstance, store: ObjectStore): void {
  app.get('/viewer/assets/openseadragon.min.js', async (_req, reply) => reply.type('application/javascript').send(await readFile(join(OSD_DIR, 'openseadragon.min.js'))));
  app.get('/viewer/assets/images/:file', async (req, reply) => {
    const { file } = parseWith(z.object({ file: z.string().regex(/^[a-z_]+\.png$/) }), req.params, 'params');
    const bytes = await readFile(join(OSD_DIR, 'images', file)).catch(() => undefined);
    if (!bytes) throw new NotFoundError('asset', file);
    return reply.type('image/png').send(bytes);
  });

  // A batch's stored results (overlays, field.json, GeoJSON, Deep Zoom descriptors and tiles), under its prefix only.
  app.get('/v1/batches/:id/files/*', async (req, reply) => {
    const { id } = parseWith(idParam, req.params, 'params');
    const given = parseWith(filePath, (req.params as Record<string, string>)['*'], 'path');
    // A result line's `outputs` value (the whole key, `results/<id>/…`) is taken as it is written there.
    const rest = given.startsWith(keys.resultPrefix(id)) ? given.slice(keys.resultPrefix(id).length) : given;
    const key = keys.resultPrefix(id) + rest;
    const bytes = await store.getIfExists(key);
    if (!bytes) {
      if (!(await store.exists(keys.batchInfo(id)))) throw new NotFoundError('batch', id);
      throw new NotFoundError('result file', `${rest} in batch ${id}`);
    }
    return reply.type(CONTENT_TYPES[rest.split('.').pop()!] ?? 'application/octet-stream').header('cache-control', 'private, max-age=3600').send(bytes);
  });

  app.get('/viewer', async (_req, reply) => {
    const batches = await listBatches(store, 200);
    const rows = await Promise.all(
      batches.map(async (b) => {
        const raw = await store.getJsonIfExists(keys.resultsSummary(b.batchId));
        const summary = raw === undefined ? undefined : batchSummarySchema.safeParse(raw).data;
        const cancelled = (await store.getJsonIfExists(keys.batchCancel(b.batchId))) !== undefined;
        const state = `${summary ? `completed: ${summary.ok} ok, ${summary.failed} failed` : 'not finished'}${cancelled ? ' (cancelled)' : ''}`;
        return `<tr><td><a href="/viewer/batches/${esc(b.batchId)}">${esc(b.batchId)}</a></td><td class="source">${esc(b.source ?? '')}</td><td>${esc(b.createdAt)}</td><td>${b.items}</td><td>${esc(b.modelVersion)}</td><td>${esc(state)}</td></tr>`;
      }),
    );
    return html(reply, page('batches', rows.length ? `<table id="batches"><tr><th>batch</th><th>source</th><th>submitted</th><th>items</th><th>model</th><th>state</th></tr>${rows.join('')}</table>` : '<p>No batches yet: <code>camflow submit FOLDER</code>.</p>'));
  });

  app.get('/viewer/batches/:id', async (req, reply) => {
    const { id } = parseWith(idParam, req.params, 'params');
    const info = await store.getJsonIfExists(keys.batchInfo(id));
    if (info === undefined) throw new NotFoundError('batch', id);
    const scan = await scanBatch(store, id, GALLERY_LIMIT);
    if (!scan) return html(reply, page(`batch ${id}`, `<p>Batch <b>${esc(id)}</b> is not finished yet: reload in a moment, or <code>camflow status ${esc(id)}</code>.</p>`));
    const { cells: shownCells, fields, failed, counts } = scan;
    const classes = [...scan.classes].sort();
    const gallery = shownCells
      .map((r) => {
        const img = r.outputs.overlay ? `<img src="${fileUrl(id, r.outputs.overlay)}" alt="" loading="lazy">` : '<div style="width:140px;height:140px;background:#ccc"></div>';
        return `<figure class="cell" data-class="${esc(r.predicted.label)}" data-p="${r.predicted.probability.toFixed(4)}">${img}<figcaption>${esc(r.name)}<br><b>${esc(r.predicted.label)}</b> ${pct(r.predicted.probability)}</figcaption></figure>`;
      })
      .join('');
    const fieldRows = fields
      .map((f) => `<tr class="field"><td><a href="/viewer/batches/${esc(id)}/fields/${esc(f.imageId)}">${esc(f.name)}</a></td><td>${f.field.cells}</td><td>${f.field.counted}</td><td>${f.field.infected}</td><td>${f.field.counted ? `${pct(f.field.parasitemia)} (95 % ${pct(f.field.interval[0])}–${pct(f.field.interval[1])})` : 'not measured: no cell counted'}${f.field.warning ? `<br><span class="bad">warning: ${esc(f.field.warning)}</span>` : ''}</td></tr>`)
      .join('');
    const body = `
<p>${counts.cells} cells, ${counts.fields} fields, <span class="${counts.failed ? 'bad' : ''}">${counts.failed} failed</span>.</p>
${fields.length ? `<h2>Fields</h2><table id="fields"><tr><th>field</th><th>cells found</th><th>counted</th><th>infected</th><th>parasitemia</th></tr>${fieldRows}</table>` : ''}
${counts.cells ? `<h2>Cells</h2><div class="panel"><label>class <select id="cls"><option value="">all</option>${classes.map((c) => `<option>${esc(c)}</option>`).join('')}</select></label>
<label>probability ≥ <input id="minp" type="range" min="0" max="1" step="0.01" value="0"> <span id="minpv">0.00</span></label> <span id="shown"></span></div>${counts.cells > shownCells.length ? `<p id="truncated">The gallery shows the first ${shownCells.length} of ${counts.cells} cells; every result is in <a href="/v1/batches/${esc(id)}/results">results.jsonl</a>.</p>` : ''}<div id="gallery">${gallery}</div>` : ''}
${failed.length ? `<h2>Failed</h2><ul id="failed">${failed.map((r) => `<li>${esc(r.name)}: ${r.status === 'failed' ? `${esc(r.reason)} — ${esc(r.error)}` : ''}</li>`).join('')}</ul>${counts.failed > failed.length ? `<p>… and ${counts.failed - failed.length} more (results.jsonl has them all).</p>` : ''}` : ''}
<script>
const cls = document.getElementById('cls'), minp = document.getElementById('minp');
function filter() {
  if (!cls) return;
  let shown = 0;
  for (const f of document.querySelectorAll('figure.cell')) {
    const ok = (!cls.value || f.dataset.class === cls.value) && Number(f.dataset.p) >= Number(minp.value);
    f.style.display = ok ? '' : 'none';
    if (ok) shown++;
  }
  document.getElementById('minpv').textContent = Number(minp.value).toFixed(2);
  document.getElementById('shown').textContent = shown + ' shown';
}
if (cls) { cls.addEventListener('change', filter); minp.addEventListener('input', filter); filter(); }
</script>`;
    return html(reply, page(`batch ${id}`, body));
  });

  app.get('/viewer/batches/:id/fields/:imageId', async (req, reply) => {
    const { id, imageId } = parseWith(fieldParams, req.params, 'params');
    let line: FieldResult | undefined;
    if (await store.exists(keys.resultsJsonl(id))) {
      for await (const r of batchResultLines(store, id)) {
        if (r.imageId === imageId && r.status === 'ok' && r.kind === 'field') {
          line = r as FieldResult;
          break;
        }
      }
    }
    if (!line) throw new NotFoundError('field', `${id}/${imageId}`);
    const doc = fieldDocumentSchema.parse(await store.getJson(line.outputs.field));
    const s = doc.summary;
    const cells = doc.cells.map((c) => ({ cell: c.cell, label: c.predicted.label, p: c.probabilities[s.positiveClass] ?? 0, polygon: c.polygon, clipped: c.clipped, peak: c.peak, parasite: c.predicted.label === s.positiveClass ? c.parasiteBox : null }));
    const data = { width: doc.width, height: doc.height, positiveClass: s.positiveClass, field: line.outputs.fieldDzi ? fileUrl(id, line.outputs.fieldDzi) : null, heatmap: line.outputs.heatmapDzi ? fileUrl(id, line.outputs.heatmapDzi) : null, cells };
    const body = `
<p><a href="/viewer/batches/${esc(id)}">← batch ${esc(id)}</a> · <b>${esc(line.name)}</b>: ${s.cells} cells found, ${s.counted} counted (not cut by an edge), <b id="parasitemia">${s.counted ? `parasitemia ${pct(s.parasitemia)}</b> (${s.infected} ${esc(s.positiveClass)}; 95 % ${pct(s.interval[0])}–${pct(s.interval[1])})` : 'parasitemia not measured</b> (no cell counted)'}</p>${s.warning ? `<p class="bad" id="warning">warning: ${esc(s.warning)}</p>` : ''}
${data.field ? '' : `<p id="nopyramid" class="note">No Deep Zoom pyramid was written for this field (submitted with outputs that leave it out, e.g. <code>--outputs none</code>): the cells and parasite boxes are drawn on a blank field of its size.</p>`}
<div class="panel">${data.heatmap ? `<label><input type="checkbox" id="heat" checked> CAM heatmap</label><label>opacity <input id="opacity" type="range" min="0" max="1" step="0.05" value="0.5"></label>${heatLegend(s.positiveClass)}` : ''}<label><input type="checkbox" id="outlines" checked> cells and parasite boxes</label><span id="info">Click a cell.</span></div>
<div id="view"><div id="osd"></div><div id="nav" title="the whole field; the frame is what the view shows"></div></div>
<script src="/viewer/assets/openseadragon.min.js"></script>
<script>
const data = ${JSON.stringify(data).replace(/</g, '\\u003c')};
const ns = 'http://www.w3.org/2000/svg';
// Without a pyramid: a blank image of the field's shape (at most 1,024 px a side; the outlines are vectors).
const k = Math.min(1, 1024 / Math.max(data.width, data.height));
const blank = { type: 'image', url: 'data:image/svg+xml,' + encodeURIComponent('<svg xmlns="' + ns + '" width="' + Math.max(1, Math.round(data.width * k)) + '" height="' + Math.max(1, Math.round(data.height * k)) + '"><rect width="100%" height="100%" fill="#202020"/></svg>') };
const viewer = OpenSeadragon({ id: 'osd', prefixUrl: '/viewer/assets/images/', tileSources: data.field || blank, showNavigator: true, navigatorId: 'nav', gestureSettingsMouse: { clickToZoom: false } });
window.camflow = { viewer, ready: false, heat: null };
viewer.addOnceHandler('open', () => {
  const svg = document.createElementNS(ns, 'svg');
  svg.id = 'cells';
  svg.setAttribute('viewBox', '0 0 ' + data.width + ' ' + data.height);
  svg.setAttribute('preserveAspectRatio', 'none');
  for (const c of data.cells) {
    const p = document.createElementNS(ns, 'polygon');
    p.setAttribute('points', c.polygon.map((q) => q[0] + ',' + q[1]).join(' '));
    p.setAttribute('fill', 'transparent');
    p.setAttribute('stroke', c.label === data.positiveClass ? '#e02828' : '#3caa4b');
    p.setAttribute('stroke-width', '2');
    p.setAttribute('vector-effect', 'non-scaling-stroke');
    if (c.clipped) p.setAttribute('stroke-dasharray', '8 6');
    p.dataset.cell = String(c.cell);
    p.classList.add('cell');
    svg.appendChild(p);
    if (c.parasite) {
      const r = document.createElementNS(ns, 'rect');
      for (const [k, v] of [['x', c.parasite.x], ['y', c.parasite.y], ['width', c.parasite.width], ['height', c.parasite.height]]) r.setAttribute(k, String(v));
      r.setAttribute('fill', 'none');
      r.setAttribute('stroke', '#ffc800');
      r.setAttribute('stroke-width', '2');
      r.setAttribute('vector-effect', 'non-scaling-stroke');
      r.classList.add('parasite');
      r.style.pointerEvents = 'none';
      svg.appendChild(r);
    }
  }
  // Over the whole first image: the field's pyramid, or the blank stand-in (whose pixels are not the field's).
  viewer.addOverlay({ element: svg, location: viewer.world.getItemAt(0).getBounds() });
  new OpenSeadragon.MouseTracker({ element: svg, clickHandler: (e) => {
    // The tracker captures the pointer on the overlay itself: the polygon is the element under the click.
    const hit = document.elementFromPoint(e.originalEvent.clientX, e.originalEvent.clientY);
    const id = hit && hit.dataset ? hit.dataset.cell : undefined;
    if (id === undefined) return;
    const c = data.cells[Number(id)];
    document.getElementById('info').textContent = 'cell ' + c.cell + ': ' + c.label + ', P(' + data.positiveClass + ') ' + (100 * c.p).toFixed(1) + ' %, CAM peak (' + Math.round(c.peak.x) + ', ' + Math.round(c.peak.y) + ')' + (c.clipped ? ', cut by an edge (not counted)' : '');
  } });
  document.getElementById('outlines').addEventListener('change', (e) => { svg.style.display = e.target.checked ? '' : 'none'; });
  const ready = () => { window.camflow.ready = true; };
  if (!data.heatmap) return ready();
  // Stretched over the field's extent: a whole-slide scan's heatmap is stored at a lower resolution.
  viewer.addTiledImage({ tileSource: data.heatmap, opacity: 0.5, x: 0, y: 0, width: viewer.world.getItemAt(0).getBounds().width, success: (ev) => {
    const heat = ev.item;
    window.camflow.heat = heat;
    const apply = () => heat.setOpacity(document.getElementById('heat').checked ? Number(document.getElementById('opacity').value) : 0);
    document.getElementById('heat').addEventListener('change', apply);
    document.getElementById('opacity').addEventListener('input', apply);
    ready();
  } });
});
</script>`;
    return html(reply, page(`field ${line.name}`, body));
  });
}

const html = (reply: FastifyReply, body: string) => reply.type('text/html; charset=utf-8').send(body);
