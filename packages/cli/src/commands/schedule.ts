import { getDatasetManifest, CamflowError, InvalidParameterError, retrainingScheduleSchema } from '@camflow/common/core';
import { getRetrainingSchedule, removeRetrainingSchedule, scheduleRetraining } from '@camflow/common/core';
import { print, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';
import { trainJobFromFlags } from '../train-input.js';

/**
 * Pure: a run's time in the schedule's own zone, and in UTC: "2026-11-30 02:00 Europe/Paris (2026-11-30T01:00:00.000Z)".
 * @example nextRunText(Date.parse('2026-11-30T01:00:00Z'), 'Europe/Paris')
 */
export function nextRunText(next: number | undefined, tz: string): string {
  if (!next) return 'unknown';
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' }).formatToParts(new Date(next)).map((p) => [p.type, p.value]));
  const local = `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
  const utc = new Date(next).toISOString();
  return tz === 'UTC' || tz === 'Etc/UTC' ? utc : `${local} ${tz} (${utc})`;
}

/** Pure: what each scheduled run trains, in words (the options a user gave show among the defaults they filled). */
export function scheduledTrainingText(data: Record<string, unknown> | undefined): string {
  const d = data ?? {};
  const parts = [`dataset ${String(d.dataset ?? '?')} (its latest version)`];
  if (d.preset !== undefined) parts.push(`preset ${String(d.preset)}`);
  if (d.epochs !== undefined) parts.push(`up to ${String(d.epochs)} epochs`);
  if (d.learningRate !== undefined) parts.push(`lr ${String(d.learningRate)}`);
  if (d.promote === false) parts.push('models published, not promoted');
  return parts.join(', ');
}

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
      print(v.json, { schedule: s ?? null }, s ? `retraining: ${s.pattern} (${s.tz ?? 'UTC'}), ${scheduledTrainingText(s.data as Record<string, unknown> | undefined)}; next run ${nextRunText(s.next, s.tz ?? 'UTC')}` : 'no retraining schedule (camflow schedule --dataset NAME --cron "0 2 * * *")');
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
    print(v.json, s, `retraining scheduled (${v.cron}, ${v.tz ?? 'UTC'}; one schedule: this replaces any earlier one); next run ${nextRunText(s.next, v.tz ?? 'UTC')}${input.promote === false ? '; its models are published, not promoted' : ''}`);
  });
}
