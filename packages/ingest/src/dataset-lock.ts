// One command at a time changes a dataset: `dataset add` and `dataset remove` of the same name take a lease in Redis
// (SET NX PX, renewed while the command runs, released by its owner only), so an add can never land between a
// removal's checks and its deletes, nor a removal delete the version an add is re-registering.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { keys, type Logger } from '@camflow/common/core';
import { DatasetInUseError } from './dataset-remove.js';

/** Who holds a dataset's lease: shown to whoever is refused. */
export const datasetLeaseSchema = z.object({ token: z.string(), command: z.string(), pid: z.number().int(), host: z.string(), since: z.string() });
export type DatasetLease = z.infer<typeof datasetLeaseSchema>;

export const datasetLockKey = (prefix: string, name: string) => `${prefix}:dataset-lock:${name}`;

/** Extend the lease only while it is still ours. */
const RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/** Release only our own lease (one that expired and was taken by another command stays theirs). */
const RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

export interface DatasetLockOptions {
  redis: Redis;
  /** QUEUE_PREFIX: the lease lives beside the queues. */
  prefix: string;
  name: string;
  /** What holds it, in the refusal others get: `dataset add`, `dataset remove`, `DELETE /v1/datasets`. */
  command: string;
  /** The lease's length; renewed every third of it. A holder killed outright frees the name after this. */
  leaseMs?: number;
  log?: Logger;
}

/** Who holds a lease, in words, from its stored value (a value camflow did not write is "another command"). */
function holderText(raw: string | null): string {
  if (raw === null) return 'another command';
  try {
    const h = datasetLeaseSchema.parse(JSON.parse(raw));
    return `\`${h.command}\` (pid ${h.pid} on ${h.host}, since ${h.since})`;
  } catch {
    return 'another command';
  }
}

/**
 * Run `fn` holding the dataset's lease. Refused at once (DatasetInUseError: exit 1, HTTP 409) while another command
 * holds it, naming that command, its process and since when — never waiting behind it unseen. `fn` gets `held()`,
 * a fence to call before each step that writes or deletes: it throws when the lease was lost meanwhile (renewal
 * blocked past the lease, a Redis that lost its data) so a step never runs beside another command's.
 */
export async function withDatasetLock<T>(o: DatasetLockOptions, fn: (held: () => Promise<void>) => Promise<T>): Promise<T> {
  keys.datasetPrefix(o.name); // validates the name before a Redis key is made of it
  const leaseMs = o.leaseMs ?? 30_000;
  const key = datasetLockKey(o.prefix, o.name);
  const lease: DatasetLease = { token: randomUUID(), command: o.command, pid: process.pid, host: hostname(), since: new Date().toISOString() };
  const value = JSON.stringify(lease);
  for (let attempt = 0; ; attempt++) {
    if ((await o.redis.set(key, value, 'PX', leaseMs, 'NX')) === 'OK') break;
    const holder = await o.redis.get(key);
    // Released between our SET and our GET: try again (a few times; then it is busy enough to say so).
    if (holder === null && attempt < 3) continue;
    throw new DatasetInUseError(`dataset ${o.name} is being changed by ${holderText(holder)}: one add or remove of a dataset at a time; run this again when it has finished`);
  }
  const held = async () => {
    const now = await o.redis.get(key);
    if (now !== value) {
      throw new DatasetInUseError(`dataset ${o.name}: this command's lease ran out before it finished (now held by ${holderText(now)}); nothing more was changed — run it again`);
    }
  };
  let lost = false;
  const renew = setInterval(() => {
    o.redis.eval(RENEW, 1, key, value, String(leaseMs)).then(
      (kept) => {
        if (kept !== 0 || lost) return;
        lost = true;
        o.log?.warn({ dataset: o.name, command: o.command }, 'the dataset lease expired before it could be renewed: another add or remove of it may run now');
      },
      (error: unknown) => o.log?.warn({ dataset: o.name, err: error }, 'the dataset lease could not be renewed (Redis)'),
    );
  }, Math.max(50, Math.floor(leaseMs / 3)));
  renew.unref();
  try {
    return await fn(held);
  } finally {
    clearInterval(renew);
    await o.redis.eval(RELEASE, 1, key, value).catch(() => undefined);
  }
}
