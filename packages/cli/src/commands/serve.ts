import { connectProducer } from '@camflow/common/core';
import { buildApi } from '@camflow/ingest';
import { createContext, ensureStore, whereTo } from '../context.js';
import { closeOnSignals } from '../signals.js';
import type { CommandInput } from '../cli-io.js';

/** `camflow serve`: see `camflow serve --help` (the command table in `commands.ts`). */
export async function run(_input: CommandInput): Promise<void> {
  const ctx = await createContext(process.env, 'api');
  await ensureStore(ctx.store, ctx.config);
  const redis = await connectProducer(ctx.config.REDIS_URL); // outages are reported by /readyz and as 503s
  const app = await buildApi({ config: ctx.config, store: ctx.store, flow: ctx.flow, queues: ctx.queues, redis, log: ctx.log });
  // Fastify says where it listens (one line per address); camflow adds what this API serves from.
  await app.listen({ port: ctx.config.API_PORT, host: ctx.config.API_HOST });
  ctx.log.info(whereTo(ctx.config), 'camflow API started');
  closeOnSignals(async () => {
    await app.close();
    await redis.quit();
    await ctx.close();
  }, ctx.log, ctx.config.SHUTDOWN_GRACE_MS, 'finishing the requests in flight');
}
