import { CamflowError } from '@camflow/common/core';
import { createContext, ensureStore } from '../context.js';
import { closeOnSignals, startWorkers, workerRoles, type WorkerRole } from '../workers.js';
import type { CommandInput } from '../cli-io.js';

/** `camflow worker`: see `camflow worker --help` (the command table in `commands.ts`). */
export async function run({ rest }: CommandInput): Promise<void> {
  // The role is required: a bare `camflow worker` would start every role, the trainer included, on whatever it reaches.
  if (!rest[0]) throw new CamflowError('USAGE', `usage: camflow worker ${workerRoles.join('|')}   (cam = chunks + finalizer + ingest)`);
  const role = rest[0] as WorkerRole;
  if (!workerRoles.includes(role)) throw new CamflowError('USAGE', `worker role must be one of ${workerRoles.join(', ')}, got ${JSON.stringify(role)}`);
  const ctx = await createContext(process.env, `worker-${role}`);
  await ensureStore(ctx.store, ctx.config);
  const workers = await startWorkers(role, ctx.config, ctx.store, ctx.log);
  closeOnSignals(async () => {
    await workers.close();
    await ctx.close();
  }, ctx.log, ctx.config.SHUTDOWN_GRACE_MS);
}
