import { keys } from '../storage/keys.js';
import type { ObjectStore } from '../storage/object-store.js';
import { parseWith } from '../validate.js';
import { datasetManifestSchema } from '../dataset/manifest.js';
import type { ModelManifest } from './registry.js';

/**
 * The contents (SHA-256) of the images a model trained on — its snapshot's items outside the validation split it
 * recorded — or why that cannot be told: `no-split` (published before models recorded their validation images),
 * `snapshot-removed` (`camflow dataset remove` took its snapshot).
 * @example const seen = await trainingContent(store, production); if (seen.known) seen.sha256s.has(item.sha256)
 */
export async function trainingContent(store: ObjectStore, model: ModelManifest): Promise<{ known: true; sha256s: Set<string> } | { known: false; why: 'no-split' | 'snapshot-removed' }> {
  const held = model.dataset.validation;
  if (!held) return { known: false, why: 'no-split' };
  const raw = await store.getJsonIfExists(keys.datasetManifest(model.dataset.name, model.dataset.version));
  if (raw === undefined) return { known: false, why: 'snapshot-removed' };
  const validation = new Set(held);
  const items = parseWith(datasetManifestSchema, raw, 'dataset manifest').items;
  return { known: true, sha256s: new Set(items.filter((_, i) => !validation.has(i)).map((item) => item.sha256)) };
}

/** Why a model's training images cannot be told, in words. */
export function unknownTrainingText(model: ModelManifest, why: 'no-split' | 'snapshot-removed'): string {
  const snapshot = `${model.dataset.name}@${model.dataset.version}`;
  return why === 'snapshot-removed' ? `its training snapshot ${snapshot} was removed` : `it was published before models recorded their validation images`;
}
