import { getDatasetManifest, CamflowError, InvalidParameterError } from '@camflow/common/core';
import { scheduleRetraining } from '@camflow/trainer';
import { print, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';

/** `camflow schedule`: see `camflow schedule --help` (the command table in `commands.ts`). */
export async function run({ v, num }: CommandInput): Promise<void> {
  if (!v.dataset || !v.cron) throw new CamflowError('USAGE', 'usage: camflow schedule --dataset NAME --cron "0 2 * * *" [--tz ZONE]');
  await withContext(async (ctx) => {
    await getDatasetManifest(ctx.store, v.dataset!);
    const s = await scheduleRetraining(ctx.queues.train, v.cron!, v.tz ?? 'UTC', {
      dataset: v.dataset!,
      ...(v.preset ? { preset: v.preset as 'fast' | 'seed' } : {}),
      ...(v.epochs ? { epochs: num('epochs') } : {}),
    }).catch((error: Error) => {
      // BullMQ's cron parser says "Invalid characters, got value: a": name the option and the expectation.
      if (/invalid|cron|timezone|constraint|range/i.test(error.message) && !/redis|connect/i.test(error.message)) {
        throw new InvalidParameterError('--cron/--tz', `a cron pattern such as "0 2 * * *" and an IANA time zone (${error.message})`, `${v.cron} ${v.tz ?? 'UTC'}`);
      }
      throw error;
    });
    print(v.json, s, `nightly retraining scheduled (${v.cron}, ${v.tz ?? 'UTC'}); next run ${s.next ? new Date(s.next).toISOString() : 'unknown'}`);
  });
}
