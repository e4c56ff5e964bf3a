import { CamflowError, InvalidParameterError, listDatasets } from '@camflow/common/core';
import { addDataset, removeDataset, withDatasetLock } from '@camflow/ingest';
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
    const lease = { redis: ctx.redis, prefix: ctx.config.QUEUE_PREFIX, name: rest[1]!, command: 'camflow dataset add', log: ctx.log };
    const { manifest, created, warnings, replaced } = await withDatasetLock(lease, (held) => addDataset({
      beforeCommit: held,
      store: ctx.store,
      name: rest[1]!,
      folder: rest[2]!,
      size: num('size', 128)!,
      ...(v.classes ? { classes: v.classes.split(',') } : {}),
      ...(v['group-pattern'] ? { groupPattern: v['group-pattern'] } : {}),
      maxPixels: ctx.config.MAX_IMAGE_PIXELS,
      // No log: every warning and the outcome are printed below (once, in words).
      onProgress: v.json ? undefined : progressBar('preprocess'),
    }));
    const counts = Object.fromEntries(manifest.classNames.map((c, i) => [c, manifest.items.filter((it) => it.label === i).length]));
    const replacing = replaced ? `\nnow the latest ${manifest.name}, in place of ${manifest.name}@${replaced.version} (${replaced.items} images; still there as ${manifest.name}@${replaced.version})` : '';
    print(
      v.json,
      { dataset: manifest.name, version: manifest.version, created, items: manifest.items.length, counts, rejected: manifest.rejected, warnings, ...(replaced ? { replaced } : {}) },
      `dataset ${manifest.name}@${manifest.version} ${created ? 'registered' : 'already registered'}: ${JSON.stringify(counts)}, ${manifest.rejected.length} refused${manifest.rejected.map((r) => `\n  ${r.name}: ${r.error}`).join('')}${warnings.map((w) => `\nwarning: ${w}`).join('')}${replacing}`,
    );
  });
}
