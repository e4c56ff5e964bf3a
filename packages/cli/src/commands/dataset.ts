import { CamflowError, InvalidParameterError, listDatasets } from '@camflow/common/core';
import { registerDataset, removeDataset } from '@camflow/ingest';
import { print, progressBar, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';

/** `camflow dataset`: see `camflow dataset --help` (the command table in `commands.ts`). */
export async function run({ v, rest, num }: CommandInput): Promise<void> {
  if (rest[0] === 'list') {
    await withContext(async (ctx) => {
      const datasets = await listDatasets(ctx.store);
      print(v.json, { datasets }, datasets.length ? datasets.map((d) => `${d.name}@${d.latest}  ${d.items} images ${JSON.stringify(d.counts)}  ${d.createdAt}${d.versions.length > 1 ? `  (${d.versions.length} versions)` : ''}`).join('\n') : 'no datasets yet (camflow dataset add NAME FOLDER)');
    });
    return;
  }
  if (rest[0] === 'remove') {
    if (!rest[1] || rest[2]) throw new CamflowError('USAGE', 'usage: camflow dataset remove NAME[@VERSION]');
    const [name, version, extra] = rest[1].split('@');
    if (!name || version === '' || extra !== undefined) throw new InvalidParameterError('NAME[@VERSION]', 'a dataset name, or name@version (`camflow dataset list` lists them)', rest[1]);
    await withContext(async (ctx) => {
      const r = await removeDataset(ctx.store, ctx.queues.train, { redis: ctx.redis, prefix: ctx.config.QUEUE_PREFIX, command: 'camflow dataset remove', log: ctx.log }, name, version);
      const what = version === undefined ? `dataset ${name} (${r.removed.length} version${r.removed.length === 1 ? '' : 's'})` : `${name}@${version}`;
      const latest = version === undefined ? '' : r.latest === null ? `; ${name} has no version left` : `; the latest ${name} is ${name}@${r.latest}`;
      print(v.json, r, `removed ${what}, ${r.objects} objects${latest}; the images' originals are kept (batches may share them)`);
      if (r.models) process.stderr.write(`warning: model${r.models.length === 1 ? '' : 's'} ${r.models.join(', ')} ${r.models.length === 1 ? 'was' : 'were'} trained on it: \`camflow eval\` can no longer tell which images trained ${r.models.length === 1 ? 'it' : 'them'} (it says so), and a retrain's promotion gate cannot leave them out\n`);
    });
    return;
  }
  if (rest[0] !== 'add' || !rest[1] || !rest[2]) throw new CamflowError('USAGE', 'usage: camflow dataset add NAME FOLDER | camflow dataset list | camflow dataset remove NAME[@VERSION]');
  await withContext(async (ctx) => {
    const r = await registerDataset({
      store: ctx.store,
      redis: ctx.redis,
      prefix: ctx.config.QUEUE_PREFIX,
      name: rest[1]!,
      folder: rest[2]!,
      options: { ...(v.size !== undefined ? { size: num('size') } : {}), ...(v.classes ? { classes: v.classes.split(',').map((c) => c.trim()) } : {}), ...(v['group-pattern'] ? { groupPattern: v['group-pattern'] } : {}) },
      names: { size: '--size', classes: '--classes', groupPattern: '--group-pattern' },
      maxPixels: ctx.config.MAX_IMAGE_PIXELS,
      command: 'camflow dataset add',
      // No log: every warning and the outcome are printed below (once, in words).
      ...(v.json ? {} : { onProgress: progressBar('preprocess') }),
    });
    const replacing = r.replaced ? `\nnow the latest ${r.dataset}, in place of ${r.dataset}@${r.replaced.version} (${r.replaced.items} images; still there as ${r.dataset}@${r.replaced.version})` : '';
    print(
      v.json,
      r,
      `dataset ${r.dataset}@${r.version} ${r.created ? 'registered' : 'already registered'}: ${JSON.stringify(r.counts)}, ${r.rejected.length} refused${r.rejected.map((x) => `\n  ${x.name}: ${x.error}`).join('')}${r.warnings.map((w) => `\nwarning: ${w}`).join('')}${replacing}`,
    );
  });
}
