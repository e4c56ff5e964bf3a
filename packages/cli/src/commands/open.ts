import { spawn } from 'node:child_process';
import { NotFoundError, keys, loadConfig } from '@camflow/common/core';
import { print, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';

/** `camflow open`: see `camflow open --help` (the command table in `commands.ts`). */
export async function run({ v, rest }: CommandInput): Promise<void> {
  // The viewer page of a batch (or the batch list), served by `camflow serve` / `camflow dev`.
  const config = loadConfig(process.env);
  const host = config.API_HOST === '0.0.0.0' || config.API_HOST === '::' ? '127.0.0.1' : config.API_HOST;
  const url = `http://${host}:${config.API_PORT}/viewer${rest[0] ? `/batches/${encodeURIComponent(rest[0])}` : ''}`;
  // A batch that does not exist gets no page: say so instead of opening one.
  if (rest[0]) {
    await withContext(async (ctx) => {
      if (!(await ctx.store.exists(keys.batchInfo(rest[0]!)))) throw new NotFoundError('batch', rest[0]!);
    });
  }
  print(v.json, { url }, url);
  if (!v.json && process.env.DISPLAY) spawn('xdg-open', [url], { stdio: 'ignore', detached: true }).on('error', () => undefined).unref();
}
