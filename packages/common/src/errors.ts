/**
 * Typed errors. Every error that stems from bad input names the field, what was expected and what came in,
 * in the spirit of sharp's `invalidParameterError(name, expected, actual)`.
 */

/** Base class: every camflow error carries a stable machine-readable `code`. */
export class CamflowError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  // A string is a value typed or a sentence saying what was found (the names a batch lacks, a file's problem): kept
  // whole up to 300 characters; a pasted blob is cut.
  if (typeof value === 'string') return JSON.stringify(value.length > 300 ? `${value.slice(0, 297)}...` : value);
  if (value instanceof Uint8Array) return `${value.constructor.name}(${value.length})`;
  if (Array.isArray(value)) return `array(${value.length})`;
  try {
    const s = JSON.stringify(value);
    return s === undefined ? String(value) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return String(value);
  }
}

/**
 * A parameter did not meet its contract.
 * @example throw new InvalidParameterError('fraction', 'a number in (0, 1)', 1.5)
 */
export class InvalidParameterError extends CamflowError {
  readonly field: string;
  readonly expected: string;
  readonly actual: unknown;
  constructor(field: string, expected: string, actual: unknown) {
    super('INVALID_PARAMETER', `Expected ${expected} for ${field} but received ${describe(actual)}`);
    this.field = field;
    this.expected = expected;
    this.actual = actual;
  }
}

/** An environment variable is missing or malformed. The message is one line naming the variable. */
export class ConfigError extends CamflowError {
  readonly variable: string;
  constructor(variable: string, problem: string) {
    super('CONFIG', `config: ${variable}: ${problem}`);
    this.variable = variable;
  }
}

/** An image could not be decoded or is refused (format, size, pixel limit). Fails its own item only. */
export class ImageInputError extends CamflowError {
  readonly reason: string;
  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super('IMAGE_INPUT', message, options);
    this.reason = reason;
  }
}

/** A requested object, dataset or model version does not exist. */
export class NotFoundError extends CamflowError {
  constructor(what: string, id: string) {
    super('NOT_FOUND', `${what} not found: ${id}`);
  }
}

/** Type guard for values that are objects with a string `message`. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
