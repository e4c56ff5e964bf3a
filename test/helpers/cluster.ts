import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, copyFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  buildModel,
  keys,
  presets,
  promote,
  startRedis,
  startS3,
  tempDirRemovedAtExit,
  writeSyntheticDataset,
  type LocalRedis,
  type LocalS3,
  type ModelManifest,
  type ObjectStore,
  type PresetName,
  type tf,
} from '@camflow/common';
import { publishModel } from '@camflow/trainer';
import { createContext, type Context } from '../../packages/cli/src/context.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(root, 'packages/cli/src/main.ts');

export interface Cluster {
  redis: LocalRedis;
  s3: LocalS3;
  env: Record<string, string>;
  ctx: Context;
  dir: string;
  /** Start `camflow worker <role>` as its own process. */
  spawnWorker(role: 'cam' | 'chunks' | 'finalizer' | 'ingest' | 'trainer' | 'all', extraEnv?: Record<string, string>): WorkerProcess;
  close(): Promise<void>;
}

export interface WorkerProcess {
  child: ChildProcess;
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Real servers for fault tests: redis-server (AOF on) and s3rver as processes, short job locks so a killed
 * worker's job is recovered within seconds, and worker processes started through the real CLI.
 */
export async function startCluster(envOverrides: Record<string, string> = {}): Promise<Cluster> {
  const redis = await startRedis({ appendonly: true });
  const s3 = await startS3();
  const dir = tempDirRemovedAtExit('camflow-faults-');
  const env: Record<string, string> = {
    REDIS_URL: redis.url,
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: s3.bucket,
    AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
    LOG_LEVEL: 'info',
    TF_BACKEND: 'wasm',
    JOB_LOCK_MS: '4000',
    STALLED_INTERVAL_MS: '1000',
    CAM_ATTEMPTS: '8',
    CAM_BACKOFF_MS: '500',
    SHUTDOWN_GRACE_MS: '20000',
    ...envOverrides,
  };
  const ctx = await createContext({ ...env, LOG_LEVEL: 'warn' }, 'test');
  await ctx.store.ensureBucket();
  const workers: WorkerProcess[] = [];
  let n = 0;
  return {
    redis,
    s3,
    env,
    ctx,
    dir,
    spawnWorker(role, extraEnv = {}) {
      const log = createWriteStream(join(dir, `worker-${role}-${n++}.log`));
      const child = spawn(process.execPath, ['--import', 'tsx', cli, 'worker', role], {
        env: { ...process.env, ...env, ...extraEnv },
        stdio: ['ignore', 'pipe', 'pipe'],
        cwd: root,
      });
      child.stdout!.pipe(log);
      child.stderr!.pipe(log);
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
      const w = { child, pid: child.pid!, exited, kill: (signal: NodeJS.Signals = 'SIGKILL') => void child.kill(signal) };
      workers.push(w);
      return w;
    },
    async close() {
      for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
      await Promise.all(workers.map((w) => w.exited));
      await ctx.close();
      await s3.stop();
      await redis.stop();
    },
  };
}

/** Publish a model as it is (no training) under `version`: real weights, real files, instantly. */
export async function publishAsIs(
  store: ObjectStore,
  model: tf.LayersModel,
  preset: PresetName,
  version: string,
  dataset: ModelManifest['dataset'] = { name: 'none', version: 'none', trainItems: 0, validationItems: 0, splitBy: 'item' },
  o: { valAccuracy?: number; classNames?: string[]; screening?: ModelManifest['screening'] } = {},
): Promise<ModelManifest> {
  return publishModel(store, model, {
    version,
    preset,
    inputSize: presets[preset].inputSize,
    classNames: o.classNames ?? ['Parasitized', 'Uninfected'],
    dataset,
    metrics: { valAccuracy: o.valAccuracy ?? 0.5, valLoss: 0.69, epochs: 0, attempts: 1, history: [] },
    backend: 'none',
    createdAt: new Date().toISOString(),
    ...(o.screening ? { screening: o.screening } : {}),
  });
}

/** Publish an untrained `fast` model and make it production (with a screening operating point when given). */
export async function publishUntrained(ctx: Context, version = 'm-untrained', seed = 1, screening?: ModelManifest['screening']): Promise<ModelManifest> {
  const model = buildModel('fast', 2, seed);
  const manifest = await publishAsIs(ctx.store, model, 'fast', version, undefined, { screening });
  model.dispose();
  await promote(ctx.store, manifest);
  return manifest;
}

/** A flat folder of `count` synthetic cell PNGs. */
export async function syntheticFolder(dir: string, count: number, seed: number): Promise<string[]> {
  const src = join(dir, `src-${seed}`);
  const out = join(dir, `batch-${seed}`);
  await writeSyntheticDataset(src, { count, seed });
  await mkdir(out, { recursive: true });
  const names: string[] = [];
  for (const cls of ['Parasitized', 'Uninfected']) {
    for (const f of await readdir(join(src, cls))) {
      await copyFile(join(src, cls, f), join(out, f));
      names.push(f);
    }
  }
  return names.sort();
}

/**
 * Run the real CLI against a cluster; resolves with its exit code and output. `interrupt`: send this signal once
 * stderr matches `when` (a user's Ctrl-C at that moment).
 */
export function runCli(c: Pick<Cluster, 'env'>, args: string[], env: Record<string, string> = {}, interrupt?: { when: RegExp; signal: NodeJS.Signals }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { env: { ...process.env, ...c.env, ...env }, cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => {
      stderr += d;
      if (interrupt && !sent && interrupt.when.test(stderr)) {
        sent = true;
        child.kill(interrupt.signal);
      }
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll until `check` returns a value (not undefined), or fail after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export { keys };
