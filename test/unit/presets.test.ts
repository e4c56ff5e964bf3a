import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildModel } from '@camflow/common';

test("the seed preset starts from the seed's own (PyTorch default) initialisation: conv weights and biases within ±1/√fan-in", () => {
  const model = buildModel('seed', 2, 3);
  const convs = model.layers.filter((l) => l.getClassName() === 'Conv2D');
  assert.equal(convs.length, 6);
  for (const layer of convs) {
    const [kernel, bias] = layer.getWeights();
    const [kh, kw, cin] = kernel!.shape as number[];
    const limit = 1 / Math.sqrt(kh! * kw! * cin!);
    const w = Array.from(kernel!.dataSync());
    const b = Array.from(bias!.dataSync());
    const maxW = w.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(maxW <= limit + 1e-7 && maxW > 0.9 * limit, `${layer.name}: |w| max ${maxW}, limit ${limit}`);
    assert.ok(b.every((v) => Math.abs(v) <= limit + 1e-7) && b.some((v) => v !== 0), `${layer.name}: biases uniform in ±${limit}`);
  }
  // The fast preset keeps He-normal weights and zero biases.
  const fast = buildModel('fast', 2, 3).layers.filter((l) => l.getClassName() === 'Conv2D');
  assert.ok(fast.every((l) => Array.from(l.getWeights()[1]!.dataSync()).every((v) => v === 0)));
});

test('an initialisation whose ReLU head is shut on the training images is drawn again before training starts', async () => {
  const { deadFeatureShare, fitWithRestarts } = await import('@camflow/trainer');
  const { createLogger, initBackend } = await import('@camflow/common');
  await initBackend('wasm'); // the CPU trainer's backend (the cpu backend takes minutes for the seed net at 128²)
  const { Writable } = await import('node:stream');
  const s = 128;
  const n = 4;
  const images = Uint8Array.from({ length: n * s * s * 3 }, (_, i) => Math.round(((Math.sin(i * 0.37) + 1) / 2) * 255));
  const data = { images, labels: Int32Array.from([0, 1, 0, 1]), size: s };
  // With this model seed the seed net's 2-channel head is shut on these images (found by trying seeds 1-8: half are).
  const shut = buildModel('seed', 2, 1);
  assert.ok((await deadFeatureShare(shut, data)) > 0.25);
  shut.dispose();
  const lines: { msg: string }[] = [];
  const log = createLogger({ level: 'info', destination: new Writable({ write: (chunk, _e, cb) => (lines.push(JSON.parse(String(chunk))), cb()) }) });
  const result = await fitWithRestarts({ preset: 'seed', numClasses: 2, epochs: 1, batchSize: 4, learningRate: 0.0005, seed: 1, maxRestarts: 0, augment: false }, data, data, { log });
  assert.ok(lines.some((l) => /drawing it again/.test(l.msg)), 'the shut initialisation was drawn again');
  assert.ok(result.history[0]!.featureMean > 0, 'the run trained with a live head');
  result.model.dispose();
});

test('a model that learnt nothing is told from a good one on unbalanced cells and from a class-weighted screen', async () => {
  const { notLearntReason, belowMajorityWarning } = await import('@camflow/trainer');
  const classes = ['Parasitized', 'Uninfected'];
  const repeat = (v: number, n: number) => new Array<number>(n).fill(v);
  // Always the majority class: not learnt, whatever the balance.
  const labels = [...repeat(0, 35), ...repeat(1, 65)];
  assert.match(notLearntReason(labels, repeat(1, 100), classes, 40) ?? '', /^validation accuracy 0\.6500 is no better than always answering Uninfected \(0\.6500 of the 100 validation images\), balanced accuracy 0\.5000 \(chance 0\.50\)/);
  // A perfect model where 99 % of the cells are one class: learnt (accuracy cannot beat the share by 0.01).
  const rare = [0, ...repeat(1, 99)];
  assert.equal(notLearntReason(rare, rare, classes, 40), undefined);
  // A class-weighted screen: accuracy below the majority share, every parasitized cell found — learnt.
  const screen = [...repeat(0, 35), ...repeat(0, 40), ...repeat(1, 25)];
  assert.equal(notLearntReason(labels, screen, classes, 40), undefined, 'accuracy 0.60 < 0.65, balanced accuracy 0.69');
  // …but it is published with the baseline it misses said (as a newcomer's 0.57 model on 69 %-parasitized validation cells was).
  assert.match(belowMajorityWarning(labels, screen, classes) ?? '', /^validation accuracy 0\.6000 is below always answering Uninfected \(0\.6500 of the 100 validation images\); balanced accuracy 0\.6923 \(chance 0\.50\): it tells the classes apart only partly/);
  assert.equal(belowMajorityWarning(labels, labels, classes), undefined, 'a perfect model: no warning');
  assert.equal(belowMajorityWarning(labels, repeat(1, 100), classes), undefined, 'not learnt is said by notLearntReason, not twice');
  // Barely off chance both ways: not learnt.
  const coin = labels.map((l, i) => (i % 2 === 0 ? l : 1 - l));
  assert.ok(notLearntReason(labels, coin, classes, 40));
});
