import { z, type ZodType } from 'zod';
import { InvalidParameterError } from './errors.js';
import { suggest } from './suggest.js';

/**
 * Parse `value` with a zod schema and turn the first issue into an InvalidParameterError that names the
 * field path, the expectation and the value received. `names` renames top-level fields as the caller's user knows
 * them (the CLI's flags: `validationFraction` is `--val-fraction` to someone who typed it).
 * @example const payload = parseWith(camJobSchema, job.data, 'cam job');
 * @example parseWith(trainJobSchema, input, 'train job', { validationFraction: '--val-fraction' })
 */
export function parseWith<T>(schema: ZodType<T>, value: unknown, what: string, names: Record<string, string> = {}): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = firstIssue(result.error.issues);
  const top = issue.path.length === 1 ? names[String(issue.path[0])] : undefined;
  const path = top ?? (issue.path.length > 0 ? `${what}.${issue.path.join('.')}` : what);
  let actual: unknown = value;
  for (const key of issue.path) {
    actual = actual !== null && typeof actual === 'object' ? (actual as Record<PropertyKey, unknown>)[key as PropertyKey] : undefined;
  }
  if (issue.code === 'unrecognized_keys') {
    // The unknown field itself is the value received; the known ones (of a top-level object) give the suggestion.
    const unknown = (issue as { keys?: string[] }).keys ?? [];
    const shape = issue.path.length === 0 ? (schema as { shape?: Record<string, unknown> }).shape : undefined;
    const near = unknown.length === 1 && shape ? suggest(unknown[0]!, Object.keys(shape)) : undefined;
    throw new InvalidParameterError(path, `known fields only${shape ? ` (${Object.keys(shape).join(', ')})` : ''}${near ? `; did you mean "${near}"?` : ''}`, unknown.length === 1 ? unknown[0] : unknown);
  }
  throw new InvalidParameterError(path, expectation(issue, actual), actual);
}

/**
 * The expectation of a zod issue, in the error's own words ("Expected <this> for <field> but received <value>"):
 * zod's message without its "Invalid option: expected" lead, and for a mistyped choice the one that was meant.
 */
function expectation(issue: { code: string; message: string; values?: readonly unknown[] }, actual: unknown): string {
  const plain = issue.message
    .replace(/^(Invalid (option|input|value)|Too (small|big)): expected /, '')
    .replace(/, received \w+$/, '')
    .replace(/^Invalid string: must match pattern (.*)$/, 'a string matching $1');
  const choices = issue.code === 'invalid_value' && issue.values ? issue.values.filter((v): v is string => typeof v === 'string') : [];
  const near = typeof actual === 'string' && choices.length ? suggest(actual, choices) : undefined;
  return near ? `${plain} (did you mean "${near}"?)` : plain;
}

interface Issue {
  code: string;
  message: string;
  path: PropertyKey[];
  errors?: Issue[][];
  values?: readonly unknown[];
}

/**
 * The issue worth naming: the first one, or for a value that matched no branch of a union ("Invalid input"), the
 * first issue of the branch that got furthest into the value (its longest path), with the union's path in front.
 * @example firstIssue(imageResultSchema.safeParse(line).error!.issues) // { path: ['featureSize'], … }
 */
export function firstIssue(issues: readonly unknown[]): Issue {
  const issue = issues[0] as Issue;
  if (issue.code !== 'invalid_union' || !issue.errors?.length) return issue;
  const branches = issue.errors.filter((b) => b.length > 0).map((b) => ({ first: firstIssue(b), nowhere: gotNowhere(b) }));
  if (branches.length === 0) return issue;
  // A branch whose discriminating literal failed at its top (status: expected "ok") got nowhere: the others first,
  // then the branch whose issue lies deepest in the value.
  const furthest = branches.reduce((best, b) => (b.nowhere !== best.nowhere ? (b.nowhere ? best : b) : b.first.path.length > best.first.path.length ? b : best)).first;
  return { ...furthest, path: [...issue.path, ...furthest.path] };
}

/**
 * The issue worth naming (`firstIssue`) as "path: message" ("line" when it is the value itself).
 * @example issueText(imageResultSchema.safeParse(line).error!.issues) // "featureSize: Invalid input: …"
 */
export function issueText(issues: readonly unknown[]): string {
  const issue = firstIssue(issues);
  return `${issue.path.map(String).join('.') || 'line'}: ${issue.message}`;
}

/** A union branch that failed on one of its own literals (one allowed value, at the branch's top level). */
function gotNowhere(branch: Issue[]): boolean {
  return branch.some((i) => i.code === 'invalid_value' && i.values?.length === 1 && i.path.length === 1);
}

/** A number as people write one in decimal: `12`, `-0.3`, `.5`, `1e-3` (not `""`, `0x1`, `1_000` or `Infinity`). */
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * Pure: a typed number (a CLI flag, a form field, a query parameter) read as what it says, or undefined. `Number()`
 * alone reads `""` and `" "` as 0 and `0x1` as 1 — a silent misreading of a value the user meant otherwise.
 * @example parseDecimal('0.3') // 0.3
 * @example parseDecimal('') // undefined
 */
export function parseDecimal(raw: string): number | undefined {
  const text = raw.trim();
  if (!DECIMAL.test(text)) return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * A number field that may arrive as text (multipart forms, query strings): decimal text becomes its number, anything
 * else is refused by `schema` naming what it received (`Expected number … but received ""`).
 * @example decimal(z.number().int().positive()).parse('12') // 12
 */
export const decimal = <T extends ZodType<number>>(schema: T) => z.preprocess((v) => (typeof v === 'string' ? (parseDecimal(v) ?? v) : v), schema);
