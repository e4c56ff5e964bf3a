import { FlowProducer, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  ConfigError,
  ObjectStore,
  NotFoundError,
  StorageError,
  UnreachableError,
  createLogger,
  connectProducer,
  loadConfig,
  withoutUserInfo,
  probeRedis,
  producerConnection,
  queueNames,
  type Config,
  type Logger,
} from '@camflow/common/core';
import { bullTelemetry, routeConsoleWarnings, safeRedisAddress, startTracing, stopTracing } from '@camflow/common/core';

/** Everything a command needs, built once from the environment (the composition root). */
export interface Context {
  config: Config;
  log: Logger;
  store: ObjectStore;
  queues: { cam: Queue; batch: Queue; train: Queue; ingest: Queue };
  flow: FlowProducer;
  /** A producer client (no offline queue) for idempotency claims and probes. */
  redis: Redis;
  close(): Promise<void>;
}

export function storeFromConfig(config: Config, env: Record<string, string | undefined> = process.env): ObjectStore {
  const credentials =
    env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY } : undefined;
  return new ObjectStore({
    bucket: config.S3_BUCKET,
    endpoint: config.S3_ENDPOINT,
    region: config.S3_REGION,
    forcePathStyle: config.S3_FORCE_PATH_STYLE,
    maxSockets: config.S3_MAX_SOCKETS,
    ...(credentials ? { credentials } : {}),
  });
}

/**
 * The bucket must answer (created when S3_CREATE_BUCKET); otherwise one line in seconds saying what is wrong: no
 * answer, credentials refused, no such bucket, the wrong region — each naming the variable to change.
 */
export async function ensureStore(store: ObjectStore, config: Config): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    // However the endpoint fails to answer (refused, silent, blackholed), the command ends within seconds.
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no answer within 6000 ms')), 6000)));
    await Promise.race([store.ensureBucket(config.S3_CREATE_BUCKET), timeout]);
  } catch (error) {
    throw storeProblem(error, config);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Pure: what a failed bucket check means, as the error a user can act on. The SDK names a bodiless HEAD answer
 * "Unknown", so the HTTP status decides: 403 is the credentials, 301 the region, 404 the bucket's name.
 */
export function storeProblem(error: unknown, config: Config): Error {
  const where = config.S3_ENDPOINT ? `S3 at ${withoutUserInfo(config.S3_ENDPOINT)}` : `AWS S3 (${config.S3_REGION})`;
  if (error instanceof NotFoundError) {
    return new ConfigError('S3_BUCKET', `${where} has no bucket "${config.S3_BUCKET}": check the name, or set S3_CREATE_BUCKET=true to have camflow create it`);
  }
  const cause = error instanceof StorageError ? (error.cause as NodeJS.ErrnoException & { $metadata?: { httpStatusCode?: number } }) : undefined;
  const status = cause?.$metadata?.httpStatusCode;
  const name = cause ? (cause.code ?? cause.name ?? (error as Error).message) : (error as Error).message;
  // No credentials at all is not an outage: say what to set (the usual slip: `camflow dev`'s exports not run).
  if (name === 'CredentialsProviderError') {
    return new ConfigError('AWS_ACCESS_KEY_ID', `${where} needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and S3_ENDPOINT for a local store; \`camflow dev\` prints all three)`);
  }
  if (status === 403) {
    return new ConfigError('AWS_ACCESS_KEY_ID', `${where} refused these credentials for bucket ${config.S3_BUCKET} (HTTP 403): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that the key may use the bucket`);
  }
  if (status === 301) {
    return new ConfigError('S3_REGION', `bucket ${config.S3_BUCKET} is not in region ${config.S3_REGION} (HTTP 301 from ${where}): set S3_REGION to the bucket's region`);
  }
  const detail = status !== undefined && name === 'Unknown' ? `HTTP ${status}` : String(name);
  return new UnreachableError(`${where}, bucket ${config.S3_BUCKET},`, detail);
}

/**
 * Build a command's context. Redis is probed first and must answer within 5 s (one line naming it otherwise);
 * queues and flows are producers without an offline queue, so nothing hangs while Redis is down. `service`: a
 * long-running process (worker, API, dev), which reports the Redis server's settings (eviction, persistence) at its
 * start; a one-shot command (or the demo, whose Redis is its own and thrown away) does not repeat them on every run.
 */
/**
 * Where a long-running process works, for its start line: the Redis and the S3 store and bucket it reaches (without
 * credentials) and its queue prefix — so its log confirms which store and queues a worker or API is on.
 */
export function whereTo(config: Config): { redis: string; s3: string; bucket: string; queuePrefix: string } {
  return { redis: safeRedisAddress(config.REDIS_URL), s3: config.S3_ENDPOINT ? withoutUserInfo(config.S3_ENDPOINT) : `AWS S3 (${config.S3_REGION})`, bucket: config.S3_BUCKET, queuePrefix: config.QUEUE_PREFIX };
}

export async function createContext(env: Record<string, string | undefined> = process.env, name = 'camflow', service = true): Promise<Context> {
  const config = loadConfig(env);
  // A one-shot command prints its own report: its log says only what went wrong, unless LOG_LEVEL asks for more.
  const log = createLogger({ level: service || env.LOG_LEVEL ? config.LOG_LEVEL : 'warn', name });
  const restoreConsole = routeConsoleWarnings(log, { json: service });
  const store = storeFromConfig(config, env);
  await probeRedis(config.REDIS_URL, 5000, service ? log : undefined);
  await startTracing(config.OTEL_EXPORTER_OTLP_ENDPOINT, `camflow-${name}`, log);
  const opts = { connection: producerConnection(config.REDIS_URL), prefix: config.QUEUE_PREFIX, ...bullTelemetry() };
  const queues = { cam: new Queue(queueNames.cam, opts), batch: new Queue(queueNames.batch, opts), train: new Queue(queueNames.train, opts), ingest: new Queue(queueNames.ingest, opts) };
  const flow = new FlowProducer(opts);
  const quiet = (err: Error) => log.debug({ err: err.message }, 'redis connection error');
  for (const q of Object.values(queues)) q.on('error', quiet);
  flow.on('error', quiet);
  const redis = await connectProducer(config.REDIS_URL);
  return {
    config,
    log,
    store,
    queues,
    flow,
    redis,
    async close() {
      // A connection that is down cannot QUIT: closing then just drops it.
      await Promise.all([...Object.values(queues).map((q) => q.close().catch(() => undefined)), flow.close().catch(() => undefined), redis.quit().catch(() => redis.disconnect())]);
      store.destroy();
      await stopTracing();
      restoreConsole();
    },
  };
}
