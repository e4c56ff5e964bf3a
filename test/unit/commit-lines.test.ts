import { test } from 'node:test';
import assert from 'node:assert/strict';
import { firstIssue, imageResultSchema, type BatchItem, type CamJob, type ImageResult } from '@camflow/common';
import { committable } from '@camflow/cam-worker';

const item = { imageId: 'i0000001', name: 'field.jpg', sha256: 'a'.repeat(64), ext: 'jpg', kind: 'field' } as unknown as BatchItem;
const job = { batchId: 'b1', chunk: 0, modelVersion: 'm1', items: [item] } as unknown as CamJob;

test("a chunk commits only lines the finalizer will read: a line its schema refuses becomes that image's failed line, naming the field", () => {
  const good: ImageResult = { batchId: 'b1', imageId: 'i0000001', name: 'field.jpg', status: 'failed', reason: 'greyscale', error: 'no colour', modelVersion: 'm1' };
  assert.equal(committable(good, item, job), good);
  const bad = { ...good, status: 'ok', kind: 'field', field: { fov: { cx: Number.NaN, cy: 1, r: 0 } } } as unknown as ImageResult;
  const fixed = committable(bad, item, job);
  assert.equal(imageResultSchema.safeParse(fixed).success, true);
  assert.equal(fixed.status, 'failed');
  assert.equal(fixed.status === 'failed' && fixed.reason, 'internal-error');
  assert.match(fixed.status === 'failed' ? fixed.error : '', /result line was not valid \(.+\): a defect in camflow/);
  // The union's "Invalid input" is unfolded to the field that broke it.
  assert.match(fixed.status === 'failed' ? fixed.error : '', /\((?!line:)\w+(\.\w+)*: /);
  const missing = committable(undefined, item, job);
  assert.deepEqual([missing.status, missing.status === 'failed' && missing.reason, missing.name], ['failed', 'internal-error', 'field.jpg']);
});

test('a union that matched no branch is named by the branch that got furthest, not by one whose literal differed', async () => {
  const { z } = await import('zod');
  const nested = z.object({ o: z.union([z.object({ mode: z.enum(['a', 'b']) }), z.string()]) });
  assert.deepEqual(firstIssue(nested.safeParse({ o: { mode: 'c' } }).error!.issues).path, ['o', 'mode']);
  const kinds = z.union([z.object({ kind: z.literal('cell'), precision: z.enum(['fp32', 'int8']) }), z.object({ kind: z.literal('field'), precision: z.enum(['fp32', 'int8']) })]);
  const issue = firstIssue(kinds.safeParse({ kind: 'field', precision: 'fp64' }).error!.issues);
  assert.deepEqual([issue.path, issue.code], [['precision'], 'invalid_value']);
});
