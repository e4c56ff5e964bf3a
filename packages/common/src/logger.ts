import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** Paths pino replaces with "[redacted]" wherever they appear in a log record. */
export const redactPaths = [
  'password',
  'token',
  'secretAccessKey',
  'accessKeyId',
  'sessionToken',
  'authorization',
  '*.password',
  '*.token',
  '*.secretAccessKey',
  '*.accessKeyId',
  '*.sessionToken',
  '*.authorization',
  'credentials',
  '*.credentials',
  'headers.authorization',
  'req.headers.authorization',
  'redisUrl',
  '*.redisUrl',
];

/**
 * Create the root logger: structured JSON with secret redaction. Services derive child loggers carrying their
 * context (`batchId`, `jobId`, `modelVersion`).
 * @example const log = createLogger({ level: 'info', name: 'cam-worker' }).child({ batchId });
 */
export function createLogger(options: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const config: LoggerOptions = {
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    redact: { paths: redactPaths, censor: '[redacted]' },
    base: { service: options.name ?? 'camflow', pid: process.pid },
  };
  if (options.name) config.name = options.name;
  return options.destination ? pino(config, options.destination as pino.DestinationStream) : pino(config);
}

/** Strip the password from a redis:// URL so it can be logged. */
export function safeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '[unparseable url]';
  }
}
