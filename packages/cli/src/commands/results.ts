import { createWriteStream } from 'node:fs';
import { resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CamflowError, InvalidParameterError, NotFoundError, RESULT_FORMATS, type ResultFormat } from '@camflow/common/core';
import { batchProgress, exportBatchResults, stateText } from '@camflow/ingest';
import { withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';

/** `camflow results`: see `camflow results --help` (the command table in `commands.ts`). */
export async function run({ v, rest }: CommandInput): Promise<void> {
  if (!rest[0]) throw new CamflowError('USAGE', 'usage: camflow results BATCH_ID [--format jsonl|csv|geojson] [--out FILE]');
  const format = v.format ?? 'jsonl';
  if (!(RESULT_FORMATS as readonly string[]).includes(format)) throw new InvalidParameterError('--format', RESULT_FORMATS.join(', '), format);
  // --json keeps stdout JSON: CSV goes to a file then, never to stdout.
  if (v.json && format === 'csv' && !v.out) throw new InvalidParameterError('--format', 'jsonl or geojson with --json (stdout holds only JSON), or csv with --out FILE', format);
  await withContext(async (ctx) => {
    const out = await exportBatchResults(ctx.store, rest[0]!, format as ResultFormat);
    if (!out) {
      const status = await batchProgress(ctx.store, ctx.queues.batch, rest[0]!);
      if (status.state === 'unknown') throw new NotFoundError('batch', rest[0]!);
      throw new CamflowError('NOT_READY', `batch ${rest[0]} is ${stateText(status)}: no results yet${status.reason && !status.queuedUnder ? `; ${status.reason}` : ''}`);
    }
    if (v.out) {
      const file = createWriteStream(v.out);
      await pipeline(out.body, file);
      if (v.json) process.stdout.write(`${JSON.stringify({ batchId: rest[0], out: resolve(v.out), format, bytes: file.bytesWritten })}\n`);
      else process.stderr.write(`wrote ${v.out} (${format})\n`);
    } else await pipeline(out.body, process.stdout, { end: false });
  });
}
