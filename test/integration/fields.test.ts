import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRng, encodePng, fieldDocumentSchema, generateCell, generateField, iou, isCellResult, scoreDetections, type FieldResult } from '@camflow/common';
import { readResults } from '../../packages/cli/src/wait.ts';
import { publishUntrained, runCli, startCluster } from '../helpers/cluster.ts';

test('a smear field submitted with the defaults is read as a field: cells found, each classified and localized, parasitemia, field.json and QuPath GeoJSON', async () => {
  const c = await startCluster();
  try {
    await publishUntrained(c.ctx);
    const folder = join(c.dir, 'smears');
    await mkdir(folder, { recursive: true });
    // A field (no eyepiece window, 40 cells attempted) next to two cell crops: `kind: auto` tells them apart.
    const field = generateField(4, { width: 1400, height: 1000, cells: 40, fov: false });
    await writeFile(join(folder, 'field.png'), await encodePng(field.rgb, field.width, field.height));
    const rng = createRng(9);
    for (const name of ['cell-a.png', 'cell-b.png']) {
      const cell = generateCell(rng, 'Parasitized');
      await writeFile(join(folder, name), await encodePng(cell.rgb, cell.width, cell.height));
    }
    c.spawnWorker('cam');
    const run = await runCli(c, ['submit', folder, '--wait', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const batchId = JSON.parse(run.stdout.trim().split('\n').pop()!).batchId as string;
    const results = await readResults(c.ctx.store, batchId);
    assert.equal(results.length, 3, 'one line per submitted file');
    const cells = results.filter(isCellResult);
    assert.deepEqual(cells.map((r) => r.name).sort(), ['cell-a.png', 'cell-b.png']);
    const line = results.find((r) => r.name === 'field.png') as FieldResult;
    assert.equal(line.status, 'ok');
    assert.equal(line.kind, 'field', 'a 1400×1000 image is a field under kind auto');

    const doc = fieldDocumentSchema.parse(JSON.parse((await c.ctx.store.get(line.outputs.field)).toString('utf8')));
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
  } finally {
    await c.close();
  }
});
