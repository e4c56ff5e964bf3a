import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cropCell, dropPlasmaBetweenCells, edgeContact, fillMaskHoles, keepLargestPiece, phantomRegions, trimPlasmaPockets, findCells, itemKind, floodFromSeeds, largestPiecePerLabel, generateField, otsuThreshold, polygonMask, scoreDetections, splitClumps, enclosingCircle, openLabels, wilsonInterval, isColourless, kindContradiction, smallFieldWarning, paintCellHeat, jet } from '@camflow/common';

test("Otsu's threshold separates two populations", () => {
  const hist = new Array<number>(256).fill(0);
  for (let v = 40; v < 60; v++) hist[v] = 10;
  for (let v = 180; v < 200; v++) hist[v] = 30;
  const t = otsuThreshold(hist);
  assert.ok(t >= 59 && t < 180, String(t));
});

test('flooding from seeds splits two touching cells at their neck', () => {
  // Two discs (r 10) whose centres are 16 apart, as one foreground region.
  const w = 50;
  const h = 30;
  const fg = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (Math.hypot(x - 15, y - 15) < 10 || Math.hypot(x - 31, y - 15) < 10) fg[y * w + x] = 1;
  // Distance to the background (brute force; small).
  const d = new Float32Array(w * h);
  for (let i = 0; i < w * h; i++) {
    if (!fg[i]) continue;
    let best = Infinity;
    for (let j = 0; j < w * h; j++) if (!fg[j]) best = Math.min(best, Math.hypot((i % w) - (j % w), Math.floor(i / w) - Math.floor(j / w)));
    d[i] = best;
  }
  const seeds = new Int32Array(w * h);
  for (let i = 0; i < w * h; i++) seeds[i] = fg[i] ? 0 : 1;
  seeds[15 * w + 15] = 2;
  seeds[15 * w + 31] = 3;
  const labels = floodFromSeeds(seeds, d, w, h);
  assert.equal(labels[15 * w + 10], 2);
  assert.equal(labels[15 * w + 36], 3);
  // The split runs through the neck, at x = 23 (±1).
  for (let x = 0; x < w; x++) {
    if (!fg[15 * w + x]) continue;
    if (x <= 21) assert.equal(labels[15 * w + x], 2, `x ${x}`);
    if (x >= 25) assert.equal(labels[15 * w + x], 3, `x ${x}`);
  }
  assert.ok([...labels].every((l, i) => (fg[i] ? l >= 2 : l === 1)), 'every foreground pixel belongs to a cell');
});

test('cell finding on synthetic fields: touching and cut cells, with and without a round field of view', async () => {
  let matched = 0;
  let truth = 0;
  let found = 0;
  for (const [seed, fov] of [[1, true], [2, false], [3, true]] as const) {
    const f = generateField(seed, { fov });
    const r = await findCells(f.rgb, f.width, f.height);
    const s = scoreDetections(r.cells.map((c) => c.box), f.cells.map((c) => ({ box: c.box, ignore: c.visible < 0.5 })));
    // Diameter estimated from the field itself (the synthetic cells are 104–132 px boxes, discs ~0.88 of that).
    assert.ok(r.diameter > 85 && r.diameter < 130, `diameter ${r.diameter}`);
    if (fov) assert.ok(r.fov && Math.abs(r.fov.r - f.fov!.r) < 0.05 * f.fov!.r, `field of view ${JSON.stringify(r.fov)} vs ${JSON.stringify(f.fov)}`);
    else assert.equal(r.fov, undefined);
    assert.ok(s.recall >= 0.95 && s.precision >= 0.95, `field ${seed}: ${JSON.stringify(s)}`);
    assert.ok(r.cells.some((c) => c.clipped), 'cells cut by an edge are kept and flagged');
    matched += s.matched;
    truth += s.truth;
    found += s.found;
  }
  assert.ok(matched / truth >= 0.95 && matched / found >= 0.98, `pooled recall ${matched / truth}, precision ${matched / found}`);
});

test('a cell is cropped onto black, the way the training crops were made', async () => {
  const f = generateField(2, { fov: false, cells: 20 });
  const r = await findCells(f.rgb, f.width, f.height);
  const i = r.cells.findIndex((c) => !c.clipped);
  const cell = r.cells[i]!;
  const crop = cropCell(f.rgb, f.width, r, i, cell.box);
  assert.equal(crop.length, cell.box.width * cell.box.height * 3);
  const px = (x: number, y: number) => [crop[(y * cell.box.width + x) * 3]!, crop[(y * cell.box.width + x) * 3 + 1]!, crop[(y * cell.box.width + x) * 3 + 2]!];
  assert.deepEqual(px(0, 0), [0, 0, 0], 'corners are outside the cell: black');
  const c = px(Math.floor(cell.box.width / 2), Math.floor(cell.box.height / 2));
  const o = ((cell.box.y + Math.floor(cell.box.height / 2)) * f.width + cell.box.x + Math.floor(cell.box.width / 2)) * 3;
  assert.deepEqual(c, [f.rgb[o], f.rgb[o + 1], f.rgb[o + 2]], "the centre keeps the field's pixel");
  // The rim the field blends into the plasma is left out: along the middle row, the first and last few pixels of
  // the cell's label are black in the crop.
  const y = Math.floor(cell.box.height / 2);
  const inLabel = (x: number) => r.labels.data[Math.floor((cell.box.y + y + 0.5) * r.scale) * r.labels.width + Math.floor((cell.box.x + x + 0.5) * r.scale)] === i + 1;
  const first = [...Array(cell.box.width).keys()].find(inLabel)!;
  const firstKept = [...Array(cell.box.width).keys()].find((x) => px(x, y).some((v) => v > 0))!;
  assert.ok(firstKept - first >= 2, `rim of ${firstKept - first} px left out`);
});

test('a field is told from a cell by its size; an explicit kind wins', () => {
  assert.equal(itemKind('auto', 142, 130), 'cell');
  assert.equal(itemKind('auto', 5312, 2988), 'field');
  assert.equal(itemKind('auto', 600, 500, 130), 'cell', 'both sides must exceed 4 × 130');
  assert.equal(itemKind('auto', 600, 540, 130), 'field');
  assert.equal(itemKind('auto', 600, 540, 200), 'cell', "the model's own cell size moves the line");
  assert.equal(itemKind('cells', 5312, 2988), 'cell');
  assert.equal(itemKind('fields', 100, 100), 'field');
  // An explicit kind the size contradicts is refused, never read the wrong way: a smear photo as one cell, a crop as
  // a field to search for cells. Within the margins (8 cells across, 2 cells across) the user's word stands.
  assert.equal(kindContradiction('cells', 5312, 2988)?.reason, 'not-a-cell');
  assert.match(kindContradiction('cells', 2400, 1800)!.error, /^image is 2400×1800, more than 8 cells across both ways \(the model's cells are ~130 px\): a smear field\? submit fields with --kind fields or auto$/);
  assert.equal(kindContradiction('cells', 1400, 1000), undefined);
  assert.equal(kindContradiction('cells', 5312, 900), undefined, 'a strip is not more than 8 cells across both ways');
  assert.equal(kindContradiction('fields', 142, 130)?.reason, 'not-a-field');
  assert.equal(kindContradiction('fields', 300, 140), undefined);
  assert.equal(kindContradiction('fields', 142, 130, 60), undefined, "the model's own cell size moves the line");
  for (const [w, h] of [[142, 130], [5312, 2988]] as const) assert.equal(kindContradiction('auto', w, h), undefined);
  // `auto` reads by size alone: a small image it read as a field, where few cells were counted, may be one large cell
  // (a 560 px crop of a parasitized cell came back "0 of 1, 0.0 %"): kept, with a warning saying what to do.
  assert.equal(smallFieldWarning('auto', 560, 560, 1), 'only 1 cell counted in this 560×560 image, read as a field because it is more than 4 cells of ~130 px across: if it is one cell photographed larger, submit it with --kind cells');
  assert.match(smallFieldWarning('auto', 700, 620, 0)!, /^only 0 cells counted/);
  assert.equal(smallFieldWarning('auto', 700, 620, 10), undefined, 'ten cells counted: a field');
  assert.equal(smallFieldWarning('auto', 2400, 1800, 3), undefined, 'more than 8 cells across: a field with few cells (a sparse smear)');
  assert.equal(smallFieldWarning('fields', 560, 560, 1), undefined, 'the user said fields');
});

test('the Wilson interval for a parasitemia', () => {
  const [lo, hi] = wilsonInterval(0, 200);
  assert.equal(lo, 0);
  assert.ok(hi > 0.015 && hi < 0.025, String(hi));
  const [a, b] = wilsonInterval(10, 100);
  // Known value: 10/100 → [0.0552, 0.1744].
  assert.ok(Math.abs(a - 0.0552) < 1e-3 && Math.abs(b - 0.1744) < 1e-3, `${a} ${b}`);
  assert.deepEqual(wilsonInterval(0, 0), [0, 1]);
});

test('plasma closed in between touching cells goes back to the background; a pale centre stays in its cell', () => {
  // Two cells of radius 10 side by side (seeds at x 10 and x 30, row 10). Added pixels (fg, not raw): the gap
  // between the cells at x 19–21 (far from both seeds: dropped); the pale centre of cell 2 at (11, 10) and that of
  // cell 3 at (27–30, 10), joined to the gap by a pale spot of its rim at (22–26, 10): the centres stay, the spot
  // beyond 0.7 of the inscribed radius goes.
  const w = 40;
  const h = 21;
  const fg = new Uint8Array(w * h).fill(1);
  const raw = new Uint8Array(w * h).fill(1);
  const labels = new Int32Array(w * h);
  const dist = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      labels[y * w + x] = x < 20 ? 2 : 3;
      if (x >= 19 && x <= 21) raw[y * w + x] = 0;
    }
  }
  raw[10 * w + 11] = 0;
  for (let x = 22; x <= 30; x++) raw[10 * w + x] = 0;
  const seeds = new Map([[2, 10 * w + 10], [3, 10 * w + 30]]);
  for (const s of seeds.values()) dist[s] = 10;
  const kept = dropPlasmaBetweenCells(fg, raw, labels, dist, w, (l) => seeds.get(l));
  for (let y = 0; y < h; y++) for (const x of [19, 20, 21]) assert.equal(kept[y * w + x], 0, `gap pixel (${x}, ${y})`);
  assert.equal(kept[10 * w + 11], 1, 'pale centre kept');
  for (const x of [23, 24, 25, 26, 27, 28, 29, 30]) assert.equal(kept[10 * w + x], 1, `cell 3's centre (${x}, 10) kept`);
  for (const x of [22]) assert.equal(kept[10 * w + x], 0, `the rim spot (${x}, 10) dropped`);
  assert.equal(kept[0], 1, 'pixels the threshold found stay');
});

test('a cell label keeps only its largest piece: slivers cut off from it become background', () => {
  const w = 8;
  const h = 3;
  // Label 2: a 3×3 block at x 0–2 and a 1-pixel sliver at x 6; label 3: x 4.
  const labels = new Int32Array(w * h).fill(1);
  for (let y = 0; y < h; y++) for (let x = 0; x < 3; x++) labels[y * w + x] = 2;
  labels[w + 6] = 2;
  labels[w + 4] = 3;
  const out = largestPiecePerLabel(labels, w, h);
  assert.equal(out[w + 6], 1, 'sliver dropped');
  assert.equal(out[w + 4], 3, "another label's only piece kept");
  assert.equal(out[w + 1], 2);
});

test("a cell's outline is rasterised back into its box: pixel centres inside the polygon", () => {
  // A square outline covers its box; a triangle half of it; a 64-gon of radius 20 about π·20² pixels.
  const box = { x: 10, y: 20, width: 10, height: 10 };
  const square = polygonMask([[10, 20], [20, 20], [20, 30], [10, 30]], box);
  assert.equal(square.reduce((a, b) => a + b, 0), 100);
  const triangle = polygonMask([[10, 20], [20, 20], [10, 30]], box);
  assert.equal(triangle.reduce((a, b) => a + b, 0), 55, 'pixel centres on or below the diagonal: 10 + 9 + … + 1');
  assert.equal(triangle[0], 1, 'the corner at the right angle is in');
  assert.equal(triangle[99], 0, 'the far corner is out');
  const disc = Array.from({ length: 64 }, (_, i) => [50 + 20 * Math.cos((i / 64) * 2 * Math.PI), 60 + 20 * Math.sin((i / 64) * 2 * Math.PI)] as [number, number]);
  const inDisc = polygonMask(disc, { x: 30, y: 40, width: 40, height: 40 }).reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(inDisc - Math.PI * 400) < 20, String(inDisc));
  // A box wider than the outline: nothing outside it.
  const wide = polygonMask([[12, 22], [14, 22], [14, 24], [12, 24]], box);
  assert.equal(wide.reduce((a, b) => a + b, 0), 4);
  assert.equal(wide[2 * 10 + 2], 1);
});

/** Labels of discs (label 2 …) on a w × h grid; a pixel of two discs takes the later one. */
function discs(w: number, h: number, list: [number, number, number][]): Int32Array {
  const labels = new Int32Array(w * h).fill(1);
  list.forEach(([cx, cy, r], k) => {
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) labels[y * w + x] = 2 + k;
  });
  return labels;
}
const regionsOf = (labels: Int32Array, w: number) => {
  const m = new Map<number, { n: number; sx: number; sy: number }>();
  labels.forEach((l, i) => {
    if (l < 2) return;
    const r = m.get(l) ?? { n: 0, sx: 0, sy: 0 };
    r.n++;
    r.sx += i % w;
    r.sy += Math.floor(i / w);
    m.set(l, r);
  });
  return [...m.values()].map((r) => ({ n: r.n, cx: r.sx / r.n, cy: r.sy / r.n }));
};

test('clumps that one seed flooded are split by size: an elongated pair in two, a larger clump in round(area / cell) parts; a large round cell stays whole', () => {
  const w = 200;
  const h = 120;
  const cellArea = Math.PI * 16 * 16; // cells of radius 16
  const maxArea = cellArea * 1.6 ** 2;
  const one = (list: [number, number, number][]) => {
    const l = discs(w, h, list);
    // One label for all discs: the flood gave the clump a single seed.
    for (let i = 0; i < l.length; i++) if (l[i]! >= 2) l[i] = 2;
    return regionsOf(splitClumps(l, w, cellArea, maxArea), w);
  };
  // Two cells overlapping by a tenth of their diameters: ~1.9 cells of area, under the size limit, elongated 2:1.
  const pair = one([[60, 60, 16], [89, 60, 16]]);
  assert.equal(pair.length, 2);
  assert.ok(pair.every((r) => Math.abs(r.cy - 60) < 1) && pair.some((r) => Math.abs(r.cx - 60) < 4) && pair.some((r) => Math.abs(r.cx - 89) < 4), JSON.stringify(pair));
  // A large single cell (1.3 × the diameter: 1.69 cells of area) is round: not split.
  assert.equal(one([[100, 60, 21]]).length, 1);
  // Four overlapping cells in a 2 × 2 clump (beyond the size limit): four parts, one around each centre.
  const clump = one([[60, 40, 16], [88, 40, 16], [60, 68, 16], [88, 68, 16]]);
  assert.equal(clump.length, 4);
  for (const [cx, cy] of [[60, 40], [88, 40], [60, 68], [88, 68]]) assert.ok(clump.some((r) => Math.hypot(r.cx - cx!, r.cy - cy!) < 5), JSON.stringify(clump));
  // Labels already separate are left alone.
  assert.equal(regionsOf(splitClumps(discs(w, h, [[40, 40, 16], [120, 60, 16]]), w, cellArea, maxArea), w).length, 2);
});

test('pale cells: where the cells are bluer than the plasma, blue − green finds the pale ones the green threshold misses; elsewhere green alone is used', async () => {
  // A beige plasma with dark lavender cells and pale lavender cells (as bright in green as the plasma).
  const paint = (pale: [number, number, number], dark: [number, number, number]) => {
    const w = 900;
    const h = 600;
    const rgb = new Uint8Array(w * h * 3);
    for (let i = 0; i < w * h; i++) rgb.set([217, 188, 172], i * 3);
    const centres: [number, number, boolean][] = [];
    for (let gy = 0; gy < 4; gy++) for (let gx = 0; gx < 6; gx++) centres.push([80 + gx * 150, 80 + gy * 145, (gx + gy) % 3 === 0]);
    for (const [cx, cy, isPale] of centres) {
      for (let y = cy - 50; y <= cy + 50; y++) for (let x = cx - 50; x <= cx + 50; x++) if ((x - cx) ** 2 + (y - cy) ** 2 <= 50 * 50) rgb.set(isPale ? pale : dark, (y * w + x) * 3);
    }
    return { rgb, w, h, pale: centres.filter((c) => c[2]).length, all: centres.length };
  };
  const lavender = paint([200, 186, 200], [170, 140, 170]);
  const r1 = await findCells(lavender.rgb, lavender.w, lavender.h, { diameter: 100 });
  assert.equal(r1.cells.length, lavender.all, 'dark and pale lavender cells');
  // Brown cells (not bluer than the plasma): the blue cue is off, and a pale lavender patch is not taken for a cell.
  const brown = paint([200, 186, 200], [170, 140, 120]);
  const r2 = await findCells(brown.rgb, brown.w, brown.h, { diameter: 100 });
  assert.equal(r2.cells.length, brown.all - brown.pale, 'the brown cells only');
});

test('white cells (a large, very dark nucleus) are told from red cells, a parasite\'s small dark chromatin is not', async () => {
  const w = 800;
  const h = 500;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) rgb.set([217, 188, 172], i * 3);
  const disc = (cx: number, cy: number, r: number, colour: [number, number, number]) => {
    for (let y = cy - r; y <= cy + r; y++) for (let x = cx - r; x <= cx + r; x++) if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) rgb.set(colour, (y * w + x) * 3);
  };
  const red: [number, number, number] = [190, 150, 160];
  const centres = [[100, 100], [300, 100], [500, 100], [700, 100], [100, 350], [300, 350], [500, 350]] as const;
  for (const [cx, cy] of centres) disc(cx, cy, 50, red);
  disc(300, 100, 8, [100, 13, 98]); // a parasite's chromatin dot in a red cell
  disc(700, 350, 55, [200, 170, 200]); // a white cell: pale cytoplasm …
  disc(700, 350, 38, [100, 13, 98]); // … around a large dark nucleus
  const r = await findCells(rgb, w, h, { diameter: 100 });
  assert.equal(r.cells.length, centres.length, 'every red cell, the infected one included');
  assert.equal(r.whiteCells.length, 1);
  assert.ok(Math.hypot(r.whiteCells[0]!.centroid.x - 700, r.whiteCells[0]!.centroid.y - 350) < 10, JSON.stringify(r.whiteCells));
  assert.ok(r.cells.some((c) => Math.hypot(c.centroid.x - 300, c.centroid.y - 100) < 10), 'the cell with a chromatin dot stays a red cell');
});

test('the smallest enclosing circle of an outline', () => {
  assert.deepEqual(enclosingCircle([[0, 0], [10, 0], [5, 5]]), { cx: 5, cy: 0, r: 5 });
  const ring = Array.from({ length: 40 }, (_, i) => [30 + 12 * Math.cos(i / 6.37), 40 + 12 * Math.sin(i / 6.37)] as [number, number]);
  const c = enclosingCircle([...ring, [30, 40], [35, 42]]);
  assert.ok(Math.abs(c.cx - 30) < 0.3 && Math.abs(c.cy - 40) < 0.3 && Math.abs(c.r - 12) < 0.3, JSON.stringify(c));
  // Every point inside, whatever the order.
  const pts = Array.from({ length: 200 }, (_, i) => [Math.sin(i * 12.9898) * 50, Math.cos(i * 78.233) * 30] as [number, number]);
  const e = enclosingCircle(pts);
  assert.ok(pts.every(([x, y]) => Math.hypot(x - e.cx, y - e.cy) <= e.r + 1e-6));
  assert.ok(e.r <= Math.hypot(50, 30) + 1e-6 && e.r >= 49, String(e.r));
});

test("a neighbour lying over a cell is cut out of the cell's crop; where the cell lies over its neighbour, its own pixels stay", async () => {
  const w = 500;
  const h = 300;
  const paint = (frontFirst: boolean) => {
    const rgb = new Uint8Array(w * h * 3);
    for (let i = 0; i < w * h; i++) rgb.set([233, 208, 206], i * 3);
    const disc = (cx: number, cy: number, r: number, colour: [number, number, number]) => {
      for (let y = cy - r; y <= cy + r; y++) for (let x = cx - r; x <= cx + r; x++) if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) rgb.set(colour, (y * w + x) * 3);
    };
    // A brown cell at (150, 150) and a pink one at (230, 150), overlapping by 20 px; the later one is in front.
    const brown = () => disc(150, 150, 50, [178, 130, 130]);
    const pink = () => disc(230, 150, 50, [210, 100, 160]);
    for (const draw of frontFirst ? [brown, pink] : [pink, brown]) draw();
    return rgb;
  };
  for (const pinkInFront of [true, false]) {
    const rgb = paint(pinkInFront);
    const found = await findCells(rgb, w, h, { diameter: 100 });
    assert.equal(found.cells.length, 2);
    const k = found.cells.findIndex((c) => c.centroid.x < 190);
    const c = found.cells[k]!;
    const crop = cropCell(rgb, w, found, k, c.box);
    // Pixels of the brown cell's crop in its half of the lens (x 180–190; the watershed's line is at 190 and the
    // crop's erosion takes its last 4 px), on the row through both centres.
    let pinkLeft = 0;
    let brownLeft = 0;
    for (let x = 181; x < 187; x++) {
      const o = ((150 - c.box.y) * c.box.width + (x - c.box.x)) * 3;
      if (x - c.box.x >= c.box.width) continue;
      if (crop[o] === 210) pinkLeft++;
      if (crop[o] === 178) brownLeft++;
    }
    if (pinkInFront) assert.equal(pinkLeft, 0, 'the pink neighbour\'s pixels are cut out of the brown cell\'s crop');
    else assert.ok(brownLeft >= 3, `the brown cell's own pixels in the lens stay (${brownLeft})`);
  }
});

test("a strip the flood handed a cell beyond a gap (a neighbour's rim, plasma between three cells) is opened away; bodies stay", () => {
  const w = 60;
  const h = 40;
  const labels = discs(w, h, [[18, 20, 12], [46, 20, 10]]);
  // Label 2 also holds a 2-px-wide strip running down beside cell 3 (x 33–34), joined to its body at the bottom.
  for (let y = 10; y < 32; y++) for (let x = 33; x <= 34; x++) labels[y * w + x] = 2;
  for (let x = 28; x <= 34; x++) labels[31 * w + x] = 2;
  const out = openLabels(labels, w, h, 1);
  for (let y = 10; y < 30; y++) for (let x = 33; x <= 34; x++) assert.notEqual(out[y * w + x], 2, `strip pixel (${x}, ${y}) removed`);
  const count = (a: Int32Array, l: number) => a.reduce((n, v) => n + (v === l ? 1 : 0), 0);
  assert.ok(count(out, 2) >= 0.9 * Math.PI * 144, `cell 2's body stays (${count(out, 2)})`);
  assert.ok(count(out, 3) >= 0.9 * Math.PI * 100);
});

test('plasma pocketed between cells is cut from the edge of a crop mask, with slivers left beyond it; a pale centre stays', () => {
  const w = 40;
  const h = 40;
  const cellColour = [200, 120, 130];
  const plasma = [235, 215, 205];
  const rgb = new Uint8Array(w * h * 3);
  const mask = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const r = Math.hypot(x - 20, y - 20);
      if (r > 18) continue;
      mask[i] = 1;
      // A pale centre (r < 5) and a pocket of plasma at the top right (from the edge inward), both plasma-coloured.
      const pocket = x >= 28 && y <= 12;
      rgb.set(r < 5 || pocket ? plasma : cellColour, i * 3);
    }
  }
  // A one-pixel rim line beyond the pocket, joined to the cell only through it.
  for (let x = 29; x <= 33; x++) rgb.set([90, 40, 80], (9 * w + x) * 3);
  const box = { x: 0, y: 0, width: w, height: h };
  const cut = trimPlasmaPockets(mask, rgb, w, box, cellColour, plasma, 8);
  assert.ok(cut > 0);
  for (let y = 0; y <= 12; y++) for (let x = 28; x < w; x++) assert.equal(mask[y * w + x], 0, `pocket pixel (${x}, ${y}) cut`);
  assert.equal(mask[20 * w + 20], 1, 'the pale centre stays');
  assert.equal(mask[20 * w + 5], 1, "the cell's body stays");
  // Nothing pale at the edge: nothing cut.
  const plain = new Uint8Array(w * h);
  for (let i = 0; i < w * h; i++) {
    if (Math.hypot((i % w) - 20, Math.floor(i / w) - 20) > 18) continue;
    plain[i] = 1;
    rgb.set(cellColour, i * 3);
  }
  assert.equal(trimPlasmaPockets(plain, rgb, w, box, cellColour, plasma, 8), 0);
});

test('keepLargestPiece clears every 4-connected piece but the largest', () => {
  // 1 1 0 1
  // 1 1 0 0
  // 0 0 0 1   → the 2×2 block stays; the two lone pixels go.
  const m = new Uint8Array([1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1]);
  assert.equal(keepLargestPiece(m, 4, 3), 2);
  assert.deepEqual([...m], [1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]);
  const one = new Uint8Array([0, 1, 1, 0]);
  assert.equal(keepLargestPiece(one, 4, 1), 0, 'one piece: nothing cleared');
});

test("a cell 1-2 px clear of the image's border is counted; one cut by it is not (edge contact in field pixels)", () => {
  const w = 300;
  const h = 200;
  const plasma = [235, 215, 205];
  const colour: [number, number, number] = [200, 120, 130];
  const paint = (cx: number, cy: number, r: number) => {
    const rgb = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgb.set(Math.hypot(x + 0.5 - cx, y + 0.5 - cy) <= r ? colour : plasma, (y * w + x) * 3);
    return rgb;
  };
  const cell = (cx: number, cy: number, r: number) => ({ box: { x: Math.max(0, Math.floor(cx - r)), y: Math.max(0, Math.floor(cy - r)), width: Math.ceil(2 * r), height: Math.ceil(2 * r) }, circle: { cx, cy, r }, colour });
  assert.equal(edgeContact(paint(150, 51.5, 50), w, h, cell(150, 51.5, 50), plasma), 0, '1.5 px clear of the top');
  const cut = edgeContact(paint(150, 46, 50), w, h, cell(150, 46, 50), plasma);
  assert.ok(cut >= 0.2 * 100, `cut 4 px deep at the top: contact ${cut}`);
  const right = edgeContact(paint(252, 100, 50), w, h, cell(252, 100, 50), plasma);
  assert.ok(right >= 0.2 * 100, `cut 2 px deep at the right: contact ${right}`);
});

test("a region made of overlapping neighbours' pieces is a phantom; a cell partly under a neighbour is not", () => {
  const w = 80;
  const h = 80;
  // Three cells (r 14) around a pocket at (40, 40), and a fourth region in the middle made of their overlaps.
  const centres: [number, number][] = [[28, 30], [52, 30], [40, 52]];
  const labels = new Int32Array(w * h);
  centres.forEach(([cx, cy], k) => {
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= 14 * 14) labels[y * w + x] = k + 1;
  });
  for (let y = 30; y < 48; y++) for (let x = 33; x < 47; x++) labels[y * w + x] = 4;
  const cells = [...centres.map(([cx, cy]) => ({ circle: { cx, cy, r: 14 } })), { circle: { cx: 40, cy: 39, r: 11.4 } }];
  // Working scale 1; diameter 28.
  assert.deepEqual([...phantomRegions(labels, w, cells, 1, 28)], [3]);
});

test("a hole the label map left inside a cell is the cell's own in its crop (no black holes); a gap open to the outside stays out", () => {
  const m = new Uint8Array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1]);
  // 5 × 4: the zeros at (0, 1), (0, 2), (0, 3) and (4, 2) lie on the border: none is a hole.
  const before = [...m];
  assert.equal(fillMaskHoles(m, 5, 4), 0, 'every 0 here reaches the border');
  assert.deepEqual([...m], before);
  const ring = new Uint8Array(25).fill(1);
  ring[12] = 0;
  ring[13] = 0;
  assert.equal(fillMaskHoles(ring, 5, 5), 2);
  assert.ok(ring.every((v) => v === 1));
  // Through cropCell: a disc label with a 2×2 working-pixel hole near its centre.
  const w = 40;
  const h = 40;
  const labels = new Int32Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if ((x + 0.5 - 20) ** 2 + (y + 0.5 - 20) ** 2 <= 16 * 16) labels[y * w + x] = 1;
  for (const [x, y] of [[24, 18], [25, 18], [24, 19], [25, 19]] as const) labels[y * w + x] = 0;
  const rgb = new Uint8Array(w * h * 3).fill(200);
  const box = { x: 3, y: 3, width: 34, height: 34 };
  const crop = cropCell(rgb, w, { labels: { data: labels, width: w, height: h }, scale: 1, diameter: 32 }, 0, box);
  for (const [x, y] of [[24, 18], [25, 19]] as const) assert.equal(crop[((y - box.y) * box.width + (x - box.x)) * 3], 200, `hole pixel (${x}, ${y}) keeps the field's pixel`);
});

test('an image with nothing to find gives no cells and no NaN: a black image has no window circle, and its size estimate stays a cell size', async () => {
  for (const v of [0, 40, 255]) {
    const found = await findCells(new Uint8Array(800 * 600 * 3).fill(v), 800, 600);
    assert.equal(found.cells.length, 0);
    assert.equal(found.fov, undefined, `value ${v}: ${JSON.stringify(found.fov)}`);
    assert.ok(found.diameter >= 8 && found.diameter <= 800, `diameter ${found.diameter}`);
  }
});

test('a field without colour is told from a Giemsa field: grey stored as RGB (with JPEG-like chroma noise) is colourless, the colour field is not', () => {
  const field = generateField(2, { width: 600, height: 400, cells: 12, fov: false });
  assert.equal(isColourless(field.rgb), false);
  const grey = Uint8Array.from(field.rgb);
  for (let i = 0; i < grey.length; i += 3) {
    const y = Math.round(0.299 * grey[i]! + 0.587 * grey[i + 1]! + 0.114 * grey[i + 2]!);
    grey[i] = Math.min(255, y + (i % 7)); // a few levels of chroma noise
    grey[i + 1] = y;
    grey[i + 2] = Math.max(0, y - (i % 5));
  }
  assert.equal(isColourless(grey), true);
  assert.equal(isColourless(new Uint8Array([10, 200, 10, 10, 200, 10])), false);
});

test('a colour field with few cells on a neutral background is not taken for grey', () => {
  const w = 2592;
  const h = 1944;
  const rgb = new Uint8Array(w * h * 3).fill(200); // neutral grey-white background
  // One pink 70-px cell.
  for (let y = 0; y < 70; y++) for (let x = 0; x < 70; x++) if ((x - 35) ** 2 + (y - 35) ** 2 < 35 ** 2) rgb.set([220, 150, 170], ((y + 900) * w + x + 1200) * 3);
  assert.equal(isColourless(rgb), false);
  assert.equal(isColourless(new Uint8Array(w * h * 3).fill(200)), true);
});

test('a cell crop is grey only when its channels are equal to within JPEG noise: the palest real crops (channels 10 apart) keep their class', async () => {
  const { default: sharp } = await import('sharp');
  const { preprocess, CELL_CHROMA_LEVELS, generateCell, createRng } = await import('@camflow/common');
  const cell = generateCell(createRng(5), 'Uninfected');
  // As pale as the palest NIH development crops: every channel 10 levels from the others (a field would call it grey).
  const pale = Uint8Array.from(cell.rgb);
  for (let i = 0; i < pale.length; i += 3) {
    const y = Math.round((pale[i]! + pale[i + 1]! + pale[i + 2]!) / 3);
    if (y > 20) [pale[i], pale[i + 1], pale[i + 2]] = [Math.min(255, y + 5), Math.max(0, y - 5), y];
  }
  const size = 64;
  const input = async (rgb: Uint8Array, jpeg: boolean) => {
    const raw = sharp(Buffer.from(rgb), { raw: { width: cell.width, height: cell.height, channels: 3 } });
    return (await preprocess(await (jpeg ? raw.jpeg({ quality: 90 }) : raw.png()).toBuffer(), size, undefined, { keepOriginal: false })).input;
  };
  assert.equal(isColourless(await input(pale, false), CELL_CHROMA_LEVELS), false);
  assert.equal(isColourless(await input(pale, false)), true, "the field's looser rule would have refused it");
  assert.equal(isColourless(await input(cell.rgb, true), CELL_CHROMA_LEVELS), false);
  const grey = Uint8Array.from(cell.rgb);
  for (let i = 0; i < grey.length; i += 3) grey[i] = grey[i + 1] = grey[i + 2] = Math.round(0.299 * grey[i]! + 0.587 * grey[i + 1]! + 0.114 * grey[i + 2]!);
  for (const jpeg of [false, true]) assert.equal(isColourless(await input(grey, jpeg), CELL_CHROMA_LEVELS), true, `grey as ${jpeg ? 'an RGB JPEG' : 'an RGB PNG'}`);
});

test("a field's heatmap compares across cells: each cell's CAM times its probability, so a cell called uninfected stays cold", () => {
  const box = { x: 1, y: 1, width: 2, height: 2 };
  const map = Float32Array.from([0, 0.5, 0.5, 1]); // normalised alone: every cell's peak is 1
  const paint = (gain: number) => {
    const rgba = new Uint8Array(4 * 4 * 4);
    paintCellHeat(rgba, 4, box, map, () => true, { gain });
    return [...rgba.subarray((2 * 4 + 2) * 4, (2 * 4 + 2) * 4 + 4)]; // the peak's pixel, (2, 2)
  };
  assert.deepEqual(paint(0.95), [...jet(0.95), 255], 'a parasitized cell: its peak is hot');
  assert.deepEqual(paint(0.02), [...jet(0.02), 255], 'an uninfected cell: its peak is cold');
  assert.ok(paint(0.02)[0]! === 0 && paint(0.02)[2]! > 100, `blue, not red: ${paint(0.02)}`);
  assert.throws(() => paint(1.5), /Expected a probability in \[0, 1\] for gain but received 1\.5/);
});
