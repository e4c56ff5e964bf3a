import { format } from 'node:util';
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** Keys whose values are secrets wherever they appear in a log record, at any depth (case-insensitive). */
const SECRET_KEYS = 'authorization|proxy-authorization|cookie|set-cookie|x-api-key|password|passwd|token|api_token|apiToken|secret|secretAccessKey|secret_access_key|accessKeyId|sessionToken|credentials|redisUrl|redis_url';
const SECRET_RULES: [RegExp, string][] = [
  // "key": "value" (escaped quotes inside the value included)
  [new RegExp(`"(${SECRET_KEYS})"\\s*:\\s*"(?:[^"\\\\]|\\\\.)*"`, 'gi'), '"$1":"[redacted]"'],
  // "key": ["value", …] (repeated headers) and "key": { flat object } (credentials)
  [new RegExp(`"(${SECRET_KEYS})"\\s*:\\s*(\\[[^\\]]*\\]|\\{[^{}]*\\})`, 'gi'), '"$1":"[redacted]"'],
  // Credentials inside any string: bearer / basic tokens, passwords in URLs.
  [/\b(Bearer|Basic)(\s|\\t)+[A-Za-z0-9._~+/=-]+/gi, '$1 [redacted]'],
  // (to the last @ before the host: an unencoded @ inside a password must not leave its tail)
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s"]*:)[^/\s"]*@/gi, '$1[redacted]@'],
  // Tokens in query strings (a client's ?token=…, fastify logs the URL as sent) and presigned-URL signatures.
  // Any parameter whose name ends like a secret's: token, secret, password, key, signature, credential, auth.
  [/([?&][^=&#\s"]*(?:token|secret|passw(?:or)?d|key|sig|signature|credential|auth)=)[^&#\s"]+/gi, '$1[redacted]'],
];

/**
 * Replace every secret in a serialised log line: values of secret-named keys at any depth (request headers
 * included, whoever logged them: fastify, its plugins, the AWS SDK) and credentials inside strings. Applied to the
 * final JSON, after serializers, so nothing a serializer adds escapes it.
 * @example redactLine('{"headers":{"authorization":"Bearer abc"}}') // '{"headers":{"authorization":"[redacted]"}}'
 */
export function redactLine(line: string): string {
  let out = line;
  for (const [pattern, replacement] of SECRET_RULES) out = out.replace(pattern, replacement);
  return out;
}

/**
 * Create the root logger: structured JSON, every line passed through `redactLine` (fastify's and its plugins'
 * logs included: they are children of this logger). Services derive child loggers carrying their context
 * (`batchId`, `jobId`, `modelVersion`). `destination` defaults to stderr, so `--json` output on stdout stays JSON.
 * @example const log = createLogger({ level: 'info', name: 'cam-worker' }).child({ batchId });
 */
export function createLogger(options: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const config: LoggerOptions = {
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    base: { service: options.name ?? 'camflow', pid: process.pid },
    hooks: { streamWrite: redactLine },
  };
  if (options.name) config.name = options.name;
  return pino(config, (options.destination ?? pino.destination(2)) as pino.DestinationStream);
}

/**
 * A URL as it may be shown to a person: without user name and password (an endpoint may carry both).
 * @example withoutUserInfo('http://lab:pw@10.0.0.5:9000') // 'http://10.0.0.5:9000'
 */
export function withoutUserInfo(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.username && !parsed.password) return url;
    parsed.username = '';
    parsed.password = '';
    const shown = parsed.toString();
    return url.endsWith('/') || !shown.endsWith('/') ? shown : shown.slice(0, -1);
  } catch {
    return '[unparseable url]';
  }
}

/**
 * Send `console.warn` (libraries print there: BullMQ's "IMPORTANT! Eviction policy is …", once per connection) through
 * `log` at warn level, each distinct message once per process — a long-running process's output stays JSON lines, and
 * a one-shot command (`json: false`) prints such a warning once, plainly, instead of once per queue it opens.
 * Returns the function that puts `console.warn` back.
 * @example const restore = routeConsoleWarnings(log, { json: true });
 */
export function routeConsoleWarnings(log: Logger, options: { json: boolean }): () => void {
  const original = console.warn;
  const seen = new Set<string>();
  console.warn = (...args: unknown[]) => {
    const message = format(...args).trim();
    if (seen.has(message) || seen.size >= 1000) return;
    seen.add(message);
    if (options.json) log.warn({ from: 'console' }, message);
    else process.stderr.write(`${message}\n`);
  };
  return () => {
    console.warn = original;
  };
}
