import { FlowProducer, Queue } from 'bullmq';
import {
  ObjectStore,
  bullConnection,
  checkRedis,
  createLogger,
  createRedis,
  loadConfig,
  queueNames,
  type Config,
  type Logger,
} from '@camflow/common';

/** Everything a command needs, built once from the environment (the composition root). */
export interface Context {
  config: Config;
  log: Logger;
  store: ObjectStore;
  queues: { cam: Queue; batch: Queue; train: Queue };
  flow: FlowProducer;
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

export async function createContext(env: Record<string, string | undefined> = process.env, name = 'camflow'): Promise<Context> {
  const config = loadConfig(env);
  const log = createLogger({ level: config.LOG_LEVEL, name });
  const store = storeFromConfig(config, env);
  const connection = bullConnection(config.REDIS_URL);
  const opts = { connection, prefix: config.QUEUE_PREFIX };
  const probe = createRedis(config.REDIS_URL);
  await checkRedis(probe, log);
  await probe.quit();
  const queues = { cam: new Queue(queueNames.cam, opts), batch: new Queue(queueNames.batch, opts), train: new Queue(queueNames.train, opts) };
  const flow = new FlowProducer(opts);
  return {
    config,
    log,
    store,
    queues,
    flow,
    async close() {
      await Promise.all([...Object.values(queues).map((q) => q.close()), flow.close()]);
      store.destroy();
    },
  };
}
