import type { ZodType } from 'zod';
import { InvalidParameterError } from './errors.js';

/**
 * Parse `value` with a zod schema and turn the first issue into an InvalidParameterError that names the
 * field path, the expectation and the value received.
 * @example const payload = parseWith(camJobSchema, job.data, 'cam job');
 */
export function parseWith<T>(schema: ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = issue.path.length > 0 ? `${what}.${issue.path.join('.')}` : what;
  let actual: unknown = value;
  for (const key of issue.path) {
    actual = actual !== null && typeof actual === 'object' ? (actual as Record<PropertyKey, unknown>)[key as PropertyKey] : undefined;
  }
  throw new InvalidParameterError(path, issue.message, actual);
}
