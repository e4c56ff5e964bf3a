import { getDatasetManifest, CamflowError, InvalidParameterError, retrainingScheduleSchema } from '@camflow/common/core';
import { getRetrainingSchedule, removeRetrainingSchedule, scheduleRetraining } from '@camflow/common/core';
import { print, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';
import { trainJobFromFlags } from '../train-input.js';

/** `camflow schedule`: see `camflow schedule --help` (the command table in `commands.ts`). */
export async function run({ v, rest, num }: CommandInput): Promise<void> {
  // `schedule show` / `schedule remove`: the one retraining schedule, seen or taken away.
  if (rest[0] === 'show' || rest[0] === 'remove') {
    await withContext(async (ctx) => {
      if (rest[0] === 'remove') {
        const removed = await removeRetrainingSchedule(ctx.queues.train);
        print(v.json, { removed }, removed ? 'retraining schedule removed' : 'no retraining schedule to remove');
        return;
      }
      const s = await getRetrainingSchedule(ctx.queues.train);
      print(v.json, { schedule: s ?? null }, s ? `retraining: ${s.pattern} (${s.tz ?? 'UTC'}), dataset ${(s.data as { dataset?: string } | undefined)?.dataset ?? '?'}; next run ${s.next ? new Date(s.next).toISOString() : 'unknown'}` : 'no retraining schedule (camflow schedule --dataset NAME --cron "0 2 * * *")');
    });
    return;
  }
  if (rest[0] !== undefined) throw new CamflowError('USAGE', `unknown schedule subcommand "${rest[0]}": camflow schedule --dataset NAME --cron PATTERN | schedule show | schedule remove`);
  if (!v.dataset || !v.cron) throw new CamflowError('USAGE', 'usage: camflow schedule --dataset NAME --cron "0 2 * * *" [--tz ZONE] | camflow schedule show | camflow schedule remove');
  // The pattern and zone are checked before anything is contacted, naming the option that is wrong.
  const when = retrainingScheduleSchema.safeParse({ cron: v.cron, tz: v.tz ?? 'UTC' });
  if (!when.success) {
    const issue = when.error.issues[0]!;
    const flag = issue.path[0] === 'tz' ? '--tz' : '--cron';
    throw new InvalidParameterError(flag, issue.message, flag === '--tz' ? (v.tz ?? 'UTC') : v.cron);
  }
  // The same training options as `camflow train`, checked the same way; each run trains the dataset's latest version.
  const input = trainJobFromFlags({ v, num });
  await withContext(async (ctx) => {
    await getDatasetManifest(ctx.store, v.dataset!);
    const s = await scheduleRetraining(ctx.queues.train, v.cron!, v.tz ?? 'UTC', input).catch((error: Error) => {
      // BullMQ's cron parser says "Invalid characters, got value: a": name the option and the expectation.
      if (/invalid|cron|timezone|constraint|range/i.test(error.message) && !/redis|connect/i.test(error.message)) {
        throw new InvalidParameterError('--cron/--tz', `a cron pattern such as "0 2 * * *" and an IANA time zone (${error.message})`, `${v.cron} ${v.tz ?? 'UTC'}`);
      }
      throw error;
    });
    print(v.json, s, `retraining scheduled (${v.cron}, ${v.tz ?? 'UTC'}; one schedule: this replaces any earlier one); next run ${s.next ? new Date(s.next).toISOString() : 'unknown'}${input.promote === false ? '; its models are published, not promoted' : ''}`);
  });
}
