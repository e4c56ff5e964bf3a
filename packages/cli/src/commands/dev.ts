import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { connectProducer, startRedis, startS3 } from '@camflow/common/core';
import { buildApi } from '@camflow/ingest';
import { createContext, ensureStore } from '../context.js';
import { closeOnSignals, startWorkers } from '../workers.js';
import { claimDataDir } from '../dev-lock.js';
import type { CommandInput } from '../cli-io.js';

/** `camflow dev`: see `camflow dev --help` (the command table in `commands.ts`). */
export async function run({ v }: CommandInput): Promise<void> {
  // Data kept across restarts in --data-dir (default ~/.local/share/camflow/dev): Redis with AOF, s3rver's files.
  const dataDir = resolve(v['data-dir'] ?? join(process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'camflow', 'dev'));
  await mkdir(join(dataDir, 'redis'), { recursive: true });
  await mkdir(join(dataDir, 's3'), { recursive: true });
  claimDataDir(dataDir);
  const redis = await startRedis({ appendonly: true, dir: join(dataDir, 'redis') });
  // Whatever ends this process (signal, crash, the grace period running out mid-training), its servers stop.
  process.on('exit', () => redis.signalStop());
  const s3 = await startS3({ dir: join(dataDir, 's3') });
  process.on('exit', () => s3.signalStop());
  const env = { REDIS_URL: redis.url, S3_ENDPOINT: s3.endpoint, S3_BUCKET: s3.bucket, AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey };
  const ctx = await createContext({ ...process.env, ...env }, 'dev');
  await ensureStore(ctx.store, ctx.config);
  const workers = await startWorkers('all', ctx.config, ctx.store, ctx.log);
  // The API and the viewer too, on loopback, behind a token (given, or made for this run).
  const token = ctx.config.API_TOKEN ?? randomBytes(16).toString('hex');
  const apiRedis = await connectProducer(env.REDIS_URL);
  const app = await buildApi({ config: { ...ctx.config, API_TOKEN: token }, store: ctx.store, flow: ctx.flow, queues: ctx.queues, redis: apiRedis, log: ctx.log });
  const host = process.env.API_HOST ?? '127.0.0.1';
  const address = await app.listen({ port: ctx.config.API_PORT, host }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EADDRINUSE') throw error;
    process.stderr.write(`API_PORT ${ctx.config.API_PORT} is in use on ${host}: the API and viewer take a free port instead (below)\n`);
    return app.listen({ port: 0, host });
  });
  process.stdout.write(
    `camflow dev is up (data in ${dataDir}).\nviewer and API: ${address}/viewer  (token: ${ctx.config.API_TOKEN ? 'your API_TOKEN' : token})\nIn another shell:\n${Object.entries(env)
      .map(([k, val]) => `export ${k}=${val}`)
      .join('\n')}\nexport API_PORT=${new URL(address).port}${ctx.config.API_TOKEN ? '' : `\nexport API_TOKEN=${token}`}\n`,
  );
  closeOnSignals(async () => {
    await app.close();
    await apiRedis.quit().catch(() => undefined);
    await workers.close();
    await ctx.close();
    await s3.stop();
    await redis.stop();
  }, ctx.log, ctx.config.SHUTDOWN_GRACE_MS);
}
