// `camflow dev` as a user runs it: its data survives a restart, and SIGTERM stops its redis-server and s3rver.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ObjectStore } from '@camflow/common';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Start `camflow dev`, wait for its banner, and return the environment it printed. */
async function startDev(dataDir: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'packages/cli/src/main.ts'), 'dev', '--data-dir', dataDir], {
    cwd: root,
    env: { ...process.env, API_PORT: '0', LOG_LEVEL: 'warn', TF_BACKEND: 'wasm' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`camflow dev did not come up in 120 s: ${err.slice(-500)}`)), 120_000);
    child.stdout!.on('data', (d) => {
      out += d;
      if (/export API_PORT=\d+/.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', () => reject(new Error(`camflow dev exited: ${err.slice(-500)}`)));
  });
  const env = Object.fromEntries([...out.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
  return { child, env, out, exited };
}

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

test('camflow dev keeps its data in --data-dir across restarts, and SIGTERM stops its redis-server and s3rver', { timeout: 300_000 }, async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'camflow-dev-'));
  const first = await startDev(dataDir);
  assert.match(first.out, new RegExp(`data in ${dataDir}`));
  const store = (env: Record<string, string>) => new ObjectStore({ bucket: env.S3_BUCKET!, endpoint: env.S3_ENDPOINT!, credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! } });
  await store(first.env).putJson('datasets/kept/latest.json', { kept: true });
  const ports = [Number(new URL(first.env.REDIS_URL!).port), Number(new URL(first.env.S3_ENDPOINT!).port)];
  assert.deepEqual(await Promise.all(ports.map(listening)), [true, true]);
  first.child.kill('SIGTERM');
  assert.equal(await first.exited, 0);
  assert.deepEqual(await Promise.all(ports.map(listening)), [false, false], 'redis-server and s3rver stopped with it');

  const second = await startDev(dataDir);
  try {
    assert.deepEqual(await store(second.env).getJsonIfExists('datasets/kept/latest.json'), { kept: true }, 'the data of the first run is still there');
    // A second `camflow dev` on the same folder would run a second redis-server on the same AOF: refused at once.
    const third = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'packages/cli/src/main.ts'), 'dev', '--data-dir', dataDir], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    assert.equal(third.status, 2, third.stderr);
    assert.match(third.stderr, new RegExp(`in use by pid ${second.child.pid}`));
  } finally {
    second.child.kill('SIGTERM');
    await second.exited;
  }
});
