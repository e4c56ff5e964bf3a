import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chunkImageCount, imageProgress } from '../../packages/ingest/src/status.ts';

test('a chunk holds chunkSize accepted images, the last one the rest', () => {
  assert.deepEqual([0, 1, 2, 3].map((n) => chunkImageCount(n, 256, 600)), [256, 256, 88, 0]);
});

test('progress counts the images of finished chunks, with the rate since submission and the time left', () => {
  const info = { accepted: 600, chunkSize: 256, createdAt: '2026-11-27T10:00:00.000Z' };
  const t = Date.parse(info.createdAt);
  // Chunk 1 (256 images) and chunk 2 (88) still pending after 64 s: 256 done, 4/s, 86 s left.
  assert.deepEqual(imageProgress(info, [1, 2], t + 64_000), { total: 600, done: 256, perSecond: 4, etaSeconds: 86 });
  assert.deepEqual(imageProgress(info, [0, 1, 2], t + 64_000), { total: 600, done: 0 }, 'no rate before the first chunk');
  assert.deepEqual(imageProgress(info, [], t + 100_000).done, 600);
});

test('the CLI progress bar (not a terminal) writes a finished bar once, however often it is polled finished', async () => {
  const { progressBar } = await import('../../packages/cli/src/cli-io.ts');
  const written: string[] = [];
  const write = process.stderr.write;
  const tty = process.stderr.isTTY;
  Object.defineProperty(process.stderr, 'isTTY', { value: false, configurable: true });
  process.stderr.write = ((chunk: string) => {
    written.push(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    const bar = progressBar('evaluate');
    for (const done of [1, 4, 8, 8, 8, 8, 8]) bar(done, 8);
  } finally {
    process.stderr.write = write;
    Object.defineProperty(process.stderr, 'isTTY', { value: tty, configurable: true });
  }
  assert.deepEqual(written, [`evaluate [${'#'.repeat(30)}] 8/8\n`]);
});

test("a progress line says a field's cell groups while a whole-slide scan is the one image under way, and the time left", async () => {
  const { progressLine } = await import('../../packages/cli/src/cli-io.ts');
  assert.equal(progressLine('localize', 0, 1, 190, 'field cells in groups 12/40'), `localize [${'.'.repeat(30)}] 0/1, field cells in groups 12/40, about 3 min 10 s left`);
  assert.equal(progressLine('localize', 1, 1, 0, 'field cells in groups 40/40'), `localize [${'#'.repeat(30)}] 1/1`, 'a finished bar says no more');
});

test('on a terminal the bar is rewritten in place and clears what a longer line before it left', async () => {
  const { progressBar } = await import('../../packages/cli/src/cli-io.ts');
  const written: string[] = [];
  const write = process.stderr.write;
  const tty = process.stderr.isTTY;
  Object.defineProperty(process.stderr, 'isTTY', { value: true, configurable: true });
  process.stderr.write = ((chunk: string) => {
    written.push(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    const bar = progressBar('localize');
    bar(0, 1, undefined, 'field cells in groups 1/40');
    bar(1, 1);
  } finally {
    process.stderr.write = write;
    Object.defineProperty(process.stderr, 'isTTY', { value: tty, configurable: true });
  }
  assert.deepEqual(written, [`\rlocalize [${'.'.repeat(30)}] 0/1, field cells in groups 1/40\x1b[K`, `\rlocalize [${'#'.repeat(30)}] 1/1\x1b[K\n`]);
});
