// Streaming reads and writes of large objects against a real S3-compatible server (s3rver): the finalizer writes
// results.jsonl this way, so its memory does not grow with the batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ObjectStore, StorageError, startS3 } from '@camflow/common';

test('an object written as a stream of 200,000 lines (multipart, ~22 MB) reads back line by line, in order', async () => {
  const s3 = await startS3({ bucket: 'stream-test' });
  try {
    const store = new ObjectStore({ bucket: 'stream-test', endpoint: s3.endpoint, credentials: s3.credentials });
    await store.ensureBucket();
    const n = 200_000;
    async function* lines() {
      for (let i = 0; i < n; i++) yield `${JSON.stringify({ i, pad: 'x'.repeat(100) })}\n`;
    }
    await store.putStream('big.jsonl', lines(), 'application/x-ndjson');
    assert.ok(((await store.head('big.jsonl'))?.size ?? 0) > 20 * 1024 * 1024);
    let count = 0;
    let last = -1;
    for await (const line of store.lines('big.jsonl')) {
      const { i } = JSON.parse(line) as { i: number };
      assert.equal(i, last + 1);
      last = i;
      count++;
    }
    assert.equal(count, n);
    // A producer's own error comes through as itself, and nothing is written.
    async function* broken() {
      yield 'a\n';
      throw new Error('manifest.jsonl, line 2: not JSON');
    }
    await assert.rejects(store.putStream('broken.jsonl', broken()), /manifest\.jsonl, line 2: not JSON/);
    assert.equal(await store.exists('broken.jsonl'), false);
  } finally {
    await s3.stop();
  }
});

test('the local servers a process starts without a folder keep their data in a temp folder that goes when the process exits', () => {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const script = "import { startS3, startRedis } from '@camflow/common'; const s3 = await startS3(); const redis = await startRedis(); console.log(JSON.stringify([s3.dir, redis.dir])); await s3.stop(); await redis.stop();";
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const dirs = JSON.parse(out.trim().split('\n').pop()!) as string[];
  assert.equal(dirs.length, 2);
  for (const d of dirs) assert.equal(existsSync(d), false, `${d} left behind`);
});

test('services started together may all create the bucket: each finds it theirs; an invalid name is a storage error naming the status', async () => {
  const s3 = await startS3({ bucket: 'existing' });
  try {
    const fresh = () => new ObjectStore({ bucket: 'made-together', endpoint: s3.endpoint, credentials: s3.credentials });
    await Promise.all(Array.from({ length: 6 }, () => fresh().ensureBucket(true)));
    await fresh().put('a.txt', 'x');
    assert.equal(await fresh().exists('a.txt'), true);
    const invalid = new ObjectStore({ bucket: 'Not_A_Valid_Bucket', endpoint: s3.endpoint, credentials: s3.credentials });
    await assert.rejects(invalid.ensureBucket(true), (e: unknown) => e instanceof StorageError && /^S3 CreateBucket Not_A_Valid_Bucket failed: .* \(HTTP 400\)$/.test((e as Error).message));
  } finally {
    await s3.stop();
  }
});
