import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classificationReport, expectedCalibrationError, groupOf, maxBoxAccV2HeldOut, recallAtSpecificity, rocAuc, type LocalizationSample } from '@camflow/common';

test('ROC AUC by ranks: perfect, inverted, ties counted half', () => {
  assert.equal(rocAuc([0.9, 0.8, 0.2, 0.1], [true, true, false, false]), 1);
  assert.equal(rocAuc([0.1, 0.2, 0.8, 0.9], [true, true, false, false]), 0);
  assert.equal(rocAuc([0.5, 0.5], [true, false]), 0.5);
  // 2 positives (0.9, 0.4), 2 negatives (0.6, 0.1): pairs won 3 of 4.
  assert.equal(rocAuc([0.9, 0.4, 0.6, 0.1], [true, true, false, false]), 0.75);
});

test('expected calibration error: perfectly calibrated bins give 0, overconfidence shows', () => {
  assert.equal(expectedCalibrationError([0.75, 0.75, 0.75, 0.75], [true, true, true, false]), 0);
  // All at 0.95 confidence, half right: |0.5 − 0.95| = 0.45.
  assert.ok(Math.abs(expectedCalibrationError([0.95, 0.95], [true, false]) - 0.45) < 1e-12);
});

test('recall at specificity ≥ s: the best recall of a threshold that calls at most ⌊(1 − s)·negatives⌋ negatives positive', () => {
  // 100 negatives at 0.00 … 0.99, positives at 0.995, 0.985, 0.975, 0.965, 0.5: specificity 0.97 allows 3 false
  // positives (0.99, 0.98, 0.97), so the threshold is the 4th highest negative, 0.96, and 4 of 5 positives are above it.
  const neg = Array.from({ length: 100 }, (_, i) => i / 100);
  const pos = [0.995, 0.985, 0.975, 0.965, 0.5];
  const truth = [...pos.map(() => true), ...neg.map(() => false)];
  const r = recallAtSpecificity([...pos, ...neg], truth, 0.97)!;
  assert.equal(r.threshold, 0.96);
  assert.equal(r.recall, 0.8);
  assert.equal(r.specificity, 0.97);
  // At 0.98 only 2 false positives: the threshold rises to 0.97 and the positive at 0.965 is lost.
  assert.deepEqual(recallAtSpecificity([...pos, ...neg], truth, 0.98), { threshold: 0.97, recall: 0.6, specificity: 0.98 });
  // Ties with the threshold are not called positive: a positive scored like the cut negative does not count.
  assert.equal(recallAtSpecificity([0.5, 0.5, 0.1], [true, false, false], 1)!.recall, 0);
  assert.equal(recallAtSpecificity([0.9], [true], 0.97), null);
  assert.throws(() => recallAtSpecificity([0.9, 0.1], [true, false], 1.5), /minSpecificity/);
  // The classification report reads it at 0.97.
  const rows = [...pos, ...neg].map((p, i) => ({ truth: truth[i] ? 'P' : 'U', predicted: p >= 0.5 ? 'P' : 'U', probability: p, confidence: Math.max(p, 1 - p) }));
  assert.deepEqual(classificationReport(rows, ['P', 'U'], 'P').recallAtSpecificity, r);
});

test('classification report: confusion, recall, specificity, the screening threshold and per-patient rows', () => {
  const row = (truth: string, predicted: string, probability: number, group: string) => ({ truth, predicted, probability, confidence: predicted === 'P' ? probability : 1 - probability, group });
  const rows = [row('P', 'P', 0.9, 'C1'), row('P', 'U', 0.3, 'C1'), row('U', 'U', 0.2, 'C2'), row('U', 'P', 0.6, 'C2'), row('U', 'U', 0.1, 'C2')];
  const r = classificationReport(rows, ['P', 'U'], 'P', 0.25);
  assert.deepEqual(r.confusion, { P: { P: 1, U: 1 }, U: { P: 1, U: 2 } });
  assert.deepEqual([r.accuracy, r.recall, r.specificity], [0.6, 0.5, 2 / 3]);
  // At P ≥ 0.25 both positives are caught; one more negative (0.6) is called positive as before.
  assert.deepEqual([r.screening!.recall, r.screening!.specificity, r.screening!.threshold], [1, 2 / 3, 0.25]);
  assert.deepEqual(r.groups, {
    C1: { images: 2, positives: 2, accuracy: 0.5, recall: 0.5, specificity: null },
    C2: { images: 3, positives: 0, accuracy: 2 / 3, recall: null, specificity: 2 / 3 },
  });
});

test('a set of one class reports no specificity / recall / ROC AUC (null), never a 0 that reads as a failed model', () => {
  const rows = [0.9, 0.8, 0.4].map((probability) => ({ truth: 'P', predicted: probability >= 0.5 ? 'P' : 'U', probability, confidence: Math.max(probability, 1 - probability) }));
  const r = classificationReport(rows, ['P', 'U'], 'P', 0.3);
  assert.deepEqual([r.accuracy, r.recall, r.specificity, r.rocAuc, r.recallAtSpecificity], [2 / 3, 2 / 3, null, null, null]);
  assert.deepEqual([r.screening!.recall, r.screening!.specificity], [1, null]);
  assert.equal(rocAuc([0.2, 0.7], [false, false]), null);
  // Nothing called positive: no precision either.
  const none = classificationReport([{ truth: 'U', predicted: 'U', probability: 0.1, confidence: 0.9 }], ['P', 'U'], 'P');
  assert.deepEqual([none.recall, none.specificity, none.precision], [null, 1, null]);
});

test('MaxBoxAccV2 with a held-out threshold scores the threshold chosen on the other images', () => {
  // 4×1 maps; the truth box covers x ∈ [2, 4): an image is localized (IoU ≥ 0.9) when exactly x = 2, 3 are above τ.
  const sample = (values: number[]): LocalizationSample => ({ cam: Float32Array.from(values), width: 4, height: 1, truth: [{ x: 2, y: 0, width: 2, height: 1 }] });
  const a = sample([0, 0, 1, 0.6]); // localized at τ = 0.1, 0.3, 0.5
  const c = sample([0.4, 0.4, 1, 0.9]); // localized at τ = 0.5, 0.7
  const options = { iouThresholds: [0.9], camThresholds: [0.1, 0.3, 0.5, 0.7] };
  const aToC = maxBoxAccV2HeldOut([a], [c], options);
  assert.deepEqual([aToC.perIou['0.9']!.threshold, aToC.score], [0.1, 0], 'chosen on A (0.1), C is not localized there');
  const cToA = maxBoxAccV2HeldOut([c], [a], options);
  assert.deepEqual([cToA.perIou['0.9']!.threshold, cToA.score], [0.5, 1], 'chosen on C (0.5), A is localized there');
});

test("eval and dataset add read a name's patient with one default pattern: every NIH slide name, and the synthetic S<n>", async () => {
  const { DEFAULT_GROUP_PATTERN: evalPattern } = await import('../../packages/cli/src/eval-command.ts');
  const { DEFAULT_GROUP_PATTERN: datasetPattern } = await import('../../packages/ingest/src/datasets.ts');
  assert.equal(evalPattern, datasetPattern);
  const pattern = new RegExp(evalPattern);
  // NIH names: C<n> then P<m> (slide), ThinF, BP<m>, AP<m>, …; the last three shapes escaped eval's earlier pattern.
  const names: [string, string][] = [
    ['Parasitized/C100P61ThinF_IMG_20150918_144104_cell_162.png', 'C100'],
    ['Uninfected/C209ThinF_IMG_20151106_103507_cell_99.png', 'C209'],
    ['Parasitized/C37BP2_thinF_IMG_20150620_133111a_cell_87.png', 'C37'],
    ['Uninfected/C51AP12thinF_IMG_20150724_155547_cell_173.png', 'C51'],
    ['Parasitized/S0_cell_000000.png', 'S0'],
  ];
  for (const [name, patient] of names) assert.equal(groupOf(name, pattern), patient, name);
});
