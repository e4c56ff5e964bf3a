import { CamflowError } from '@camflow/common/core';
import { runEval, type EvalOptions } from '../eval-command.js';
import { progressBar, shellWord, withContext } from '../cli-io.js';
import { interruptibleWait } from '../wait.js';
import type { CommandInput } from '../cli-io.js';

/** The same evaluation, every flag given kept, scoring `batchId` instead of submitting the images again. */
function resumeCommand(source: string, v: CommandInput['v'], batchId: string): string {
  const flags = (['model', 'group-pattern', 'boxes', 'truth', 'subset', 'out'] as const).flatMap((k) => (v[k] !== undefined ? [`--${k}`, v[k]!] : []));
  return ['camflow', 'eval', source, ...flags, '--batch', batchId].map(shellWord).join(' ');
}

/** `camflow eval`: see `camflow eval --help` (the command table in `commands.ts`). */
export async function run({ v, rest }: CommandInput): Promise<void> {
  if (!rest[0]) throw new CamflowError('USAGE', 'usage: camflow eval <labelled folder | dataset[@version]> [--model V] [--group-pattern RE] [--boxes boxes.json] [--truth auto|boxes|stain|none] [--subset auto|validation|all] [--out DIR] [--batch BATCH_ID]');
  await withContext(async (ctx) => {
    const bar = v.json ? undefined : progressBar('evaluate');
    const { line } = await runEval(ctx, {
      source: rest[0]!,
      out: v.out ?? 'camflow-eval',
      ...(v.model ? { model: v.model } : {}),
      ...(v['group-pattern'] ? { groupPattern: v['group-pattern'] } : {}),
      ...(v.boxes ? { boxes: v.boxes } : {}),
      ...(v.truth ? { truth: v.truth as EvalOptions['truth'] } : {}),
      ...(v.subset ? { subset: v.subset as EvalOptions['subset'] } : {}),
      ...(v.batch ? { batch: v.batch } : {}),
      ...(bar ? { onProgress: bar } : {}),
      // Ctrl-C ends the wait, not the batch: `--batch` scores it later without submitting the images again.
      onBatch: (batchId) => interruptibleWait({ what: `this evaluation's batch ${batchId}`, where: 'the cam-workers', follow: resumeCommand(rest[0]!, v, batchId), stop: `camflow batches cancel ${batchId}` }),
    });
    process.stdout.write(`${JSON.stringify(line)}\n`);
  });
}
