import { keys } from '../storage/keys.js';
import type { ObjectStore } from '../storage/object-store.js';
import { parseWith } from '../validate.js';
import { datasetManifestSchema, type DatasetManifest } from './manifest.js';

/** Resolve `latest` (or a version) to a dataset manifest. */
export async function getDatasetManifest(store: ObjectStore, name: string, version = 'latest'): Promise<DatasetManifest> {
  const resolved = version === 'latest' ? (await store.getJson<{ version: string }>(keys.datasetLatest(name))).version : version;
  return parseWith(datasetManifestSchema, await store.getJson(keys.datasetManifest(name, resolved)), 'dataset manifest');
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
