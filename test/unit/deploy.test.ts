import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';

test('docker-compose.yml declares redis (AOF, noeviction), minio with bucket init, trainer and GPU-reserving cam-workers', async () => {
  const compose = parse(await readFile(new URL('../../docker-compose.yml', import.meta.url), 'utf8')) as {
    services: Record<string, { command?: string[]; deploy?: { replicas?: number; resources?: { reservations?: { devices?: { driver: string }[] } } }; build?: string }>;
  };
  const s = compose.services;
  assert.ok(s.redis && s.minio && s['minio-init'] && s.trainer && s['cam-worker']);
  assert.ok(s.redis.command!.join(' ').includes('--appendonly yes'));
  assert.ok(s.redis.command!.join(' ').includes('--maxmemory-policy noeviction'));
  assert.deepEqual(s.trainer.command, ['worker', 'trainer']);
  assert.deepEqual(s['cam-worker'].command, ['worker', 'cam']);
  assert.ok((s['cam-worker'].deploy?.replicas ?? 0) >= 2);
  assert.equal(s['cam-worker'].deploy?.resources?.reservations?.devices?.[0]?.driver, 'nvidia');
});
