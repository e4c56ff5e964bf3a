import { NotFoundError } from '../errors.js';
import { keys } from '../storage/keys.js';
import type { ObjectStore } from '../storage/object-store.js';
import { parseWith } from '../validate.js';
import { datasetManifestSchema, type DatasetManifest } from './manifest.js';

/** Resolve `latest` (or a version) to a dataset manifest. */
export async function getDatasetManifest(store: ObjectStore, name: string, version = 'latest'): Promise<DatasetManifest> {
  const missing = () => new NotFoundError('dataset', `${name}${version === 'latest' ? '' : `@${version}`} (add one with \`camflow dataset add ${name} FOLDER\`)`);
  const latest = version === 'latest' ? await store.getJsonIfExists(keys.datasetLatest(name)) : undefined;
  if (version === 'latest' && !latest) throw missing();
  const resolved = version === 'latest' ? (latest as { version: string }).version : version;
  const manifest = await store.getJsonIfExists(keys.datasetManifest(name, resolved));
  if (!manifest && version !== 'latest') {
    // The dataset may exist and only the version be wrong: say which one is there.
    const current = (await store.getJsonIfExists(keys.datasetLatest(name))) as { version: string } | undefined;
    if (current) throw new NotFoundError('dataset version', `${name}@${version} (${name}'s latest is ${name}@${current.version})`);
  }
  if (!manifest) throw missing();
  return parseWith(datasetManifestSchema, manifest, 'dataset manifest');
}

/** Fetch every shard of a snapshot: `n × size × size × 3` bytes in manifest item order. */
export async function loadDatasetImages(store: ObjectStore, manifest: DatasetManifest): Promise<Uint8Array> {
  const per = manifest.size * manifest.size * 3;
  const out = new Uint8Array(manifest.items.length * per);
  const shardBodies = await Promise.all(manifest.shards.map((s) => store.get(keys.datasetShard(manifest.name, manifest.version, s.index))));
  manifest.items.forEach((item, i) => {
    const body = shardBodies[item.shard]!;
    out.set(body.subarray(item.slot * per, (item.slot + 1) * per), i * per);
  });
  return out;
}

/** One registered dataset: its latest snapshot and every version kept. */
export interface DatasetListing {
  name: string;
  latest: string;
  items: number;
  counts: Record<string, number>;
  createdAt: string;
  versions: string[];
}

/** Every dataset in the store with its latest snapshot's size and classes (for `camflow dataset list`). */
export async function listDatasets(store: ObjectStore): Promise<DatasetListing[]> {
  const out: DatasetListing[] = [];
  for (const prefix of await store.listPrefixes('datasets/')) {
    const name = prefix.slice('datasets/'.length, -1);
    const latest = (await store.getJsonIfExists(keys.datasetLatest(name))) as { version: string } | undefined;
    if (!latest) continue; // shards without a committed snapshot
    // A pointer to a version no longer there (a removal that raced an add) hides that dataset, not every other one.
    const m = await getDatasetManifest(store, name, latest.version).catch((error: unknown) => {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    });
    if (!m) continue;
    const versions = (await store.listPrefixes(prefix)).map((p) => p.slice(prefix.length, -1));
    out.push({ name, latest: m.version, items: m.items.length, counts: Object.fromEntries(m.classNames.map((c, i) => [c, m.items.filter((it) => it.label === i).length])), createdAt: m.createdAt, versions });
  }
  return out;
}
