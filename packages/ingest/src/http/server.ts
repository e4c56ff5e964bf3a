import { randomUUID, timingSafeEqual } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import type { FlowProducer, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import {
  idSchema,
  batchCursorSchema,
  CamflowError,
  ConfigError,
  InvalidParameterError,
  StorageError,
  isRedisDown,
  NotFoundError,
  camOptionsSchema,
  evaluateForModel,
  compileGroupPattern,
  esc,
  stainPointingForBatch,
  withStainAudit,
  imageResultSchema,
  parseJsonLines,
  getModelManifest,
  getProduction,
  keys,
  listModels,
  parseOutputs,
  parseWith,
  publicReason,
  decimal,
  promoteByHand,
  namedModel,
  scheduleAfterManualPromotion,
  trainJobSchema,
  type Config,
  type Logger,
  type ObjectStore,
  isCellResult,
  formatForAccept,
  RESULT_FORMATS,
  createProcessMetrics,
  s3SourceOptions,
  batchPrioritySchema,
  webhookSubmitSchema,
  cancelTraining,
  getTrainingJob,
  listTrainingJobs,
  enqueueTraining,
  getRetrainingSchedule,
  removeRetrainingSchedule,
  scheduleRetraining,
  retrainingScheduleSchema,
  listDatasets,
  getDatasetManifest,
  connectedWorkers,
} from '@camflow/common/core';
import { submitBatch, KeyConflictError, NoModelError } from '../submit.js';
import { batchListingPage, batchProgress, batchStatus, stateText } from '../status.js';
import { repairBatch } from '../repair.js';
import { exportBatchResults } from '../results.js';
import { cancelBatch } from '../cancel.js';
import { removeDataset } from '../dataset-remove.js';
import { registerDataset } from '../dataset-register.js';
import { isViewerPage, registerViewer, viewerErrorPage } from './viewer.js';
import { Gauge } from 'prom-client';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { SourceError, safeMemberName, type SourceFile } from '../sources.js';

export interface ApiDeps {
  config: Config;
  store: ObjectStore;
  flow: FlowProducer;
  queues: { cam: Queue; batch: Queue; train: Queue; ingest?: Queue };
  redis: Redis;
  log: Logger;
}

const batchIdParams = z.object({ id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/) });
const versionParams = z.object({ version: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/) });
/**
 * A submission's fields: multipart form fields are text (`restrictToCell=false`, `outputs=json,heatmap`, `fraction=0.3`);
 * a JSON body may give the same values as JSON's own types (`false`, `["json", "heatmap"]`, `0.3`).
 */
const submitFields = z
  .object({
    target: z.string().max(128).optional(),
    fraction: decimal(z.number()).optional(),
    outputs: z.union([z.string().max(64), z.array(z.string().max(16)).max(8)]).optional(),
    precision: z.string().max(16).optional(),
    restrictToCell: z.union([z.boolean(), z.enum(['true', 'false'])]).optional(),
    kind: z.string().max(16).optional(),
    cellDiameter: decimal(z.number()).optional(),
    chunkSize: decimal(z.number().int().positive().max(10_000)).optional(),
    key: z.string().min(1).max(200).optional(),
    model: z.string().max(128).optional(),
    priority: batchPrioritySchema.optional(),
    webhook: webhookSubmitSchema.optional(),
  })
  .strict();

const SESSION_COOKIE = 'camflow_token';

/** The viewer's token from a `Cookie` header, if any. */
function sessionToken(header: string | undefined): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === SESSION_COOKIE) {
      try {
        return decodeURIComponent(value.join('='));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/**
 * The body of a route that takes JSON: a form or multipart body (whose fields the route would not see) is a 415
 * naming the content type to send, not a "received nothing" for its first field.
 */
function jsonBody(req: FastifyRequest): unknown {
  const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== '' && type !== 'application/json') {
    throw Object.assign(new InvalidParameterError('content-type', 'application/json (a JSON object body)', type), { statusCode: 415 });
  }
  return req.body ?? {};
}

/** A body of a type the route does not take (415), said with the route and what to send. */
function unsupportedMediaType(req: FastifyRequest, send = 'multipart/form-data (files) or application/json'): CamflowError {
  const type = String(req.headers['content-type'] ?? 'none').split(';')[0];
  const message = `content-type ${type} is not taken by ${req.method} ${req.url.split('?')[0]}: send ${send}`;
  return Object.assign(new CamflowError('UNSUPPORTED_MEDIA_TYPE', message), { statusCode: 415 });
}

/** The fields a multipart submission may carry (longer values are refused, not truncated). */
const MAX_FIELD_BYTES = 4096;

function httpStatus(error: unknown): number {
  const explicit = (error as { statusCode?: number }).statusCode;
  if (error instanceof CamflowError && explicit) return explicit;
  if ((error as { code?: string }).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return 415;
  if (error instanceof InvalidParameterError || error instanceof NoModelError || error instanceof SourceError) return 400;
  if (error instanceof NotFoundError) return 404;
  if (error instanceof KeyConflictError) return 409;
  if (isRedisDown(error) || error instanceof StorageError) return 503;
  const code = (error as { code?: string; statusCode?: number }).code;
  if (code === 'FST_REQ_FILE_TOO_LARGE' || code === 'FST_PARTS_LIMIT' || code === 'FST_FILES_LIMIT' || code === 'FST_FIELDS_LIMIT') return 413;
  if (code === 'FST_PROTO_VIOLATION' || code === 'FST_INVALID_MULTIPART_CONTENT_TYPE') return 400;
  const status = (error as { statusCode?: number }).statusCode;
  return status && status >= 400 && status < 600 ? status : 500;
}

const errorName = (status: number) => ({ 400: 'bad_request', 404: 'not_found', 409: 'conflict', 413: 'payload_too_large', 415: 'unsupported_media_type', 503: 'unavailable' })[status] ?? 'error';

/** Read a multipart submission: files spooled into `spool` (bounded by the upload limits), fields by name. */
async function receiveUpload(req: FastifyRequest, spool: string, config: Config): Promise<{ files: SourceFile[]; paths: string[]; fields: Record<string, string> }> {
  const files: SourceFile[] = [];
  const paths: string[] = [];
  const fields: Record<string, string> = {};
  let total = 0;
  const tooLarge = (message: string) => Object.assign(new Error(message), { statusCode: 413, code: 'FST_REQ_FILE_TOO_LARGE' });
  try {
    for await (const part of req.parts()) {
      if (part.type === 'file') {
        const path = join(spool, String(files.length));
        await pipeline(part.file, createWriteStream(path));
        if (part.file.truncated) throw tooLarge(`file ${JSON.stringify(part.filename)} exceeds ${config.MAX_UPLOAD_FILE_BYTES} bytes`);
        total += (await stat(path)).size;
        if (total > config.MAX_UPLOAD_BYTES) throw tooLarge(`request exceeds ${config.MAX_UPLOAD_BYTES} bytes`);
        // The name as sent, folders kept (`Parasitized/cell.png`: eval reads the class from it), never above the root.
        // Every name is cleaned, the part's own name as much as its filename: it becomes a path under a spool folder.
        files.push({ name: safeMemberName(part.filename ?? '') || safeMemberName(part.fieldname) || `file-${files.length + 1}`, read: () => readFile(path) });
        paths.push(path);
      } else {
        // Image bytes appended as a text value (`FormData.append('files', string)`): a file part is what carries them.
        if (part.fieldname === 'files') throw new InvalidParameterError('files', 'file parts (each with a filename: `-F files=@cell.png`, `FormData.append("files", blob, "cell.png")`)', 'a text value');
        if ((part as { valueTruncated?: boolean }).valueTruncated) throw tooLarge(`field ${JSON.stringify(part.fieldname)} exceeds ${MAX_FIELD_BYTES} bytes`);
        // A field sent twice (`target=a`, `target=b`) has no one meaning: refused, never the last one silently.
        if (Object.hasOwn(fields, part.fieldname)) throw new InvalidParameterError(`fields.${part.fieldname}`, 'one value', `${JSON.stringify(fields[part.fieldname])} and ${JSON.stringify(String(part.value))}`);
        fields[part.fieldname] = String(part.value);
      }
    }
  } catch (error) {
    if (httpStatus(error) !== 500) throw error;
    // busboy's parse errors (a cut body, a broken boundary or part header) are the client's.
    throw new InvalidParameterError('body', 'well-formed multipart/form-data', (error as Error).message);
  }
  // Results (and a dataset's images) are told apart by name: two files under one name could not be (nor can a folder hold them).
  const seen = new Set<string>();
  for (const file of files) {
    if (seen.has(file.name)) throw new InvalidParameterError('files', 'each file name once (results are matched by name; put same-named files in folders: `filename=slide-1/cell.png`)', `${file.name} twice`);
    seen.add(file.name);
  }
  return { files, paths, fields };
}

/**
 * The ingest HTTP API (fastify): submit (multipart upload), batch status and results (streamed JSONL), models,
 * promotion, training; `/healthz`, `/readyz`, `/metrics`. Every route but the probes requires the bearer token.
 */
export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const { config, store } = deps;
  if (!config.API_TOKEN && !config.API_INSECURE) {
    throw new ConfigError('API_TOKEN', 'required for the HTTP API (or set API_INSECURE=true for local use)');
  }
  // maxParamLength: a batch or model id may be 128 characters (fastify's default, 100, answered 414 in its own shape).
  const app = Fastify({ loggerInstance: deps.log.child({ component: 'api' }) as unknown as FastifyBaseLogger, bodyLimit: 1024 * 1024, genReqId: () => randomUUID(), routerOptions: { maxParamLength: 256 } });
  await app.register(multipart, { preservePath: true, limits: { fileSize: config.MAX_UPLOAD_FILE_BYTES, files: config.MAX_UPLOAD_FILES, fields: 20, fieldSize: MAX_FIELD_BYTES } });

  const expected = config.API_TOKEN ? Buffer.from(`Bearer ${config.API_TOKEN}`) : undefined;
  const matches = (bearer: string) => {
    // The scheme is case-insensitive (RFC 9110: `bearer x` is `Bearer x`); the token is compared in constant time.
    const got = Buffer.from(bearer.replace(/^bearer(?= )/i, 'Bearer'));
    return expected !== undefined && got.length === expected.length && timingSafeEqual(got, expected);
  };
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const path = req.url.split('?')[0]!;
    if (!expected || path === '/healthz' || path === '/readyz' || path === '/metrics' || path === '/login') return;
    // The bearer header (API clients), or the viewer's HttpOnly cookie holding the same token (browsers).
    const cookie = sessionToken(req.headers.cookie);
    if (matches(req.headers.authorization ?? '') || (cookie !== undefined && matches(`Bearer ${cookie}`))) return;
    // Pages send a browser to the login form; the dashboard's JSON API answers 401 like every other API route.
    const page = path === '/viewer' || path.startsWith('/viewer/') || path === '/admin/queues' || (path.startsWith('/admin/queues/') && !path.startsWith('/admin/queues/api/'));
    if (page) return reply.code(303).header('location', `/login?next=${encodeURIComponent(req.url)}`).send();
    await reply.code(401).header('www-authenticate', 'Bearer realm="camflow"').send({ error: 'unauthorized', message: 'missing or wrong bearer token' });
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 8192 }, (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))));
  const loginForm = (next: string, wrong: boolean) =>
    `<!doctype html><meta charset="utf-8"><title>camflow — sign in</title><link rel="icon" href="data:,"><style>body{font:15px system-ui,sans-serif;margin:15vh auto;max-width:360px}input{font:inherit;width:100%;margin:6px 0;padding:6px}</style><h1>camflow</h1>${wrong ? '<p style="color:#b00">That token is not the API token.</p>' : ''}<form method="post" action="/login"><label>API token <input type="password" name="token" autofocus required></label><input type="hidden" name="next" value="${esc(next)}"><button type="submit">Sign in</button></form>`;
  const safeNext = (next: unknown) => (typeof next === 'string' && /^\/(viewer|admin\/queues)(\/|$|\?)/.test(next) ? next : '/viewer');
  app.get('/login', async (req, reply) => reply.type('text/html; charset=utf-8').send(loginForm(safeNext((req.query as Record<string, unknown>)?.next), false)));
  app.post('/login', async (req, reply) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const next = safeNext(body.next);
    if (!expected) return reply.code(303).header('location', next).send();
    if (typeof body.token !== 'string' || !matches(`Bearer ${body.token}`)) return reply.code(401).type('text/html; charset=utf-8').send(loginForm(next, true));
    return reply
      .code(303)
      .header('set-cookie', `${SESSION_COOKIE}=${encodeURIComponent(body.token)}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200`)
      .header('location', next)
      .send();
  });
  registerViewer(app, store);
  app.setErrorHandler(async (error, req, reply) => {
    const status = httpStatus(error);
    // Server-side failures say what failed in the log, never in the response: no internal address or path leaves.
    let message: string;
    if (status === 413) message = `upload too large: ${(error as Error).message} (limits: ${config.MAX_UPLOAD_FILE_BYTES} bytes per file, ${config.MAX_UPLOAD_BYTES} per request, ${MAX_FIELD_BYTES} bytes per field)`;
    else if (status === 503) message = `${error instanceof StorageError ? 'the object store' : 'Redis'} is unavailable; retry later`;
    else if (status >= 500) message = `internal error; see the server log for request ${req.id}`;
    else if ((error as { code?: string }).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') message = unsupportedMediaType(req).message;
    // A source store's refusal names where it was asked: over HTTP without its address (as `status` shows it).
    else if (error instanceof SourceError) message = publicReason(error);
    else message = (error as Error).message;
    if (status >= 500) deps.log.error({ err: error, reqId: req.id }, 'request failed');
    if (isViewerPage(req.url)) return reply.code(status).type('text/html; charset=utf-8').send(viewerErrorPage(status, message));
    await reply.code(status).send({ error: errorName(status), message, ...(error instanceof InvalidParameterError ? { field: error.field } : {}), ...(error instanceof KeyConflictError ? { batchId: error.batchId } : {}) });
  });

  // Fastify's own 404 body has another shape ({message, error: "Not Found", statusCode}): one shape for every error.
  app.setNotFoundHandler(async (req, reply) => reply.code(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]} (the API is under /v1: see the README's HTTP API table)` }));

  // Probes and scrapes come every few seconds: their requests are not logged at info (a failed readiness check is, at warn).
  const probe = { logLevel: 'warn' as const };
  app.get('/healthz', probe, async () => ({ ok: true }));
  app.get('/readyz', probe, async (req, reply) => {
    // Each probe answers within 2 s, whatever the client's own retry settings.
    const check = async (probe: () => Promise<unknown>) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), 2000)));
      try {
        await Promise.race([probe(), timeout]);
        return 'ok' as const;
      } catch {
        return 'unreachable' as const;
      } finally {
        clearTimeout(timer);
      }
    };
    const [redis, storage] = await Promise.all([check(() => deps.redis.ping()), check(() => store.head(keys.productionChannel()))]);
    const ok = redis === 'ok' && storage === 'ok';
    if (!ok) req.log.warn({ redis, storage }, 'not ready: a service this API needs does not answer');
    return reply.code(ok ? 200 : 503).send({ ok, redis, storage });
  });
  // Prometheus: queue depth per state and the production model, read from Redis and S3 at each scrape, plus this
  // process's own metrics. Workers serve job durations, failures, stalls and images on METRICS_PORT.
  const metrics = createProcessMetrics('api');
  new Gauge({
    name: 'camflow_queue_jobs',
    help: 'Jobs per queue and state',
    labelNames: ['queue', 'state'],
    registers: [metrics.registry],
    async collect() {
      this.reset();
      for (const [name, q] of Object.entries(deps.queues)) {
        const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed', 'waiting-children');
        for (const [state, n] of Object.entries(counts)) this.set({ queue: name, state }, n);
      }
    },
  });
  new Gauge({
    name: 'camflow_queue_workers',
    help: 'Workers connected to each queue (absent when the Redis server refuses CLIENT LIST); 0 with jobs waiting means nothing moves',
    labelNames: ['queue'],
    registers: [metrics.registry],
    async collect() {
      this.reset();
      for (const [name, q] of Object.entries(deps.queues)) {
        const n = await connectedWorkers(q);
        if (n !== undefined) this.set({ queue: name }, n);
      }
    },
  });
  new Gauge({
    name: 'camflow_production_model',
    help: 'The production model version (value 1)',
    labelNames: ['version'],
    registers: [metrics.registry],
    async collect() {
      this.reset();
      const production = await getProduction(store);
      if (production) this.set({ version: production.version }, 1);
    },
  });
  app.get('/metrics', probe, async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));

  // The queues' dashboard (bull-board), behind the same token as everything else (bearer, or the viewer's cookie).
  const board = new FastifyAdapter();
  createBullBoard({ queues: Object.values(deps.queues).map((q) => new BullMQAdapter(q)), serverAdapter: board, options: { uiConfig: { boardTitle: 'camflow queues' } } });
  board.setBasePath('/admin/queues');
  await app.register(board.registerPlugin(), { prefix: '/admin/queues' });
  // bull-board's page links Google Fonts: a lab's network may have no way out, and a dashboard need not tell anyone
  // it was opened. Its own CSS falls back to the system's sans-serif.
  app.addHook('onSend', async (req, reply, payload) => {
    // By route, not by the raw URL (`/admin/%71ueues` is routed to the same page).
    if (!req.routeOptions.url?.startsWith('/admin/queues') || typeof payload !== 'string' || !String(reply.getHeader('content-type') ?? '').startsWith('text/html')) return payload;
    return payload.replace(/<link\b[^>]*\bhref\s*=\s*["']?(?:https?:)?\/\/[^>]*>/gi, '');
  });

  // `where`: what the client sent (`fields` of a form, the JSON `body`), so an error names the field as sent.
  const submitOptions = (f: z.infer<typeof submitFields>, where: 'fields' | 'body') =>
    parseWith(
      camOptionsSchema,
      { ...(f.target ? { target: f.target } : {}), ...(f.fraction !== undefined ? { fraction: f.fraction } : {}), ...(f.outputs !== undefined ? { outputs: parseOutputs(Array.isArray(f.outputs) ? (f.outputs.length ? f.outputs.join(',') : 'none') : f.outputs, `${where}.outputs`) } : {}), ...(f.precision ? { precision: f.precision } : {}), ...(f.restrictToCell !== undefined ? { restrictToCell: f.restrictToCell === true || f.restrictToCell === 'true' } : {}), ...(f.kind ? { kind: f.kind } : {}), ...(f.cellDiameter !== undefined ? { cellDiameter: f.cellDiameter } : {}) },
      where,
    );
  const submitFrom = (source: string | Awaited<ReturnType<typeof receiveUpload>>['files'], f: z.infer<typeof submitFields>, where: 'fields' | 'body') =>
    submitBatch({
      store,
      flow: deps.flow,
      redis: deps.redis,
      queues: deps.queues,
      prefix: config.QUEUE_PREFIX,
      source,
      options: submitOptions(f, where),
      optionField: (name) => `${where}.${name}`,
      chunkSize: f.chunkSize ?? config.CAM_CHUNK_SIZE,
      limits: { maxFileBytes: config.MAX_FILE_BYTES, maxArchiveBytes: config.MAX_ARCHIVE_BYTES },
      s3Source: s3SourceOptions(config),
      listingPageSize: config.SOURCE_S3_PAGE_SIZE,
      attempts: config.CAM_ATTEMPTS,
      backoffMs: config.CAM_BACKOFF_MS,
      maxPixels: config.MAX_IMAGE_PIXELS,
      maxSlidePixels: config.MAX_SLIDE_PIXELS,
      maxFieldPixels: config.MAX_FIELD_PIXELS,
      log: deps.log,
      ...(f.key ? { idempotencyKey: f.key } : {}),
      ...(f.model ? { modelVersion: f.model } : {}),
      ...(f.priority ? { priority: f.priority } : {}),
      ...(f.webhook ? { webhook: f.webhook } : {}),
    });
  // JSON `{"source": "s3://bucket/prefix", …the same fields}`: a prefix of the S3 source store (SOURCE_S3_*). Only
  // s3:// sources: an API client never names a path on the server.
  const s3Submit = submitFields.extend({ source: z.string().regex(/^s3:\/\//, 'an s3://bucket/prefix URL').max(1024) }).strict();

  app.post('/v1/batches', async (req, reply) => {
    if ((req.headers['content-type'] ?? '').toLowerCase().startsWith('application/json')) {
      const { source, ...f } = parseWith(s3Submit, req.body ?? {}, 'body');
      const info = await submitFrom(source, f, 'body');
      return reply.code(info.existing ? 200 : 202).header('location', `/v1/batches/${info.batchId}`).send(info);
    }
    // A body fastify parsed as something else (text/plain, a urlencoded form): the same 415 as a type it has no parser for.
    if (!req.isMultipart()) throw unsupportedMediaType(req);
    // Uploaded files are spooled to a private temporary folder, not held in memory: a request's memory is a few
    // files in flight whatever its size. The folder is removed when the request ends, however it ends.
    const spool = await mkdtemp(join(tmpdir(), 'camflow-upload-'));
    try {
      const { files, fields } = await receiveUpload(req, spool, config);
      if (files.length === 0) throw new InvalidParameterError('files', 'at least one uploaded file', 0);
      // An archive is read by `camflow submit ARCHIVE` (or from S3), not unpacked from a request: refused whole, not
      // taken and answered later with an "unsupported-format" line.
      const archive = files.find((file) => /\.(zip|tar|tgz|tar\.gz)$/i.test(file.name));
      if (archive) throw new InvalidParameterError('files', 'image files (PNG, JPEG, TIFF, WebP); an archive is read by `camflow submit ARCHIVE` or from an S3 prefix, or upload the images in it', archive.name);
      const f = parseWith(submitFields, fields, 'fields');
      const info = await submitFrom(files, f, 'fields');
      return reply.code(info.existing ? 200 : 202).header('location', `/v1/batches/${info.batchId}`).send(info);
    } finally {
      await rm(spool, { recursive: true, force: true });
    }
  });

  app.post('/v1/batches/:id/cancel', async (req) => {
    const { id } = parseWith(batchIdParams, req.params, 'params');
    return cancelBatch(store, deps.queues.batch, id);
  });

  app.get('/v1/batches/:id', async (req) => {
    const { id } = parseWith(batchIdParams, req.params, 'params');
    const status = await batchStatus(store, deps.queues.batch, id, { cam: deps.queues.cam, ingest: deps.queues.ingest });
    if (status.state === 'unknown') throw new NotFoundError('batch', id);
    return status;
  });

  app.get('/v1/batches/:id/eval', async (req, reply) => {
    const { id } = parseWith(batchIdParams, req.params, 'params');
    // Truth boxes are not uploaded here: localization is scored against the parasite stain in the originals' pixels
    // (`truth=stain`, the default) or not at all (`truth=none`).
    const query = parseWith(z.object({ groupPattern: z.string().max(200).optional(), truth: z.enum(['auto', 'stain', 'none']).default('auto') }).strict(), req.query ?? {}, 'query');
    const status = await batchProgress(store, deps.queues.batch, id);
    if (status.state === 'unknown') throw new NotFoundError('batch', id);
    if (status.state !== 'completed') return reply.code(409).header('retry-after', '5').send({ error: 'not_ready', message: `batch ${id} is ${stateText(status)}` });
    const model = await getModelManifest(store, status.info!.modelVersion);
    // The same default patient pattern as the CLI's eval and `dataset add`.
    const group = compileGroupPattern(query.groupPattern, 'query.groupPattern');
    const key = keys.resultsJsonl(id);
    const results = parseJsonLines((await store.get(key)).toString('utf8'), imageResultSchema, key);
    const groupOption = { groupPattern: group };
    const { positiveClass, ...report } = evaluateForModel(results, model, groupOption);
    // Nothing scorable is not a score of 0: say what eval needs.
    if (report.classification.images === 0) {
      throw new InvalidParameterError('batch', `results named <class>/<file> with the model's classes (${model.classNames.join(', ')}): submit a labelled folder, or upload with filenames like ${model.classNames[0]}/cell.png`, `${id} (${results.length} results, none named so)`);
    }
    if (query.truth === 'none') return report;
    // The audit reads every positive image's positive-class CAM: a batch localized with `target: predicted` has one only
    // where the model said positive, so its misses (the cells the audit is for) would drop out unsaid.
    const target = status.info!.options.target;
    if (target !== 'all' && target !== positiveClass) {
      const why = `the stain audit needs every image's ${positiveClass} CAM: this batch was localized with target ${target}, ${target === 'predicted' ? `which computes it only where the model said ${positiveClass}` : `whose CAM is another class's`}; submit with target=all`;
      if (query.truth === 'stain') throw new InvalidParameterError('query.truth', `none for a batch not localized with target=all (${why})`, query.truth);
      return { ...report, stainSkipped: why };
    }
    const ok = results.filter(isCellResult);
    return withStainAudit(report, results, model, await stainPointingForBatch(store, id, ok, positiveClass), groupOption);
  });

  app.post('/v1/batches/:id/repair', async (req) => {
    const { id } = parseWith(batchIdParams, req.params, 'params');
    return repairBatch({ store, flow: deps.flow, queues: deps.queues, batchId: id, log: deps.log });
  });

  const listQuery = z.object({ limit: decimal(z.number().int().min(1).max(1000)).default(50), before: batchCursorSchema.optional() }).strict();
  app.get('/v1/batches', async (req) => {
    const { limit, before } = parseWith(listQuery, req.query ?? {}, 'query');
    // `next`: the cursor for the older batches (`?before=<next>`), given while more may follow.
    return batchListingPage(store, deps.queues.batch, limit, before);
  });

  const resultsQuery = z.object({ format: z.enum(RESULT_FORMATS).optional() }).strict();
  app.get('/v1/batches/:id/results', async (req, reply) => {
    const { id } = parseWith(batchIdParams, req.params, 'params');
    const format = parseWith(resultsQuery, req.query ?? {}, 'query').format ?? formatForAccept(req.headers.accept);
    const out = await exportBatchResults(store, id, format);
    if (!out) {
      const status = await batchProgress(store, deps.queues.batch, id);
      if (status.state === 'unknown') throw new NotFoundError('batch', id);
      return reply.code(409).header('retry-after', '5').send({ error: 'not_ready', message: `batch ${id} is ${stateText(status)}`, chunks: status.chunks });
    }
    // `?format=` wins over `Accept`; JSONL by default. Streamed from S3, a line at a time.
    return reply.type(out.type).header('content-disposition', `inline; filename="${id}.${format}"`).send(out.body);
  });

  app.get('/v1/models', async () => {
    const [models, production] = await Promise.all([listModels(store), getProduction(store)]);
    return { production: production ?? null, models };
  });

  app.get('/v1/models/:version', async (req) => {
    const { version } = parseWith(versionParams, req.params, 'params');
    return namedModel(store, version);
  });

  app.post('/v1/models/:version/promote', async (req) => {
    const { version } = parseWith(versionParams, req.params, 'params');
    // It takes no options: a body that names some (`{"channel": "staging"}`) is refused, never ignored.
    parseWith(z.object({}).strict(), req.body ?? {}, 'body');
    const { channel, previous, warnings } = await promoteByHand(store, await namedModel(store, version));
    const schedule = await scheduleAfterManualPromotion(deps.queues.train);
    return { ...channel, previous, warnings, ...(schedule ? { schedule } : {}) };
  });

  app.post('/v1/train', async (req, reply) => {
    // Strict: a mistyped field ("epoch") is refused, never dropped for its default.
    const data = parseWith(trainJobSchema.strict(), jsonBody(req), 'body');
    await getDatasetManifest(store, data.dataset, data.datasetVersion); // 404 naming the dataset, before anything is queued
    const job = await enqueueTraining(deps.queues.train, data);
    return reply.code(202).header('location', `/v1/train/${job.id}`).send({ jobId: job.id });
  });

  app.get('/v1/train', async (req) => {
    const { limit } = parseWith(z.object({ limit: decimal(z.number().int().positive().max(500)).default(20) }).strict(), req.query ?? {}, 'query');
    return { jobs: await listTrainingJobs(deps.queues.train, limit) };
  });

  app.get('/v1/train/:jobId', async (req) => {
    const { jobId } = parseWith(z.object({ jobId: z.string().min(1).max(200) }), req.params, 'params');
    return getTrainingJob(deps.queues.train, jobId, { redis: deps.redis, prefix: config.QUEUE_PREFIX });
  });

  app.get('/v1/datasets', async () => ({ datasets: await listDatasets(store) }));
  // `camflow dataset add` over HTTP: a multipart upload of labelled images, each named `<class>/<image>` (deeper folders
  // kept: `<class>/<patient>/<image>`), fields `size`, `classes` (a comma list), `groupPattern`. 201 with the snapshot
  // (200 when the same images were registered before), in the CLI's `--json` shape.
  const datasetFields = z.object({ size: decimal(z.number()).optional(), classes: z.string().max(4096).optional(), groupPattern: z.string().max(200).optional() }).strict();
  app.post('/v1/datasets/:name', async (req, reply) => {
    const { name } = parseWith(z.object({ name: idSchema }), req.params, 'params');
    if (!req.isMultipart()) throw unsupportedMediaType(req, 'multipart/form-data: the images, each named <class>/<image>');
    const spool = await mkdtemp(join(tmpdir(), 'camflow-dataset-'));
    const tree = resolve(spool, 'labelled');
    try {
      const { files, paths, fields } = await receiveUpload(req, spool, config);
      if (files.length === 0) throw new InvalidParameterError('files', 'the labelled images, each named <class>/<image> (`-F files=@a.png;filename=Parasitized/a.png`)', 0);
      const f = parseWith(datasetFields, fields, 'fields');
      // The spooled files laid out as the folder they name. Names are cleaned (`safeMemberName`: no `..`, no root), and
      // each path is checked to lie under the folder all the same: a request never writes elsewhere.
      for (const [i, file] of files.entries()) {
        const to = resolve(tree, file.name);
        if (!to.startsWith(tree + sep)) throw new InvalidParameterError('files', 'names inside the upload (<class>/<image>)', file.name);
        // A name that is a file and a folder at once is the client's; anything else (a full disk) is the server's.
        const clash = (error: NodeJS.ErrnoException) => {
          if (error.code === 'EEXIST' || error.code === 'ENOTDIR' || error.code === 'EISDIR') throw new InvalidParameterError('files', 'names that are files, never also a folder of other files', file.name);
          throw error;
        };
        await mkdir(dirname(to), { recursive: true }).catch(clash);
        await rename(paths[i]!, to).catch(clash);
      }
      const registration = await registerDataset({
        store,
        redis: deps.redis,
        prefix: config.QUEUE_PREFIX,
        name,
        folder: tree,
        options: { ...(f.size !== undefined ? { size: f.size } : {}), ...(f.classes ? { classes: f.classes.split(',').map((c) => c.trim()) } : {}), ...(f.groupPattern ? { groupPattern: f.groupPattern } : {}) },
        names: { size: 'fields.size', classes: 'fields.classes', groupPattern: 'fields.groupPattern' },
        maxPixels: config.MAX_IMAGE_PIXELS,
        command: 'POST /v1/datasets',
        log: deps.log,
      }).catch((error: unknown) => {
        // What addDataset says of "the folder" is the upload here; the server's temporary path never leaves.
        if (!(error instanceof InvalidParameterError)) throw error;
        const plain = (text: string) => text.split(tree).join('the upload');
        throw new InvalidParameterError(error.field === 'folder' ? 'files' : error.field, plain(error.expected), typeof error.actual === 'string' ? plain(error.actual) : error.actual);
      });
      return reply.code(registration.created ? 201 : 200).send(registration);
    } finally {
      await rm(spool, { recursive: true, force: true });
    }
  });
  // A dataset, or one version (`?version=`): 409 naming what still needs it (the production model, the schedule, a job).
  app.delete('/v1/datasets/:name', async (req) => {
    const { name } = parseWith(z.object({ name: idSchema }), req.params, 'params');
    const { version } = parseWith(z.object({ version: idSchema.optional() }).strict(), req.query ?? {}, 'query');
    return removeDataset(store, deps.queues.train, { redis: deps.redis, prefix: config.QUEUE_PREFIX, command: 'DELETE /v1/datasets' }, name, version);
  });

  // The one retraining schedule: seen, set (the training job's fields, strict, plus `cron` and `tz`), removed.
  app.get('/v1/schedule', async () => ({ schedule: (await getRetrainingSchedule(deps.queues.train)) ?? null }));
  app.put('/v1/schedule', async (req) => {
    const body = jsonBody(req);
    // As the CLI's `schedule`: every run trains the dataset's latest version (a pinned one would be skipped as unchanged
    // every night after the first). One strict shape for the fields' names, so a typo is told every field it may be.
    const trainingFields = trainJobSchema.omit({ datasetVersion: true, skipIfUnchanged: true });
    parseWith(trainingFields.extend({ cron: z.unknown(), tz: z.unknown() }).partial().strict(), body, 'body');
    const { cron, tz, ...training } = body as Record<string, unknown>;
    const when = parseWith(retrainingScheduleSchema, { cron, tz: tz ?? 'UTC' }, 'body');
    const data = parseWith(trainingFields.strict(), training, 'body');
    await getDatasetManifest(store, data.dataset); // 404 naming the dataset, before anything is scheduled
    return scheduleRetraining(deps.queues.train, when.cron, when.tz, data);
  });
  app.delete('/v1/schedule', async () => ({ removed: await removeRetrainingSchedule(deps.queues.train) }));

  app.post('/v1/train/:jobId/cancel', async (req) => {
    const { jobId } = parseWith(z.object({ jobId: z.string().min(1).max(200) }), req.params, 'params');
    return cancelTraining(deps.queues.train, deps.redis, config.QUEUE_PREFIX, jobId);
  });

  return app;
}
