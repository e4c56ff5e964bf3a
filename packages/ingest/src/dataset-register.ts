// `camflow dataset add` and `POST /v1/datasets/:name`: one labelled folder registered as a snapshot under the name's
// lease, answered in one shape.
import type { Redis } from 'ioredis';
import { datasetAddOptionsSchema, parseWith, type DatasetAddOptions, type Logger, type ObjectStore } from '@camflow/common/core';
import { addDataset } from './datasets.js';
import { withDatasetLock } from './dataset-lock.js';

/** What registering a folder did: the snapshot, its images per class, what was refused and why, what looks wrong. */
export interface DatasetRegistration {
  dataset: string;
  version: string;
  /** False when the same images, classes and size were registered before (the same version: nothing written). */
  created: boolean;
  items: number;
  counts: Record<string, number>;
  rejected: { name: string; error: string }[];
  warnings: string[];
  /** The version that was the latest before this one, when another. */
  replaced?: { version: string; items: number };
}

export interface RegisterDatasetOptions {
  store: ObjectStore;
  /** The dataset lease lives in Redis beside the queues. */
  redis: Redis;
  prefix: string;
  name: string;
  folder: string;
  options: DatasetAddOptions;
  /** How the caller's user names an option in an error (`--size`, `fields.size`). */
  names?: Record<string, string>;
  maxPixels?: number;
  /** Who holds the lease, as another command refused meanwhile is told (`camflow dataset add`). */
  command: string;
  log?: Logger;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Register `folder` (`<folder>/<class>/<image>`) as a snapshot of `name`, holding the name's lease throughout (another
 * add or remove of it is refused at once, naming this one). Options are checked before anything is read.
 * @example const r = await registerDataset({ store, redis, prefix, name: 'cells', folder: './cells', options: {}, command: 'camflow dataset add' });
 */
export async function registerDataset(o: RegisterDatasetOptions): Promise<DatasetRegistration> {
  const options = parseWith(datasetAddOptionsSchema, o.options, 'options', o.names);
  const lease = { redis: o.redis, prefix: o.prefix, name: o.name, command: o.command, ...(o.log ? { log: o.log } : {}) };
  const { manifest, created, warnings, replaced } = await withDatasetLock(lease, (held) =>
    addDataset({
      beforeCommit: held,
      store: o.store,
      name: o.name,
      folder: o.folder,
      size: options.size,
      ...(options.classes ? { classes: options.classes } : {}),
      ...(options.groupPattern ? { groupPattern: options.groupPattern, groupPatternField: o.names?.groupPattern ?? 'groupPattern' } : {}),
      ...(o.maxPixels ? { maxPixels: o.maxPixels } : {}),
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    }),
  );
  const counts = Object.fromEntries(manifest.classNames.map((c, i) => [c, manifest.items.filter((it) => it.label === i).length]));
  return { dataset: manifest.name, version: manifest.version, created, items: manifest.items.length, counts, rejected: manifest.rejected, warnings, ...(replaced ? { replaced } : {}) };
}
