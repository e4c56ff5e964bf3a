import { CamflowError } from '@camflow/common/core';
import { addDataset } from '@camflow/ingest';
import { print, progressBar, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';

/** `camflow dataset`: see `camflow dataset --help` (the command table in `commands.ts`). */
export async function run({ v, rest, num }: CommandInput): Promise<void> {
  if (rest[0] !== 'add' || !rest[1] || !rest[2]) throw new CamflowError('USAGE', 'usage: camflow dataset add NAME FOLDER');
  await withContext(async (ctx) => {
    const { manifest, created } = await addDataset({
      store: ctx.store,
      name: rest[1]!,
      folder: rest[2]!,
      size: num('size', 128)!,
      ...(v.classes ? { classes: v.classes.split(',') } : {}),
      ...(v['group-pattern'] ? { groupPattern: v['group-pattern'] } : {}),
      maxPixels: ctx.config.MAX_IMAGE_PIXELS,
      log: ctx.log,
      onProgress: v.json ? undefined : progressBar('preprocess'),
    });
    const counts = Object.fromEntries(manifest.classNames.map((c, i) => [c, manifest.items.filter((it) => it.label === i).length]));
    print(v.json, { dataset: manifest.name, version: manifest.version, created, items: manifest.items.length, counts, rejected: manifest.rejected }, `dataset ${manifest.name}@${manifest.version} ${created ? 'registered' : 'already registered'}: ${JSON.stringify(counts)}, ${manifest.rejected.length} refused${manifest.rejected.map((r) => `\n  ${r.name}: ${r.error}`).join('')}`);
  });
}
