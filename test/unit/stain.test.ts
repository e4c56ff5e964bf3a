import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chancePointing, createRng, findStain, generateCell, hitsStain, pointingTolerance, summariseStainPointing } from '@camflow/common';

/** A pink cell disc on black (radius r, centre c), with optional dark purple dots. */
function cell(size: number, r: number, dots: { x: number; y: number; r: number }[] = [], rim = false): Uint8Array {
  const rgb = new Uint8Array(size * size * 3);
  const c = size / 2;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const d = Math.hypot(x + 0.5 - c, y + 0.5 - c);
      if (d > r) continue;
      const o = (y * size + x) * 3;
      // Texture of a few levels so the cell's green has a spread.
      const t = ((x * 7 + y * 13) % 9) - 4;
      rgb.set([205 + t, 160 + t, 175 + t], o);
      // A darker band at the rim: what the fall-off into black looks like.
      if (rim && d > r - 3) rgb.set([120, 70, 95], o); // dark and purple-ish: stain but for the rim rule
      for (const dot of dots) if (Math.hypot(x - dot.x, y - dot.y) <= dot.r) rgb.set([110, 45, 130], o);
    }
  }
  return rgb;
}

test('finds a dark purple chromatin dot inside a cell, and its box', () => {
  const s = findStain(cell(120, 55, [{ x: 40, y: 70, r: 4 }]), 120, 120);
  assert.equal(s.boxes.length, 1);
  const b = s.boxes[0]!;
  assert.ok(b.x <= 36 && b.x + b.width >= 44 && b.y <= 66 && b.y + b.height >= 74, JSON.stringify(b));
  assert.ok(b.width <= 10 && b.height <= 10, 'only the dot, not the cell');
});

test('an uninfected cell with a dark rim shows no stain (the rim is left out)', () => {
  const s = findStain(cell(120, 55, [], true), 120, 120);
  assert.deepEqual(s.boxes, []);
  assert.equal(s.stainPixels, 0);
  assert.ok(s.cellPixels > 9000);
});

test('grey or brown darkness is not stain: blue must hold up against green', () => {
  const rgb = cell(120, 55);
  for (let y = 60; y < 66; y++) for (let x = 60; x < 66; x++) rgb.set([90, 80, 40], (y * 120 + x) * 3);
  assert.deepEqual(findStain(rgb, 120, 120).boxes, []);
});

test('specks below the smallest region are noise', () => {
  assert.deepEqual(findStain(cell(120, 55, [{ x: 60, y: 60, r: 0.5 }]), 120, 120).boxes, []);
});

test("the synthetic generator's parasites are found as stain inside their truth boxes", () => {
  const rng = createRng(5);
  let found = 0;
  let inside = 0;
  for (let i = 0; i < 20; i++) {
    const c = generateCell(rng, 'Parasitized');
    const s = findStain(c.rgb, c.width, c.height);
    if (s.boxes.length === 0) continue;
    found++;
    const centre = (b: { x: number; y: number; width: number; height: number }) => ({ x: b.x + b.width / 2, y: b.y + b.height / 2 });
    const t = pointingTolerance(c.width, c.height);
    if (s.boxes.every((b) => c.boxes.some((tb) => hitsStain(boxMask(tb, c.width, c.height), c.width, c.height, centre(b), t)))) inside++;
  }
  assert.ok(found >= 16, `stain found in ${found} of 20 parasitized synthetic cells`);
  assert.ok(inside >= found - 2, `${inside} of ${found} stain finds lie at their truth boxes`);
});

function boxMask(b: { x: number; y: number; width: number; height: number }, width: number, height: number): Uint8Array {
  const m = new Uint8Array(width * height);
  for (let y = Math.max(0, Math.floor(b.y)); y < Math.min(height, b.y + b.height); y++) for (let x = Math.max(0, Math.floor(b.x)); x < Math.min(width, b.x + b.width); x++) m[y * width + x] = 1;
  return m;
}

test('pointing: a peak within the tolerance hits; chance is the share of the cell near the stain', () => {
  const rgb = cell(120, 55, [{ x: 40, y: 70, r: 4 }]);
  const s = findStain(rgb, 120, 120);
  const t = pointingTolerance(120, 120);
  assert.equal(t, 8);
  assert.ok(hitsStain(s.mask, 120, 120, { x: 40, y: 70 }, t));
  assert.ok(hitsStain(s.mask, 120, 120, { x: 40 + 4 + t, y: 70 }, t));
  assert.ok(!hitsStain(s.mask, 120, 120, { x: 40 + 4 + t + 2, y: 70 }, t));
  assert.ok(!hitsStain(s.mask, 120, 120, { x: 90, y: 40 }, t));
  const chance = chancePointing(rgb, s.mask, 120, 120, t);
  // The dot (r 4) grown by 8 is ≈ a 25-pixel square around it: ≈ 625 of ≈ 9,500 cell pixels.
  assert.ok(chance > 0.04 && chance < 0.1, String(chance));
  assert.deepEqual(summariseStainPointing([{ hit: true, chance: 0.1 }, { hit: false, chance: 0.3 }], ['Parasitized/clean.png']), { truth: 'stain', images: 2, noStain: 1, noStainNames: ['Parasitized/clean.png'], pointing: 0.5, chance: 0.2 });
  // No positive image with stain (a folder of negatives, over HTTP too): no score, never a 0 read as "always wrong".
  assert.deepEqual(summariseStainPointing([], []), { truth: 'stain', images: 0, noStain: 0, noStainNames: [], pointing: null, chance: null });
});
