import type { Redis } from 'ioredis';
import { keyClaimSchema, keys, parseWith, type KeyClaim, type ObjectStore } from '@camflow/common/core';

/** Where idempotency keys are claimed: Redis for the atomic claim, S3 as the durable record. */
export interface KeyClaims {
  store: ObjectStore;
  redis: Redis;
  prefix: string;
}

const redisKey = (prefix: string, digest: string) => `${prefix}:batch-key:${digest}`;

/** The batch that owns a key, if any. A claim lost with a Redis without persistence is restored from S3. */
export async function readClaim(claims: KeyClaims, digest: string): Promise<KeyClaim | undefined> {
  const raw = await claims.redis.get(redisKey(claims.prefix, digest));
  if (raw) return parseWith(keyClaimSchema, JSON.parse(raw), 'key claim');
  const stored = await claims.store.getJsonIfExists(keys.batchKeyClaim(digest));
  if (!stored) return undefined;
  const claim = parseWith(keyClaimSchema, stored, 'key claim');
  await claims.redis.set(redisKey(claims.prefix, digest), JSON.stringify(claim), 'NX');
  return (await readClaim(claims, digest)) ?? claim;
}

/**
 * Claim a key for a batch, atomically (SET NX): the first claim wins and is returned to every later caller, so
 * concurrent submissions with one key cannot both enqueue. The winner's claim is then recorded in S3.
 */
export async function claimKey(claims: KeyClaims, digest: string, claim: KeyClaim): Promise<KeyClaim> {
  const existing = await readClaim(claims, digest);
  if (existing) return existing;
  const won = await claims.redis.set(redisKey(claims.prefix, digest), JSON.stringify(claim), 'NX');
  if (won !== 'OK') return (await readClaim(claims, digest))!;
  await claims.store.putJson(keys.batchKeyClaim(digest), claim);
  return claim;
}
