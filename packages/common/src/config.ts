import { z } from 'zod';
import { ConfigError } from './errors.js';
import { decimal } from './validate.js';

const boolish = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
/**
 * A whole number from the environment, written in decimal digits (`0x1F90`, `1e3`, `64_000` are refused, not read as
 * 8080, 1000 or NaN); numbers given directly (tests, `{ ...config, X: 2 }`) pass as they are.
 */
const envInt = (min: number, max = Number.MAX_SAFE_INTEGER) => decimal(z.number().int().min(min).max(max));

/** TensorFlow.js backends in ladder order (see `model/backend.ts`); `auto` walks the ladder. */
export const BACKEND_PREFERENCES = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendPreference = (typeof BACKEND_PREFERENCES)[number];
/** ONNX Runtime execution providers camflow knows, fastest first (see `model/ort-engine.ts`). */
export const EXECUTION_PROVIDERS = ['tensorrt', 'cuda', 'webgpu', 'cpu'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];
const providerList = new RegExp(`^\\s*(${EXECUTION_PROVIDERS.join('|')})(\\s*,\\s*(${EXECUTION_PROVIDERS.join('|')}))*\\s*$`, 'i');

/**
 * The single source of truth for environment configuration. Every variable camflow reads is here, with its
 * default. Credentials are read by the AWS SDK from the standard AWS_* variables.
 */
/** `MAX_SLIDE_PIXELS`' default, also for callers that submit without a config. */
export const DEFAULT_MAX_SLIDE_PIXELS = 2_000_000_000;

/** A Redis URL ioredis reads as meant: its scheme, a host, and a database that is a number (`/abc` became `SELECT NaN`). */
function isRedisUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return (u.protocol === 'redis:' || u.protocol === 'rediss:') && u.hostname !== '' && /^\/?\d*$/.test(u.pathname) && u.search === '';
  } catch {
    return false;
  }
}

function httpUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

export const configSchema = z.object({
  REDIS_URL: z
    .string()
    .url()
    .refine(isRedisUrl, 'a redis:// or rediss:// URL: host, optional port and database number (e.g. redis://host:6379/0; a password goes before the host); no Unix socket, no query string')
    .default('redis://127.0.0.1:6379'),
  /** BullMQ's key prefix; `{name}` (a hash tag) keeps every queue key in one Redis Cluster slot. */
  QUEUE_PREFIX: z.string().regex(/^(\{[a-zA-Z0-9_-]+\}|[a-zA-Z0-9_-]+)$/, 'letters, digits, _ or -, or such a name in braces (a Redis Cluster hash tag)').default('camflow'),
  S3_ENDPOINT: z.string().url().refine(httpUrl, 'an http:// or https:// URL').optional(),
  S3_BUCKET: z.string().regex(/^[a-z0-9][a-z0-9.-]{2,62}$/, 'an S3 bucket name (3-63 lowercase chars)').default('camflow'),
  S3_REGION: z.string().min(1).default('us-east-1'),
  S3_FORCE_PATH_STYLE: boolish.default(true),
  S3_MAX_SOCKETS: envInt(1).default(32),
  /**
   * Create `S3_BUCKET` when it does not exist. Off by default: a mistyped bucket name would otherwise start an
   * empty store (and `dataset add` would fill it) instead of failing with the name. `docker-compose.yml` sets it for
   * its own SeaweedFS; `camflow dev` and the demo create their bucket with their store.
   */
  S3_CREATE_BUCKET: boolish.default(false),
  /** `camflow submit s3://bucket/prefix` reads from this S3-compatible endpoint (default: AWS) with its own credentials. */
  SOURCE_S3_ENDPOINT: z.string().url().refine(httpUrl, 'an http:// or https:// URL').optional(),
  SOURCE_S3_REGION: z.string().min(1).default('us-east-1'),
  SOURCE_S3_FORCE_PATH_STYLE: boolish.default(true),
  SOURCE_AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
  SOURCE_AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  /** Keys per listing page (one `ingest` job each) of an `s3://` submission; S3 lists at most 1,000 per request. */
  SOURCE_S3_PAGE_SIZE: envInt(1, 1000).default(1000),
  /** Listing pages an ingest worker runs at once (pages of different batches; one batch lists page after page). */
  INGEST_CONCURRENCY: envInt(1, 64).default(2),
  /**
   * How far a listing may run ahead of the workers: a page waits (delayed 5 s, no attempt used) while its batch has
   * more unfinished chunks than this, so Redis holds at most about this many chunks of a batch however large the
   * prefix (400 × 256 images ≈ 100 k images ≈ 40 MB).
   */
  INGEST_AHEAD_CHUNKS: envInt(1).default(400),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  TF_BACKEND: z.enum(BACKEND_PREFERENCES).default('auto'),
  /** Training threads on the CPU backends (wasm, cpu): ONNX Runtime's intra-op threads, or the tfjs pool's; 0: every core. */
  TRAIN_THREADS: envInt(0, 256).default(0),
  /**
   * Who computes the training gradients on the CPU backends (wasm, cpu): `onnx` — the model's forward and backward
   * pass as one ONNX graph on ONNX Runtime's CPU kernels, every core (~3× the wasm pool here); `tfjs` — tfjs itself,
   * data-parallel over `TRAIN_THREADS`. `auto`: `onnx`. GPU and native backends always use tfjs.
   */
  TRAIN_GRADIENTS: z.enum(['auto', 'onnx', 'tfjs']).default('auto'),
  CAM_CONCURRENCY: envInt(1).default(2),
  CAM_CHUNK_SIZE: envInt(1, 10_000).default(256),
  /** Images per inference run (default: the engine's own, 256 on GPU providers, 32 on CPU). */
  CAM_INFER_BATCH: envInt(1, 1024).optional(),
  CAM_STORE_PARALLELISM: envInt(1, 256).default(16),
  /** Inference engine of the cam-workers: ONNX Runtime, or TensorFlow.js. */
  CAM_ENGINE: z.enum(['onnx', 'tfjs']).default('onnx'),
  /** ONNX Runtime intra-op threads per worker process (0: ONNX Runtime's default, all cores). */
  CAM_THREADS: envInt(0, 256).default(0),
  /** Comma-separated ONNX Runtime execution providers, e.g. "webgpu,cpu" (default: TensorRT/CUDA when installed, WebGPU on a hardware adapter, CPU). */
  CAM_EXECUTION_PROVIDERS: z.string().regex(providerList, `a comma-separated list of ${EXECUTION_PROVIDERS.join(', ')}`).optional(),
  CAM_ATTEMPTS: envInt(1, 100).default(8),
  CAM_BACKOFF_MS: envInt(1).default(1000),
  /** How long a worker's lock on a job lasts without renewal; a killed worker's job is recovered after it. */
  JOB_LOCK_MS: envInt(1).default(60_000),
  STALLED_INTERVAL_MS: envInt(1).default(30_000),
  /** Lock of a training job: long, since one CPU training step can take seconds. */
  TRAIN_LOCK_MS: envInt(1).default(300_000),
  SHUTDOWN_GRACE_MS: envInt(1).default(30_000),
  /**
   * Largest cell image, in pixels (default 4096 × 4096). Checked from the header at submission and again by the
   * worker, before any pixel is decoded: a pixel bomb is refused, never decoded.
   */
  MAX_IMAGE_PIXELS: envInt(1).default(16_777_216),
  /**
   * Largest smear field or whole-slide scan, in pixels (default 2 × 10⁹, e.g. 44,000²). Fields above
   * `MAX_FIELD_PIXELS` are read region by region (tiled TIFFs: only the tiles under each region are decoded).
   */
  MAX_SLIDE_PIXELS: envInt(1).default(DEFAULT_MAX_SLIDE_PIXELS),
  /** Fields up to this many pixels are decoded whole (and get Deep Zoom pyramids); larger ones go region by region. */
  MAX_FIELD_PIXELS: envInt(1).default(16_777_216),
  /** Side of a region's core when a field is read region by region (regions overlap by 1.6 cell diameters). */
  FIELD_TILE: envInt(1).default(4096),
  /**
   * Cells per `field-cells` job: a field's cells are localized in parts of this many, each a job of the `cam` queue,
   * so one field spreads over the worker pool (a 5312×2988 field of ~190 cells: 3 parts).
   */
  FIELD_CELLS_PER_JOB: envInt(1, 4096).default(64),
  /**
   * Decoded pixels per inference batch of a cam-worker. With three batches in flight per chunk, a worker's image
   * memory is about 3 × CAM_CONCURRENCY × CAM_BATCH_PIXELS × 12 bytes (decoded, heatmap, overlay): 1.2 GB by default.
   */
  CAM_BATCH_PIXELS: envInt(1).default(16_777_216),
  /** Largest file or archive member (uncompressed) in a submission; larger ones are refused with a reason. */
  MAX_FILE_BYTES: envInt(1).default(64 * 1024 ** 2),
  /** Largest total of an archive's uncompressed members; members past it are refused with a reason. */
  MAX_ARCHIVE_BYTES: envInt(1).default(16 * 1024 ** 3),
  /** Largest single uploaded file, and largest upload request, over HTTP. */
  MAX_UPLOAD_FILE_BYTES: envInt(1).default(64 * 1024 ** 2),
  MAX_UPLOAD_BYTES: envInt(1).default(2 * 1024 ** 3),
  MAX_UPLOAD_FILES: envInt(1).default(10_000),
  API_PORT: envInt(0, 65535).default(8080),
  /** Shared secret signing completion webhooks (`submit --webhook`): X-Camflow-Signature, HMAC-SHA256. */
  WEBHOOK_SECRET: z.string().min(16).optional(),
  /**
   * Send OpenTelemetry traces (OTLP over HTTP, JSON) to this collector, e.g. `http://otel-collector:4318`: a
   * submission's span, BullMQ's spans for every job it enqueues and for every worker that processes them, one trace
   * from submit to result. Unset: no tracing is loaded.
   */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().url().optional(),
  /** Worker processes serve Prometheus metrics at http://0.0.0.0:METRICS_PORT/metrics when set (the API serves /metrics itself). */
  METRICS_PORT: envInt(0, 65535).optional(),
  API_HOST: z.string().default('0.0.0.0'),
  /** Bearer token the HTTP API requires (health probes excepted). Unset: the API refuses to start unless API_INSECURE=true. */
  API_TOKEN: z.string().min(16, 'at least 16 characters').optional(),
  API_INSECURE: boolish.default(false),
});

export type Config = z.infer<typeof configSchema>;

/** Variables whose values are never printed (a Redis URL can carry a password). */
const SECRET_VARIABLES = new Set(['API_TOKEN', 'REDIS_URL', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'SOURCE_AWS_SECRET_ACCESS_KEY', 'WEBHOOK_SECRET']);

/**
 * Parse configuration from an environment. A missing or malformed variable throws a ConfigError whose message
 * is one line naming the variable.
 * @example const config = loadConfig(process.env);
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const known: Record<string, string | undefined> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const value = env[key];
    // An empty variable means "unset", as in shells and compose files.
    if (value !== undefined && value !== '') known[key] = value;
  }
  const result = configSchema.safeParse(known);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const variable = String(issue.path[0] ?? 'environment');
  const value = known[variable];
  // Secrets are never echoed, not even a wrong one: it may be a real credential pasted into the wrong variable.
  const got = value === undefined ? 'nothing' : SECRET_VARIABLES.has(variable) ? `a value of ${value.length} characters, not shown` : JSON.stringify(value);
  throw new ConfigError(variable, `${issue.message} (got ${got})`);
}

/** Where `s3://` submission sources are read from: SOURCE_S3_* and SOURCE_AWS_* (credentials only when both are set). */
export function s3SourceOptions(config: Config): { endpoint?: string; region: string; forcePathStyle: boolean; credentials?: { accessKeyId: string; secretAccessKey: string } } {
  return {
    ...(config.SOURCE_S3_ENDPOINT ? { endpoint: config.SOURCE_S3_ENDPOINT } : {}),
    region: config.SOURCE_S3_REGION,
    forcePathStyle: config.SOURCE_S3_FORCE_PATH_STYLE,
    ...(config.SOURCE_AWS_ACCESS_KEY_ID && config.SOURCE_AWS_SECRET_ACCESS_KEY ? { credentials: { accessKeyId: config.SOURCE_AWS_ACCESS_KEY_ID, secretAccessKey: config.SOURCE_AWS_SECRET_ACCESS_KEY } } : {}),
  };
}
