import { CamflowError, NotFoundError } from '@camflow/common/core';
import { batchProgress, downloadBatchFiles, stateText, parseDownloadKinds, type DownloadReport } from '@camflow/ingest';
import { shellWord, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const line = (r: DownloadReport) => `${r.files} files (${mb(r.bytes)})${r.kept ? `, ${r.kept} already there` : ''}${r.skipped ? `, ${r.skipped} skipped` : ''}`;

/** `camflow download`: see `camflow download --help` (the command table in `commands.ts`). */
export async function run({ v, rest }: CommandInput): Promise<void> {
  const batchId = rest[0];
  if (!batchId) throw new CamflowError('USAGE', 'usage: camflow download BATCH_ID [--out DIR] [--only results,json,heatmap,overlay,fields,tiles]');
  const only = v.only === undefined ? undefined : parseDownloadKinds(v.only, '--only');
  const out = v.out ?? batchId;
  await withContext(async (ctx) => {
    // A long copy says how far it is, every 5 s, on stderr (stdout keeps the one result line).
    let said = Date.now();
    const onProgress = v.json ? undefined : (r: DownloadReport) => {
      if (Date.now() - said < 5000) return;
      said = Date.now();
      process.stderr.write(`downloading ${batchId}: ${line(r)} so far\n`);
    };
    const onSkip = (key: string, reason: string) => process.stderr.write(`warning: ${key} not downloaded: ${reason}\n`);
    // Ctrl-C: what is copied stays; the same command resumes (a copy cut short is a .part file, removed then).
    const resume = ['camflow', 'download', batchId, '--out', out, ...(v.only ? ['--only', v.only] : [])].map(shellWord).join(' ');
    const stop = () => {
      process.stderr.write(`\nstopped; the files copied so far are in ${out}: \`${resume}\` copies the rest\n`);
      process.exit(130);
    };
    process.once('SIGINT', stop);
    const report = await downloadBatchFiles(ctx.store, batchId, out, { only, onProgress, onSkip }).finally(() => process.off('SIGINT', stop));
    if (!report) {
      const status = await batchProgress(ctx.store, ctx.queues.batch, batchId);
      if (status.state === 'unknown') throw new NotFoundError('batch', batchId);
      throw new CamflowError('NOT_READY', `batch ${batchId} is ${stateText(status)}: nothing to download yet${status.reason && !status.queuedUnder ? `; ${status.reason}` : ''}`);
    }
    if (v.json) process.stdout.write(`${JSON.stringify(report)}\n`);
    else process.stdout.write(`downloaded ${line(report)} to ${report.out}\n`);
  });
}
