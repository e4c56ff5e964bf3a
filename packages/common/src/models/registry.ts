import { z } from 'zod';
import { keys } from '../storage/keys.js';
import type { ObjectStore } from '../storage/object-store.js';
import { parseWith } from '../validate.js';
import { idSchema, presetSchema } from '../queues/schemas.js';
import { NotFoundError } from '../errors.js';
import { suggest } from '../suggest.js';
import { trainingContent } from './training-content.js';
import { int8ReportSchema } from '../model/int8-report.js';
import { screeningSchema } from '../screening/operating-point.js';

/** What a published model version is. Written last: a version without a manifest does not exist. */
export const modelManifestSchema = z.object({
  version: idSchema,
  preset: presetSchema,
  inputSize: z.number().int().positive(),
  classNames: z.array(z.string()).min(2),
  dataset: z.object({
    name: z.string(),
    version: z.string(),
    trainItems: z.number().int(),
    validationItems: z.number().int(),
    splitBy: z.string(),
    /** The validation images: indices into the snapshot's items (absent in versions published before it was recorded). */
    validation: z.array(z.number().int().nonnegative()).optional(),
  }),
  metrics: z.object({
    valAccuracy: z.number(),
    valLoss: z.number(),
    epochs: z.number().int(),
    /** The epoch whose weights were published (lowest validation loss); absent in versions before it was recorded. */
    bestEpoch: z.number().int().optional(),
    attempts: z.number().int(),
    history: z.array(z.record(z.string(), z.number())),
  }),
  backend: z.string(),
  createdAt: z.string(),
  files: z.array(z.string()),
  /** The int8 serving graph `model.int8.onnx` and how it compares with the float graph (absent: no int8 graph). */
  int8: int8ReportSchema.optional(),
  /** The screening operating point chosen on the validation images (absent in versions published before it). */
  screening: screeningSchema.optional(),
  /** Median longer side of the training cells' originals, in pixels (what `kind: auto` compares images with). */
  cellSide: z.number().positive().optional(),
  /** What the trainer found wrong with this run (no better than the majority class; a lopsided split): said again at a hand promotion. */
  warnings: z.array(z.string()).optional(),
  /** Why the trainer does not promote it: it does not yet tell the classes apart (`camflow models promote` still can). */
  notLearnt: z.string().optional(),
  /** `schedule`: published by a run of the retraining schedule (absent: a requested run, or published before it was recorded). */
  origin: z.enum(['request', 'schedule']).optional(),
});
export type ModelManifest = z.infer<typeof modelManifestSchema>;

export const productionChannelSchema = z.object({
  version: idSchema,
  valAccuracy: z.number(),
  promotedAt: z.string(),
  dataset: z.object({ name: z.string(), version: z.string() }),
  /** Who promoted it: the trainer's gate, or an operator (`camflow models promote`, e.g. a rollback) — which the
   * retraining schedule then leaves in place. Absent in channels written before it was recorded: the trainer. */
  by: z.enum(['trainer', 'hand']).optional(),
});
export type ProductionChannel = z.infer<typeof productionChannelSchema>;

export async function getModelManifest(store: ObjectStore, version: string): Promise<ModelManifest> {
  const raw = await store.getJsonIfExists(keys.modelFile(version, 'manifest.json'));
  if (!raw) throw new NotFoundError('model version', version);
  return parseWith(modelManifestSchema, raw, 'model manifest');
}

export async function getProduction(store: ObjectStore): Promise<ProductionChannel | undefined> {
  const raw = await store.getJsonIfExists(keys.productionChannel());
  return raw === undefined ? undefined : parseWith(productionChannelSchema, raw, 'production channel');
}

/**
 * A model a user named (a promotion, a lookup): its manifest, or a NotFoundError that says where the versions are
 * listed and which one was probably meant.
 */
export async function namedModel(store: ObjectStore, version: string): Promise<ModelManifest> {
  return getModelManifest(store, version).catch(async (error: unknown) => {
    if (!(error instanceof NotFoundError)) throw error;
    const near = suggest(version, (await listModels(store)).map((m) => m.version));
    throw new NotFoundError('model version', `${version} (\`camflow models\` or GET /v1/models lists them${near ? `; did you mean ${near}?` : ''})`);
  });
}

/** Published versions (those with a manifest), oldest first. */
export async function listModels(store: ObjectStore): Promise<ModelManifest[]> {
  const objects = await store.list(keys.modelsRoot());
  const versions = objects.filter((o) => o.key.endsWith('/manifest.json') && !o.key.startsWith('models/channels/')).map((o) => o.key.split('/')[1]!);
  const manifests = await Promise.all(versions.map((v) => getModelManifest(store, v)));
  return manifests.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** Point the production channel at a version (`by`: who did; default the trainer's gate). */
export async function promote(store: ObjectStore, manifest: ModelManifest, by: 'trainer' | 'hand' = 'trainer'): Promise<ProductionChannel> {
  const channel: ProductionChannel = {
    version: manifest.version,
    valAccuracy: manifest.metrics.valAccuracy,
    promotedAt: new Date().toISOString(),
    dataset: { name: manifest.dataset.name, version: manifest.dataset.version },
    by,
  };
  await store.putJson(keys.productionChannel(), channel);
  return channel;
}

/** What an operator's promotion replaced, and what they should know about it. */
export interface ManualPromotion {
  channel: ProductionChannel;
  previous: ProductionChannel | null;
  /** Plain sentences; empty when nothing is worth a second look. */
  warnings: string[];
}

/**
 * An operator's promotion (`camflow models promote`, `POST /v1/models/:version/promote`): always done — a rollback is
 * a legitimate reason to promote a weaker model — but said when the new production model scored lower than the one
 * it replaces, or names other classes than it did.
 */
export async function promoteByHand(store: ObjectStore, manifest: ModelManifest): Promise<ManualPromotion> {
  const warnings: string[] = [];
  // An unreadable channel is what a promotion repairs: replaced, and said.
  const raw = await store.getJsonIfExists(keys.productionChannel());
  const read = raw === undefined ? undefined : productionChannelSchema.safeParse(raw);
  if (read && !read.success) warnings.push('the production channel was unreadable (not a valid channel document): replaced');
  const previous = read?.success ? read.data : null;
  if (previous && previous.version !== manifest.version) {
    if (manifest.metrics.valAccuracy < previous.valAccuracy) {
      const same = previous.dataset.name === manifest.dataset.name && previous.dataset.version === manifest.dataset.version;
      warnings.push(
        `${manifest.version}'s validation accuracy ${manifest.metrics.valAccuracy.toFixed(4)} is below that of ${previous.version}, which it replaces (${previous.valAccuracy.toFixed(4)}; ${same ? 'same dataset version' : `datasets ${manifest.dataset.name}@${manifest.dataset.version} and ${previous.dataset.name}@${previous.dataset.version}`}, each on its own validation images)`,
      );
    }
    const before = await store.getJsonIfExists(keys.modelFile(previous.version, 'manifest.json'));
    const beforeClasses = before === undefined ? undefined : modelManifestSchema.safeParse(before).data?.classNames;
    if (beforeClasses && beforeClasses.join('\u0000') !== manifest.classNames.join('\u0000')) {
      warnings.push(`${manifest.version} names the classes ${manifest.classNames.join(', ')}; ${previous.version} named ${beforeClasses.join(', ')}: new results will carry the new names`);
    }
  }
  for (const w of manifest.warnings ?? []) warnings.push(`${manifest.version} was published with a warning: ${w}`);
  // Servable, but which cells it learnt can no longer be told: eval says so, and a retrain's gate cannot leave them out.
  const learnt = await trainingContent(store, manifest);
  if (!learnt.known && learnt.why === 'snapshot-removed') {
    warnings.push(`${manifest.version}'s training snapshot ${manifest.dataset.name}@${manifest.dataset.version} was removed: which images trained it can no longer be told (\`camflow eval\` says so; a retrain's promotion gate cannot leave them out of production's score)`);
  }
  // Already production: nothing to write (its promotedAt stays the time it was promoted).
  if (previous && previous.version === manifest.version && previous.by === 'hand') return { channel: previous, previous, warnings };
  return { channel: await promote(store, manifest, 'hand'), previous, warnings };
}
