import { createHash } from 'node:crypto';
import { z } from 'zod';
import { idSchema, sha256Schema } from '../queues/schemas.js';

/** One labelled image of a dataset snapshot. */
export const datasetItemSchema = z.object({
  name: z.string(),
  sha256: sha256Schema,
  ext: z.string(),
  label: z.number().int().nonnegative(),
  /** Patient / slide the image comes from (for group-level splits). */
  group: z.string(),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  shard: z.number().int().nonnegative(),
  /** Position inside the shard. */
  slot: z.number().int().nonnegative(),
});
export type DatasetItem = z.infer<typeof datasetItemSchema>;

/**
 * How a labelled folder becomes a snapshot: the side of its square images (the presets' inputs are made from the
 * stored originals, so this is a storage size, not a limit on them), the classes to take (default: every class
 * folder), the patient / slide pattern of file names. One schema for `camflow dataset add` and `POST /v1/datasets/:name`.
 */
export const datasetAddOptionsSchema = z
  .object({
    size: z.number().int().min(16).max(1024).default(128),
    classes: z.array(z.string().min(1).max(128)).min(2).max(100).optional(),
    groupPattern: z.string().min(1).max(200).optional(),
  })
  .strict();
export type DatasetAddOptions = z.input<typeof datasetAddOptionsSchema>;

/** An immutable dataset snapshot. Shards hold the preprocessed `size × size × 3` bytes of the items, in order. */
export const datasetManifestSchema = z.object({
  name: idSchema,
  version: idSchema,
  createdAt: z.string(),
  classNames: z.array(z.string().min(1)).min(2),
  size: z.number().int().positive(),
  items: z.array(datasetItemSchema),
  shards: z.array(z.object({ index: z.number().int().nonnegative(), count: z.number().int().positive(), bytes: z.number().int().positive() })),
  /** Files found in the folder that were not taken, with the reason. */
  rejected: z.array(z.object({ name: z.string(), error: z.string() })).default([]),
});
export type DatasetManifest = z.infer<typeof datasetManifestSchema>;

/** Bytes per shard kept under the single-PUT size (multipart is slower on small stores). */
export const SHARD_BYTES = 12 * 1024 * 1024;

export const itemsPerShard = (size: number) => Math.max(1, Math.floor(SHARD_BYTES / (size * size * 3)));

/**
 * Content version of a snapshot: the same images with the same labels at the same size give the same version,
 * so registering a folder twice is a no-op and "has the dataset changed?" is a string comparison.
 */
export function datasetVersion(size: number, classNames: string[], items: { sha256: string; label: number; group: string }[]): string {
  const h = createHash('sha256').update(`${size}\n${classNames.join('\n')}\n`);
  for (const line of items.map((i) => `${i.sha256} ${i.label} ${i.group}`).sort()) h.update(`${line}\n`);
  return `d${h.digest('hex').slice(0, 12)}`;
}
