import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { encodePng, isTiledTiff, fieldDocumentSchema, generateField, iou, scoreDetections, type Box, type FieldResult } from '@camflow/common';
import { planRegions } from '@camflow/cam-worker';
import { readResults } from '../../packages/cli/src/wait.ts';
import { publishUntrained, runCli, startCluster } from '../helpers/cluster.ts';

test('regions tile a slide: cores cover every pixel once, each region reads a margin around its core', () => {
  const regions = planRegions(2500, 1100, 1024, 180);
  assert.equal(regions.length, 3 * 2);
  let covered = 0;
  for (const r of regions) {
    covered += (r.core.x1 - r.core.x0) * (r.core.y1 - r.core.y0);
    assert.ok(r.left <= Math.max(0, r.core.x0 - 180) && r.left + r.width >= Math.min(2500, r.core.x1 + 180));
    assert.ok(r.top >= 0 && r.top + r.height <= 1100);
  }
  assert.equal(covered, 2500 * 1100);
});

test('a field larger than MAX_FIELD_PIXELS (a tiled TIFF) is read region by region, and a cell on a region border is found once', async () => {
  // The worker decodes at most ~1.4 Mpx at a time (1,024² cores + margins) of a 4,200×3,000 slide.
  const c = await startCluster({ MAX_FIELD_PIXELS: '4000000', FIELD_TILE: '1024' });
  try {
    await publishUntrained(c.ctx);
    // 3 × 3 copies of one synthetic field, as a tiled, JPEG-compressed TIFF (what slide scanners write).
    const field = generateField(21, { width: 1400, height: 1000, cells: 40, fov: false });
    const png = await encodePng(field.rgb, field.width, field.height);
    const folder = join(c.dir, 'slides');
    await mkdir(folder, { recursive: true });
    const tiff = await sharp(Array.from({ length: 9 }, () => png), { join: { across: 3 } }).tiff({ tile: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 92 }).toBuffer();
    await writeFile(join(folder, 'slide.tiff'), tiff);
    assert.ok(isTiledTiff(tiff) && !isTiledTiff(await sharp(png).tiff().toBuffer()), 'the TIFF header says tiled or not');
    // The same slide as a PNG cannot be read region by region (libvips would decode it whole): refused at submission.
    await writeFile(join(folder, 'slide.png'), await sharp(tiff).png({ compressionLevel: 1 }).toBuffer());
    // The same slide scanned in grey (one channel): refused by how it is stored, before any region is read.
    await writeFile(join(folder, 'slide-grey.tiff'), await sharp(tiff).toColourspace('b-w').tiff({ tile: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 92 }).toBuffer());
    // A grey scan stored as RGB (three equal channels; 2,400 × 1,800, above MAX_FIELD_PIXELS): judged by the pixels of
    // its regions once read.
    const greyPng = await sharp(tiff).extract({ left: 0, top: 0, width: 2400, height: 1800 }).toColourspace('b-w').png().toBuffer();
    const greyRgb = await sharp(greyPng).toColourspace('srgb').tiff({ tile: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 92 }).toBuffer();
    assert.equal((await sharp(greyRgb).metadata()).channels, 3, 'stored as RGB');
    await writeFile(join(folder, 'slide-grey-rgb.tiff'), greyRgb);
    c.spawnWorker('cam');
    const run = await runCli(c, ['submit', folder, '--wait', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const batchId = JSON.parse(run.stdout.trim().split('\n').pop()!).batchId as string;
    const lines = await readResults(c.ctx.store, batchId);
    const refused = lines.find((l) => l.name === 'slide.png')!;
    assert.equal(refused.status, 'failed');
    assert.ok(refused.status === 'failed' && refused.reason === 'too-many-pixels' && /tiled TIFF/.test(refused.error), JSON.stringify(refused));
    const grey = lines.find((l) => l.name === 'slide-grey.tiff')!;
    assert.deepEqual([grey.status, grey.status === 'failed' && grey.reason], ['failed', 'greyscale'], JSON.stringify(grey));
    const greyRgbLine = lines.find((l) => l.name === 'slide-grey-rgb.tiff')!;
    assert.ok(greyRgbLine.status === 'failed' && greyRgbLine.reason === 'greyscale' && /^the slide has no colour \(2400×1800, \d+ regions read/.test(greyRgbLine.error), JSON.stringify(greyRgbLine));
    const line = lines.find((l) => l.name === 'slide.tiff');
    assert.equal(line!.status, 'ok', JSON.stringify(line));
    const result = line as FieldResult;
    assert.equal(result.kind, 'field');
    assert.deepEqual([result.width, result.height], [4200, 3000]);
    // Its pyramids: the slide at full resolution (streamed by libvips), the stitched heatmap scaled to MAX_FIELD_PIXELS.
    const size = async (key: string) => (await c.ctx.store.get(key)).toString('utf8').match(/Height="(\d+)"\s+Width="(\d+)"/)!.slice(1).map(Number);
    assert.deepEqual(await size(result.outputs.fieldDzi!), [3000, 4200]);
    const [hh, hw] = await size(result.outputs.heatmapDzi!);
    assert.ok(hw! * hh! <= 4_000_000 && Math.abs(hw! / hh! - 1.4) < 0.01, `heatmap ${hw}×${hh}`);
    assert.ok(result.outputs.overlay && (await c.ctx.store.exists(result.outputs.overlay)));
    const doc = fieldDocumentSchema.parse(JSON.parse((await c.ctx.store.get(result.outputs.field)).toString('utf8')));
    // Truth: the field's wholly visible cells in each of the 9 copies.
    const truth: { box: Box; ignore: boolean }[] = [];
    for (let k = 0; k < 9; k++) {
      const dx = (k % 3) * 1400;
      const dy = Math.floor(k / 3) * 1000;
      for (const t of field.cells) truth.push({ box: { ...t.box, x: t.box.x + dx, y: t.box.y + dy }, ignore: t.visible < 0.999 });
    }
    const score = scoreDetections(doc.cells.map((x) => x.box), truth);
    assert.ok(score.recall >= 0.9, `recall over the slide: ${JSON.stringify(score)}`);
    // Region borders (every 1,024 px) cut through many cells: each is still reported once.
    const crossing = doc.cells.filter((x) => [1024, 2048, 3072].some((b) => x.box.x < b && x.box.x + x.box.width > b) || [1024, 2048].some((b) => x.box.y < b && x.box.y + x.box.height > b));
    assert.ok(crossing.length >= 10, `${crossing.length} cells straddle a region border`);
    for (let i = 0; i < doc.cells.length; i++) {
      for (let j = i + 1; j < doc.cells.length; j++) assert.ok(iou(doc.cells[i]!.box, doc.cells[j]!.box) < 0.5, `cells ${i} and ${j} are the same cell found twice: ${JSON.stringify([doc.cells[i]!.box, doc.cells[i]!.clipped, doc.cells[j]!.box, doc.cells[j]!.clipped])}`);
    }
    // Every polygon and peak is in slide coordinates, inside its box.
    for (const x of doc.cells) {
      assert.ok(x.polygon.every(([px, py]) => px >= x.box.x - 1 && px <= x.box.x + x.box.width + 1 && py >= x.box.y - 1 && py <= x.box.y + x.box.height + 1));
      assert.ok(x.peak.x >= x.box.x && x.peak.x <= x.box.x + x.box.width && x.peak.y >= x.box.y && x.peak.y <= x.box.y + x.box.height);
    }
  } finally {
    await c.close();
  }
});
