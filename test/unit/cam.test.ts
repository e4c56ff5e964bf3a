import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  argmax2d,
  blend,
  camAtSize,
  camForClass,
  connectedRegions,
  heatmapRgb,
  iou,
  jet,
  localize,
  maxBoxAccV2,
  minMaxNormalise,
  pointingHit,
  restrictToMask,
  scaleBox,
  softmax,
  thresholdMask,
  upsampleBilinear,
} from '@camflow/common';

const close = (a: ArrayLike<number>, b: ArrayLike<number>, eps = 1e-6) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= eps, `index ${i}: ${a[i]} vs ${b[i]}`);
};

test('camForClass is Σ_k w_k^c f_k at every position, without the bias (hand-computed)', () => {
  // 2×2 map, 3 channels (channels-last), 2 classes; kernel [channel][class].
  const features = { data: Float32Array.from([1, 2, 3, 0, 1, 0, 2, 2, 2, 5, 0, 1]), height: 2, width: 2, channels: 3 };
  const kernel = Float32Array.from([0.5, -1, 1, 0, -2, 3]);
  // class 0: w = [0.5, 1, -2]
  close(camForClass(features, kernel, 2, 0), [0.5 + 2 - 6, 1, 1 + 2 - 4, 2.5 - 2]);
  // class 1: w = [-1, 0, 3]
  close(camForClass(features, kernel, 2, 1), [-1 + 9, 0, -2 + 6, -5 + 3]);
});

test('camForClass agrees with the seed formula weight_softmax[c] · features (channels-first) on random weights', () => {
  const K = 4, C = 3, H = 5, W = 6;
  let s = 1;
  const rand = () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1;
  // The seed's layout: features[k][y][x] (channels first), weight_softmax[c][k].
  const featuresCF = Array.from({ length: K }, () => Array.from({ length: H * W }, () => Math.max(0, rand())));
  const weightSoftmax = Array.from({ length: C }, () => Array.from({ length: K }, rand));
  const channelsLast = new Float32Array(H * W * K);
  for (let k = 0; k < K; k++) for (let p = 0; p < H * W; p++) channelsLast[p * K + k] = featuresCF[k]![p]!;
  const kernel = new Float32Array(K * C);
  for (let k = 0; k < K; k++) for (let c = 0; c < C; c++) kernel[k * C + c] = weightSoftmax[c]![k]!;
  for (let c = 0; c < C; c++) {
    const seed = Array.from({ length: H * W }, (_, p) => weightSoftmax[c]!.reduce((acc, w, k) => acc + w * featuresCF[k]![p]!, 0));
    close(camForClass({ data: channelsLast, height: H, width: W, channels: K }, kernel, C, c), seed, 1e-5);
  }
});

test('camForClass refuses a class index out of range, naming the field', () => {
  assert.throws(() => camForClass({ data: new Float32Array(4), height: 2, width: 2, channels: 1 }, new Float32Array(2), 2, 2), /classIndex/);
});

test('bilinear upsampling uses half-pixel centres (OpenCV / PIL convention)', () => {
  // 1×2 → 1×4: centres map to -0.25, 0.25, 0.75, 1.25 → clamped and interpolated.
  close(upsampleBilinear(Float32Array.from([0, 1]), 1, 2, 1, 4), [0, 0.25, 0.75, 1]);
  // Identity when sizes match.
  close(upsampleBilinear(Float32Array.from([1, 2, 3, 4]), 2, 2, 2, 2), [1, 2, 3, 4]);
  // 2×2 → 4×4 centre values.
  const up = upsampleBilinear(Float32Array.from([0, 0, 0, 4]), 2, 2, 4, 4);
  close([up[5]!, up[10]!, up[15]!], [0.25, 2.25, 4]);
});

test('min-max normalisation maps to [0, 1]; a constant map becomes zeros', () => {
  close(minMaxNormalise(Float32Array.from([-2, 0, 2])), [0, 0.5, 1]);
  close(minMaxNormalise(Float32Array.from([3, 3])), [0, 0]);
});

test('camAtSize gives bit for bit the composed upsample → normalise → restrict-to-cell, its peak and its maximum', () => {
  let seed = 11;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const cases: [number, number, number, number][] = [
    [16, 16, 130, 142], // a cell crop: up, not square
    [16, 16, 64, 64],
    [18, 18, 7, 5], // down
    [1, 1, 9, 9], // one feature pixel: a constant map
    [16, 16, 16, 16],
  ];
  for (const [fh, fw, h, w] of cases) {
    for (const withMask of [false, true]) {
      for (const kind of ['random', 'ties', 'constant']) {
        const cam = Float32Array.from({ length: fh * fw }, () => (kind === 'constant' ? 0.7 : kind === 'ties' ? Math.round(rnd() * 3) : rnd() * 4 - 1));
        // A disc off-centre: the cell; its maximum inside is below 1, so the map is renormalised inside it.
        const mask = withMask ? Uint8Array.from({ length: h * w }, (_, i) => ((i % w) - w / 3) ** 2 + (Math.floor(i / w) - h / 2) ** 2 < (h * w) / 8 ? 1 : 0) : undefined;
        const want = minMaxNormalise(upsampleBilinear(cam, fh, fw, h, w));
        if (mask) restrictToMask(want, mask);
        let best = 0;
        for (let i = 1; i < want.length; i++) if (want[i]! > want[best]!) best = i;
        const got = camAtSize(cam, fh, fw, h, w, mask);
        const label = `${fh}×${fw} → ${h}×${w}, ${kind}${mask ? ', masked' : ''}`;
        assert.deepEqual(got.map, want, label);
        assert.equal(got.peak, best, `${label}: peak`);
        assert.equal(got.max, want[best], `${label}: max`);
        // The known maximum gives the same mask as the scan for it.
        assert.deepEqual(thresholdMask(got.map, 0.2, undefined, got.max), thresholdMask(got.map, 0.2), `${label}: threshold`);
      }
    }
  }
  // A plateau inside the cell (many pixels at its maximum) with the map's maximum outside it: the peak is the
  // plateau's first pixel in raster order after renormalisation, as the composed functions give.
  const plateau = Float32Array.from({ length: 16 }, (_, i) => (i === 0 ? 5 : i === 10 || i === 11 || i === 14 || i === 15 ? 3 : 0));
  const cell = Uint8Array.from({ length: 256 }, (_, i) => (i % 16 >= 6 && Math.floor(i / 16) >= 6 ? 1 : 0));
  const composed = restrictToMask(minMaxNormalise(upsampleBilinear(plateau, 4, 4, 16, 16)), cell);
  const fused = camAtSize(plateau, 4, 4, 16, 16, cell);
  assert.deepEqual(fused.map, composed);
  assert.equal(composed.filter((v) => v === 1).length > 1, true, 'the plateau has several pixels at the maximum');
  assert.equal(fused.peak, composed.indexOf(1));
  assert.throws(() => camAtSize(new Float32Array(4), 2, 2, 3, 3, new Uint8Array(8)), /mask/);
});

test('threshold keeps pixels strictly above fraction × max', () => {
  assert.deepEqual([...thresholdMask(Float32Array.from([0, 0.2, 0.21, 1]), 0.2)], [0, 0, 1, 1]);
  assert.deepEqual([...thresholdMask(Float32Array.from([0, 0, 0]), 0.2)], [0, 0, 0]);
});

test('components are 8-connected: diagonal neighbours join, and the largest comes first', () => {
  // 5×4 mask: a diagonal chain of 3 and a separate pair.
  const mask = Uint8Array.from([
    1, 0, 0, 0, 1,
    0, 1, 0, 0, 1,
    0, 0, 1, 0, 0,
    0, 0, 0, 0, 0,
  ]);
  const values = Float32Array.from(mask, (m) => m * 0.5);
  const regions = connectedRegions(mask, values, 5, 4);
  assert.equal(regions.length, 2);
  assert.deepEqual({ ...regions[0] }, { x: 0, y: 0, width: 3, height: 3, area: 3, score: 0.5, peak: 0.5 });
  assert.deepEqual({ x: regions[1]!.x, y: regions[1]!.y, width: regions[1]!.width, height: regions[1]!.height }, { x: 4, y: 0, width: 1, height: 2 });
});

test("localize applies the paper's rule: largest component above 20 % of the max, its bounding box", () => {
  const w = 6, h = 5;
  const map = new Float32Array(w * h);
  // A big blob (values 0.5–1) at the left, a small strong dot at the right, background 0.1 (below 0.2).
  map.fill(0.1);
  for (const [x, y, v] of [[0, 1, 0.5], [1, 1, 1], [1, 2, 0.6], [2, 2, 0.5], [0, 2, 0.3]] as const) map[y * w + x] = v;
  map[0 * w + 5] = 0.9;
  const { box, regions } = localize(map, w, h, { fraction: 0.2, minArea: 1 });
  assert.deepEqual({ x: box!.x, y: box!.y, width: box!.width, height: box!.height, area: box!.area }, { x: 0, y: 1, width: 3, height: 2, area: 5 });
  assert.equal(regions.length, 2);
  assert.ok(Math.abs(box!.score - (0.5 + 1 + 0.6 + 0.5 + 0.3) / 5) < 1e-6);
  // minArea filters the list, never the paper's box.
  assert.equal(localize(map, w, h, { fraction: 0.2, minArea: 2 }).regions.length, 1);
});

test('IoU of pixel boxes (x + width exclusive)', () => {
  assert.equal(iou({ x: 0, y: 0, width: 2, height: 2 }, { x: 1, y: 1, width: 2, height: 2 }), 1 / 7);
  assert.equal(iou({ x: 0, y: 0, width: 2, height: 2 }, { x: 2, y: 2, width: 2, height: 2 }), 0);
  assert.equal(iou({ x: 3, y: 4, width: 5, height: 6 }, { x: 3, y: 4, width: 5, height: 6 }), 1);
});

test('scaleBox maps model-input boxes to original pixels, rounding outwards', () => {
  assert.deepEqual(scaleBox({ x: 1, y: 2, width: 3, height: 4 }, 10, 10, 25, 20), { x: 2, y: 4, width: 8, height: 8 });
});

test('jet runs blue → red; heatmap and overlay blend at alpha', () => {
  assert.deepEqual(jet(0), [0, 0, 128]);
  assert.deepEqual(jet(1), [128, 0, 0]);
  assert.deepEqual(jet(0.5), [128, 255, 128]);
  const heat = heatmapRgb(Float32Array.from([0, 1]));
  assert.deepEqual([...heat], [0, 0, 128, 128, 0, 0]);
  assert.deepEqual([...blend(Uint8Array.from([100, 100, 100]), Uint8Array.from([200, 0, 0]), 0.3)], [130, 70, 70]);
});

test('softmax and argmax2d', () => {
  close(softmax([0, Math.log(3)]), [0.25, 0.75]);
  assert.deepEqual(argmax2d(Float32Array.from([0, 5, 1, 5]), 2), { index: 1, x: 1, y: 0, value: 5 });
});

test('pointing game and MaxBoxAccV2 on hand-made maps', () => {
  const w = 10, h = 10;
  const cam = new Float32Array(w * h);
  for (let y = 2; y < 6; y++) for (let x = 2; x < 6; x++) cam[y * w + x] = 1; // a 4×4 block
  const exact = { cam, width: w, height: h, truth: [{ x: 2, y: 2, width: 4, height: 4 }] };
  const shifted = { cam, width: w, height: h, truth: [{ x: 4, y: 4, width: 4, height: 4 }] }; // IoU 4/28
  assert.equal(pointingHit(exact), true);
  assert.equal(pointingHit({ ...exact, truth: [{ x: 7, y: 7, width: 2, height: 2 }] }), false);
  const score = maxBoxAccV2([exact, shifted]);
  // exact hits at every δ; shifted (IoU ≈ 0.14) at none.
  assert.equal(score.perIou['0.3']!.accuracy, 0.5);
  assert.equal(score.perIou['0.7']!.accuracy, 0.5);
  assert.equal(score.score, 0.5);
});

test('localize reads the threshold off the map: the regions of thresholdMask + connectedRegions, with or without a known max', () => {
  let s = 3;
  const rand = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  for (let trial = 0; trial < 40; trial++) {
    const [fh, fw, h, w] = [2 + Math.floor(rand() * 8), 2 + Math.floor(rand() * 8), 5 + Math.floor(rand() * 60), 5 + Math.floor(rand() * 60)];
    const { map, max } = camAtSize(Float32Array.from({ length: fh * fw }, () => rand() * 2 - 1), fh, fw, h, w);
    const fraction = trial % 2 ? 0.2 : rand() * 0.9;
    const want = connectedRegions(thresholdMask(map, fraction), map, w, h);
    for (const got of [localize(map, w, h, { fraction }).regions, localize(map, w, h, { fraction, max }).regions]) {
      assert.equal(got.length, want.length, `trial ${trial}: component count`);
      got.forEach((g, i) => {
        const e = want[i]!;
        assert.deepEqual([g.x, g.y, g.width, g.height, g.area, g.peak], [e.x, e.y, e.width, e.height, e.area, e.peak], `trial ${trial} component ${i}`);
        assert.ok(Math.abs(g.score - e.score) < 1e-12, `trial ${trial}: score ${g.score} vs ${e.score}`);
      });
    }
  }
  // A map that is zero everywhere has no region; a fraction outside [0, 1) is refused, naming the field.
  assert.deepEqual(localize(new Float32Array(9), 3, 3), { box: null, regions: [] });
  assert.throws(() => localize(new Float32Array(9), 3, 3, { fraction: 1 }), /fraction/);
});

test('run-based components agree with a plain 8-connected flood fill on random masks', () => {
  let s = 7;
  const rand = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  for (let trial = 0; trial < 60; trial++) {
    const w = 5 + Math.floor(rand() * 30);
    const h = 5 + Math.floor(rand() * 30);
    const density = 0.2 + rand() * 0.5;
    const mask = Uint8Array.from({ length: w * h }, () => (rand() < density ? 1 : 0));
    const values = Float32Array.from({ length: w * h }, () => rand());
    // Reference: flood fill from each unseen pixel in raster order.
    const seen = new Uint8Array(w * h);
    const expected: { x: number; y: number; width: number; height: number; area: number; sum: number; peak: number }[] = [];
    for (let start = 0; start < w * h; start++) {
      if (!mask[start] || seen[start]) continue;
      const stack = [start];
      seen[start] = 1;
      let x0 = w, y0 = h, x1 = -1, y1 = -1, area = 0, sum = 0, peak = -Infinity;
      while (stack.length) {
        const p = stack.pop()!;
        const px = p % w, py = Math.floor(p / w);
        area++; sum += values[p]!; peak = Math.max(peak, values[p]!);
        x0 = Math.min(x0, px); x1 = Math.max(x1, px); y0 = Math.min(y0, py); y1 = Math.max(y1, py);
        for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
          const nx = px + dx, ny = py + dy;
          if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
          const q = ny * w + nx;
          if (mask[q] && !seen[q]) { seen[q] = 1; stack.push(q); }
        }
      }
      expected.push({ x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1, area, sum, peak });
    }
    expected.sort((a, b) => b.area - a.area);
    const got = connectedRegions(mask, values, w, h);
    assert.equal(got.length, expected.length, `trial ${trial}: component count`);
    got.forEach((g, i) => {
      const e = expected[i]!;
      assert.deepEqual([g.x, g.y, g.width, g.height, g.area], [e.x, e.y, e.width, e.height, e.area], `trial ${trial} component ${i}`);
      assert.ok(Math.abs(g.score - e.sum / e.area) < 1e-9 && g.peak === e.peak);
    });
  }
});
