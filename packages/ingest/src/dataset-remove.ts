// Removing a dataset, or one version of it: refused while something still needs it (the production model's own
// validation images, the retraining schedule, a training job queued or running on it); otherwise the snapshot's
// objects are deleted, the "latest" pointer first, so no reader ever sees a half-removed version.
import type { Queue } from 'bullmq';
import {
  CamflowError,
  datasetManifestSchema,
  getProduction,
  getRetrainingSchedule,
  listModels,
  keys,
  listTrainingJobs,
  NotFoundError,
  parseWith,
  type ObjectStore,
} from '@camflow/common/core';
import { withDatasetLock, type DatasetLockOptions } from './dataset-lock.js';

/** The dataset (or version) is still needed: what needs it and what to do first. HTTP 409, exit 1. */
export class DatasetInUseError extends CamflowError {
  readonly statusCode = 409;
  constructor(message: string) {
    super('DATASET_IN_USE', message);
  }
}

export interface DatasetRemoval {
  dataset: string;
  /** The versions removed. */
  removed: string[];
  /** Objects deleted (manifests and shards). */
  objects: number;
  /** The latest version now: unchanged, the newest one left when the latest was removed, or null when none is left. */
  latest: string | null;
  /** Published models trained on a removed version: their training images can no longer be told apart by `eval`. */
  models?: string[];
}

/** How many training jobs to look through for ones on the dataset (queued or running ones are the newest). */
const JOBS_LOOKED_AT = 200;

/**
 * Remove `name@version`, or every version of `name` when `version` is absent. The images' originals stay (stored
 * once by content, they may be a batch's as well). Holds the dataset's lease (`withDatasetLock`, in Redis beside the
 * queues) throughout: refused while a `dataset add` or another removal of the name runs.
 */
export async function removeDataset(
  store: ObjectStore,
  trainQueue: Queue,
  lease: Omit<DatasetLockOptions, 'name'>,
  name: string,
  version?: string,
): Promise<DatasetRemoval> {
  return withDatasetLock({ ...lease, name }, (held) => removeHeld(store, trainQueue, held, name, version));
}

async function removeHeld(store: ObjectStore, trainQueue: Queue, held: () => Promise<void>, name: string, version?: string): Promise<DatasetRemoval> {
  const prefix = keys.datasetPrefix(name);
  const latest = ((await store.getJsonIfExists(keys.datasetLatest(name))) as { version: string } | undefined)?.version;
  const versions = (await store.listPrefixes(prefix)).map((p) => p.slice(prefix.length, -1));
  if (!latest && versions.length === 0) throw new NotFoundError('dataset', `${name} (\`camflow dataset list\` lists them)`);
  if (version !== undefined && !versions.includes(version)) {
    throw new NotFoundError('dataset version', `${name}@${version} (${name} has ${versions.join(', ') || 'no version'})`);
  }
  const doomed = version === undefined ? versions : [version];
  const what = version === undefined ? `dataset ${name}` : `${name}@${version}`;

  const production = await getProduction(store);
  if (production && production.dataset.name === name && doomed.includes(production.dataset.version)) {
    throw new DatasetInUseError(`${what} is not removed: the production model ${production.version} was trained on ${name}@${production.dataset.version}, and \`camflow eval ${name}\` scores it on that version's validation images; promote another model first (\`camflow models promote VERSION\`)`);
  }
  // The schedule trains the name's latest version: removing a version hands `latest` on, removing the last one (or the
  // whole dataset) leaves the schedule nothing to train — every run would fail, and it could not be edited.
  const schedule = await getRetrainingSchedule(trainQueue);
  // Versions without a manifest (an add cut short) are no snapshot the schedule could train.
  const complete = (await Promise.all(versions.map(async (v) => ((await store.exists(keys.datasetManifest(name, v))) ? v : undefined)))).filter((v) => v !== undefined);
  const leavesNone = complete.every((v) => doomed.includes(v));
  if (leavesNone && schedule && (schedule.data as { dataset?: string } | undefined)?.dataset === name) {
    const last = version === undefined ? '' : ` (${name}'s last version)`;
    throw new DatasetInUseError(`${what}${last} is not removed: the retraining schedule trains ${name} (${schedule.pattern ?? 'a schedule'}); \`camflow schedule remove\` first`);
  }
  // Published models trained on a removed version stay servable, but which images trained them can no longer be told
  // (`camflow eval` then says so): named in the answer.
  const models = (await listModels(store)).filter((m) => m.dataset.name === name && doomed.includes(m.dataset.version)).map((m) => m.version);
  // A job on `latest` resolves it when it starts: a running one may be loading any version it found then, a queued
  // one will take the latest. The schedule's next run resolves it when it fires (nothing to wait for now).
  const onIt = (await listTrainingJobs(trainQueue, JOBS_LOOKED_AT)).filter(
    (j) =>
      ['active', 'waiting', 'prioritized', 'delayed'].includes(j.state) &&
      !(j.origin === 'schedule' && j.state === 'delayed' && !j.attemptsMade) &&
      j.dataset === name &&
      (version === undefined || j.datasetVersion === version || (j.datasetVersion === 'latest' && (j.state === 'active' || version === latest))),
  );
  if (onIt.length) {
    throw new DatasetInUseError(`${what} is not removed: training job${onIt.length === 1 ? '' : 's'} ${onIt.map((j) => `${j.jobId} (${j.state})`).join(', ')} ${onIt.length === 1 ? 'is' : 'are'} on it; wait for ${onIt.length === 1 ? 'it' : 'them'}, or \`camflow train --cancel JOB_ID\``);
  }

  // The pointer first: from here on no reader resolves `latest` to a version being removed.
  await held();
  let now: string | null = latest ?? null;
  if (latest && doomed.includes(latest)) {
    now = await newestOf(store, name, versions.filter((v) => !doomed.includes(v)));
    if (now) await store.putJson(keys.datasetLatest(name), { version: now });
    else await store.deleteMany([keys.datasetLatest(name)]);
  }
  let objects = 0;
  for (const v of doomed) {
    // Its manifest before its shards: a snapshot without a manifest is invisible (as one cut short by `dataset add`).
    const manifest = keys.datasetManifest(name, v);
    const rest: string[] = [];
    for await (const page of store.listPages(`${prefix}${v}/`)) for (const o of page) if (o.key !== manifest) rest.push(o.key);
    await held();
    await store.deleteMany([manifest]);
    await store.deleteMany(rest);
    objects += rest.length + 1;
  }
  if (version === undefined) {
    // The pointer again (a dangling one left by an earlier, interrupted removal goes too), then what may have come
    // meanwhile from a writer that takes no lease (an older camflow, a script calling `addDataset` directly): said, not
    // left half-deleted in silence.
    await store.deleteMany([keys.datasetLatest(name)]);
    const late = await store.listPrefixes(prefix);
    if (late.length) throw new DatasetInUseError(`dataset ${name} was removed, but \`dataset add ${name}\` wrote ${late.map((p) => p.slice(prefix.length, -1)).join(', ')} meanwhile: run \`camflow dataset remove ${name}\` again once it is done`);
  }
  return { dataset: name, removed: doomed, objects, latest: version === undefined ? null : now, ...(models.length ? { models } : {}) };
}

/** The most recently created of these versions (by their manifests), or null when none has a manifest. */
async function newestOf(store: ObjectStore, name: string, versions: string[]): Promise<string | null> {
  let best: { version: string; createdAt: string } | undefined;
  for (const v of versions) {
    const raw = await store.getJsonIfExists(keys.datasetManifest(name, v));
    if (raw === undefined) continue;
    const m = parseWith(datasetManifestSchema, raw, 'dataset manifest');
    if (!best || m.createdAt > best.createdAt) best = { version: v, createdAt: m.createdAt };
  }
  return best?.version ?? null;
}
