import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { cancelTraining, getDatasetManifest, CamflowError, ConfigError, InvalidParameterError, NotFoundError, connectProducer, errorMessage, getProduction, loadConfig, listModels, getModelManifest, promote, startRedis, startS3, camOptionsSchema, parseWith, outputSchema, RESULT_FORMATS, s3SourceOptions, type ResultFormat } from '@camflow/common';
import { addDataset, batchStatus, buildApi, cancelBatch, batchListing, exportBatchResults, repairBatch, submitBatch } from '@camflow/ingest';
import { mkdir } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { enqueueTraining, scheduleRetraining } from '@camflow/trainer';
import { createContext, ensureStore, type Context } from './context.js';
import { closeOnSignals, startWorkers, workerRoles, type WorkerRole } from './workers.js';
import { waitForJob, waitForBatch } from './wait.js';
import { runDemo } from './demo.js';
import { runEval, type EvalOptions } from './eval-command.js';
import { ALL_OPTIONS, COMMANDS, commandHelp, globalUsage, optionProblem, suggest } from './commands.js';

// The AWS SDK prints a 7-line notice on every command under Node 20 (its releases after January 2027 need Node 22):
// noise for each CLI call; the README says so once. A user who sets the variable keeps their choice.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

type StringOption =
  | 'out' | 'train-images' | 'held-out' | 'epochs' | 'seed' | 'data-dir' | 'size' | 'classes' | 'group-pattern' | 'model' | 'target'
  | 'fraction' | 'outputs' | 'precision' | 'chunk-size' | 'kind' | 'cell-diameter' | 'key' | 'boxes' | 'truth' | 'limit' | 'format'
  | 'dataset' | 'version' | 'preset' | 'lr' | 'batch-size' | 'split' | 'val-fraction' | 'patience' | 'cron' | 'tz' | 'cancel' | 'priority' | 'webhook';
type Values = { [K in StringOption]?: string } & { json: boolean; help: boolean; wait: boolean; 'no-promote': boolean; 'no-cell-mask': boolean };

const BOOLEAN_OPTIONS = new Set(['json', 'help', 'wait', 'no-promote', 'no-cell-mask']);
const PARSE_OPTIONS = Object.fromEntries(
  ['json', 'help', ...ALL_OPTIONS].map((name) => [name, BOOLEAN_OPTIONS.has(name) ? { type: 'boolean' as const, default: false, ...(name === 'help' ? { short: 'h' } : {}) } : { type: 'string' as const }]),
);

/** Parse argv; an unknown option is a usage error that names it and suggests what was meant. */
function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, allowPositionals: true, options: PARSE_OPTIONS });
  } catch (error) {
    const unknown = /Unknown option '-{1,2}([^']+)'/.exec((error as Error).message)?.[1];
    const command = argv.find((a) => !a.startsWith('-'));
    if (unknown && command && COMMANDS[command]) throw new CamflowError('USAGE', optionProblem(command, [unknown])!);
    if (unknown) throw new CamflowError('USAGE', `unknown option --${unknown} (see camflow --help)`);
    const missing = /Option '--([^ ']+)[^']*' argument missing/.exec((error as Error).message)?.[1];
    if (missing) throw new CamflowError('USAGE', `--${missing} needs a value (see camflow ${command && COMMANDS[command] ? `${command} ` : ''}--help)`);
    throw new CamflowError('USAGE', `${(error as Error).message.split('. ')[0]} (see camflow --help)`);
  }
}

/** 75 → "1 min 15 s", 4000 → "1 h 7 min". */
function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

const print = (json: boolean, value: unknown, human: string) => process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${human}\n`);

function progressBar(label: string) {
  const tty = process.stderr.isTTY;
  let last = 0;
  return (done: number, total: number | undefined, etaSeconds?: number) => {
    const now = Date.now();
    if (done !== total && now - last < 200) return;
    last = now;
    if (total === undefined) {
      if (tty) process.stderr.write(`\r${label} ${done} entries`);
      return;
    }
    const width = 30;
    const filled = total ? Math.round((done / total) * width) : width;
    const line = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}${etaSeconds !== undefined && done !== total ? `, about ${formatDuration(etaSeconds)} left` : ''}`;
    if (tty) process.stderr.write(`\r${line}${done === total ? '\n' : ''}`);
    else if (done === total) process.stderr.write(`${line}\n`);
  };
}

async function withContext<T>(fn: (ctx: Context) => Promise<T>): Promise<T> {
  const ctx = await createContext(process.env, 'cli');
  try {
    await ensureStore(ctx.store, ctx.config);
    return await fn(ctx);
  } finally {
    ctx.log.debug({ maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024) }, 'command finished');
    await ctx.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv) as unknown as { values: Values; positionals: string[] };
  const [command, ...rest] = positionals;
  const num = (name: keyof typeof v, fallback?: number) => {
    const raw = v[name];
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n)) throw new CamflowError('USAGE', `--${String(name)} expects a number, got ${JSON.stringify(raw)}`);
    return n;
  };
  if (!command || (command === 'help' && !rest[0])) {
    process.stdout.write(`${globalUsage()}\n`);
    return;
  }
  const named = command === 'help' ? rest[0]! : command;
  if (!COMMANDS[named]) {
    const near = suggest(named, Object.keys(COMMANDS));
    throw new CamflowError('USAGE', `unknown command "${named}"${near ? `; did you mean "${near}"?` : ''} (camflow --help lists the commands)`);
  }
  if (v.help || command === 'help') {
    process.stdout.write(`${commandHelp(named)}\n`);
    return;
  }
  const given = Object.entries(v as Record<string, unknown>).filter(([, value]) => value !== undefined && value !== false).map(([k]) => k);
  const problem = optionProblem(command, given);
  if (problem) throw new CamflowError('USAGE', problem);
  switch (command) {
    case 'demo': {
      const line = await runDemo({
        out: v.out ?? 'camflow-demo',
        trainImages: num('train-images', 2000)!,
        heldOut: num('held-out', 300)!,
        epochs: num('epochs', 5)!,
        seed: num('seed', 7)!,
      });
      process.stdout.write(`${JSON.stringify(line)}\n`);
      return;
    }
    case 'dev': {
      // Data kept across restarts in --data-dir (default ~/.local/share/camflow/dev): Redis with AOF, s3rver's files.
      const dataDir = resolve(v['data-dir'] ?? join(process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'camflow', 'dev'));
      await mkdir(join(dataDir, 'redis'), { recursive: true });
      await mkdir(join(dataDir, 's3'), { recursive: true });
      const redis = await startRedis({ appendonly: true, dir: join(dataDir, 'redis') });
      // Whatever ends this process (signal, crash, the grace period running out mid-training), its servers stop.
      process.on('exit', () => redis.signalStop());
      const s3 = await startS3({ dir: join(dataDir, 's3') });
      process.on('exit', () => s3.signalStop());
      const env = { REDIS_URL: redis.url, S3_ENDPOINT: s3.endpoint, S3_BUCKET: s3.bucket, AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey };
      const ctx = await createContext({ ...process.env, ...env }, 'dev');
      await ensureStore(ctx.store, ctx.config);
      const workers = await startWorkers('all', ctx.config, ctx.store, ctx.log);
      // The API and the viewer too, on loopback, behind a token (given, or made for this run).
      const token = ctx.config.API_TOKEN ?? randomBytes(16).toString('hex');
      const apiRedis = await connectProducer(env.REDIS_URL);
      const app = await buildApi({ config: { ...ctx.config, API_TOKEN: token }, store: ctx.store, flow: ctx.flow, queues: ctx.queues, redis: apiRedis, log: ctx.log });
      const host = process.env.API_HOST ?? '127.0.0.1';
      const address = await app.listen({ port: ctx.config.API_PORT, host }).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EADDRINUSE') throw error;
        return app.listen({ port: 0, host });
      });
      process.stdout.write(
        `camflow dev is up (data in ${dataDir}).\nviewer and API: ${address}/viewer  (token: ${ctx.config.API_TOKEN ? 'your API_TOKEN' : token})\nIn another shell:\n${Object.entries(env)
          .map(([k, val]) => `export ${k}=${val}`)
          .join('\n')}\nexport API_PORT=${new URL(address).port}\n`,
      );
      closeOnSignals(async () => {
        await app.close();
        await apiRedis.quit().catch(() => undefined);
        await workers.close();
        await ctx.close();
        await s3.stop();
        await redis.stop();
      }, ctx.log, ctx.config.SHUTDOWN_GRACE_MS);
      return;
    }
    case 'serve': {
      const ctx = await createContext(process.env, 'api');
      await ensureStore(ctx.store, ctx.config);
      const redis = await connectProducer(ctx.config.REDIS_URL); // outages are reported by /readyz and as 503s
      const app = await buildApi({ config: ctx.config, store: ctx.store, flow: ctx.flow, queues: ctx.queues, redis, log: ctx.log });
      const address = await app.listen({ port: ctx.config.API_PORT, host: ctx.config.API_HOST });
      ctx.log.info({ address }, 'camflow API listening');
      closeOnSignals(async () => {
        await app.close();
        await redis.quit();
        await ctx.close();
      }, ctx.log, ctx.config.SHUTDOWN_GRACE_MS);
      return;
    }
    case 'worker': {
      const role = (rest[0] ?? 'all') as WorkerRole;
      if (!workerRoles.includes(role)) throw new CamflowError('USAGE', `worker role must be one of ${workerRoles.join(', ')}, got ${JSON.stringify(role)}`);
      const ctx = await createContext(process.env, `worker-${role}`);
      await ensureStore(ctx.store, ctx.config);
      const workers = await startWorkers(role, ctx.config, ctx.store, ctx.log);
      closeOnSignals(async () => {
        await workers.close();
        await ctx.close();
      }, ctx.log, ctx.config.SHUTDOWN_GRACE_MS);
      return;
    }
    case 'dataset': {
      if (rest[0] !== 'add' || !rest[1] || !rest[2]) throw new CamflowError('USAGE', 'usage: camflow dataset add NAME FOLDER');
      await withContext(async (ctx) => {
        const { manifest, created } = await addDataset({
          store: ctx.store,
          name: rest[1]!,
          folder: rest[2]!,
          size: num('size', 128)!,
          ...(v.classes ? { classes: v.classes.split(',') } : {}),
          ...(v['group-pattern'] ? { groupPattern: v['group-pattern'] } : {}),
          maxPixels: ctx.config.MAX_IMAGE_PIXELS,
          log: ctx.log,
          onProgress: v.json ? undefined : progressBar('preprocess'),
        });
        const counts = Object.fromEntries(manifest.classNames.map((c, i) => [c, manifest.items.filter((it) => it.label === i).length]));
        print(v.json, { dataset: manifest.name, version: manifest.version, created, items: manifest.items.length, counts, rejected: manifest.rejected }, `dataset ${manifest.name}@${manifest.version} ${created ? 'registered' : 'already registered'}: ${JSON.stringify(counts)}, ${manifest.rejected.length} refused${manifest.rejected.map((r) => `\n  ${r.name}: ${r.error}`).join('')}`);
      });
      return;
    }
    case 'submit': {
      if (!rest[0]) throw new CamflowError('USAGE', 'usage: camflow submit PATH');
      await withContext(async (ctx) => {
        const options = parseWith(camOptionsSchema, {
          ...(v.target ? { target: v.target } : {}),
          ...(v.fraction ? { fraction: num('fraction') } : {}),
          ...(v.outputs ? { outputs: v.outputs === 'none' ? [] : v.outputs.split(',').map((o) => parseWith(outputSchema, o, '--outputs')) } : {}),
          ...(v.precision ? { precision: v.precision } : {}),
          ...(v['no-cell-mask'] ? { restrictToCell: false } : {}),
          ...(v.kind ? { kind: v.kind } : {}),
          ...(v['cell-diameter'] ? { cellDiameter: num('cell-diameter') } : {}),
        }, '--options');
        const info = await submitBatch({
          store: ctx.store,
          flow: ctx.flow,
          redis: ctx.redis,
          queues: ctx.queues,
          prefix: ctx.config.QUEUE_PREFIX,
          source: rest[0]!,
          options,
          chunkSize: num('chunk-size', ctx.config.CAM_CHUNK_SIZE)!,
          limits: { maxFileBytes: ctx.config.MAX_FILE_BYTES, maxArchiveBytes: ctx.config.MAX_ARCHIVE_BYTES },
          s3Source: s3SourceOptions(ctx.config),
          listingPageSize: ctx.config.SOURCE_S3_PAGE_SIZE,
          ...(v.priority ? { priority: v.priority as 'high' | 'normal' | 'low' } : {}),
          ...(v.webhook ? { webhook: v.webhook } : {}),
          attempts: ctx.config.CAM_ATTEMPTS,
          backoffMs: ctx.config.CAM_BACKOFF_MS,
          maxPixels: ctx.config.MAX_IMAGE_PIXELS,
          maxSlidePixels: ctx.config.MAX_SLIDE_PIXELS,
          maxFieldPixels: ctx.config.MAX_FIELD_PIXELS,
          log: ctx.log,
          ...(v.model ? { modelVersion: v.model } : {}),
          ...(v.key ? { idempotencyKey: v.key } : {}),
          onProgress: v.json ? undefined : progressBar('ingest'),
        });
        if (!v.wait) {
          const what = info.listing && info.listing.state === 'listing' ? `${info.listing.source} is being listed by the ingest workers, ${info.listing.pageSize} keys a page (\`camflow status ${info.batchId}\` shows it grow)` : `${info.accepted} images, ${info.rejected} refused, ${info.chunks} chunks`;
          print(v.json, info, `batch ${info.batchId}${info.existing ? ' (already submitted)' : ''}: ${what}, model ${info.modelVersion}`);
          return;
        }
        const bar = v.json ? undefined : progressBar('localize');
        const status = await waitForBatch(ctx, info.batchId, 24 * 3600_000, (s) => (s.images ? bar?.(s.images.done, s.images.total, s.state === 'running' ? s.images.etaSeconds : undefined) : bar?.(s.chunks.done, s.chunks.total)));
        print(v.json, status, `batch ${info.batchId} completed: ${JSON.stringify(status.summary)}`);
      });
      return;
    }
    case 'open': {
      // The viewer page of a batch (or the batch list), served by `camflow serve` / `camflow dev`.
      const config = loadConfig(process.env);
      const host = config.API_HOST === '0.0.0.0' || config.API_HOST === '::' ? '127.0.0.1' : config.API_HOST;
      const url = `http://${host}:${config.API_PORT}/viewer${rest[0] ? `/batches/${encodeURIComponent(rest[0])}` : ''}`;
      print(v.json, { url }, url);
      if (!v.json && process.env.DISPLAY) spawn('xdg-open', [url], { stdio: 'ignore', detached: true }).on('error', () => undefined).unref();
      return;
    }
    case 'status': {
      if (!rest[0]) throw new CamflowError('USAGE', 'usage: camflow status BATCH_ID');
      await withContext(async (ctx) => {
        const status = await batchStatus(ctx.store, ctx.queues.batch, rest[0]!);
        if (status.state === 'unknown') throw new NotFoundError('batch', rest[0]!);
        const im = status.images;
        const progress = im ? `images ${im.done}/${im.total}${im.perSecond !== undefined && status.state === 'running' ? ` (${im.perSecond}/s, about ${formatDuration(im.etaSeconds!)} left)` : ''}, ` : '';
        const listing = status.info?.listing;
        const listed = listing ? `listing ${listing.state}${listing.state === 'listing' ? ` (${listing.pages} pages so far)` : ` (${listing.pages} pages)`}${listing.reason ? `: ${listing.reason}` : ''}, ` : '';
        print(v.json, status, `${status.batchId}: ${status.state}${status.cancelled ? ` (cancelled at ${status.cancelled.at})` : ''}, ${listed}${progress}chunks ${status.chunks.done}/${status.chunks.total}${status.reason ? `\n${status.reason}` : ''}${status.summary ? `\n${JSON.stringify(status.summary, null, 2)}` : ''}`);
      });
      return;
    }
    case 'eval': {
      if (!rest[0]) throw new CamflowError('USAGE', 'usage: camflow eval <labelled folder | dataset[@version]> [--model V] [--group-pattern RE] [--boxes boxes.json] [--truth auto|boxes|stain|none] [--out DIR]');
      await withContext(async (ctx) => {
        const bar = v.json ? undefined : progressBar('evaluate');
        const { line } = await runEval(ctx, {
          source: rest[0]!,
          out: v.out ?? 'camflow-eval',
          ...(v.model ? { model: v.model } : {}),
          ...(v['group-pattern'] ? { groupPattern: v['group-pattern'] } : {}),
          ...(v.boxes ? { boxes: v.boxes } : {}),
          ...(v.truth ? { truth: v.truth as EvalOptions['truth'] } : {}),
          ...(bar ? { onProgress: bar } : {}),
        });
        process.stdout.write(`${JSON.stringify(line)}\n`);
      });
      return;
    }
    case 'batches': {
      if (rest[0] === 'list') {
        const limit = num('limit', 50)!;
        if (!Number.isInteger(limit) || limit < 1) throw new InvalidParameterError('--limit', 'a positive integer', v.limit);
        await withContext(async (ctx) => {
          const list = await batchListing(ctx.store, ctx.queues.batch, limit);
          const human = list.length
            ? list.map((b) => `${b.batchId}  ${b.createdAt}  ${b.state.padEnd(9)}  ${b.images ? `${b.images.done}/${b.images.total} images` : `${b.accepted} images`}, ${b.rejected} refused  model ${b.modelVersion}`).join('\n')
            : 'no batches yet: camflow submit FOLDER';
          print(v.json, { batches: list }, human);
        });
        return;
      }
      if (rest[0] === 'cancel') {
        if (!rest[1]) throw new CamflowError('USAGE', 'usage: camflow batches cancel BATCH_ID');
        await withContext(async (ctx) => {
          const report = await cancelBatch(ctx.store, ctx.queues.batch, rest[1]!);
          print(v.json, report, report.action === 'cancelled' ? `${report.batchId}: cancelled; chunks not yet localized give their images a "cancelled" line, running ones finish (camflow status ${report.batchId})` : `${report.batchId}: nothing to cancel (${report.cancelledAt ? `cancelled at ${report.cancelledAt}` : report.state})`);
        });
        return;
      }
      if (rest[0] !== 'repair' || !rest[1]) throw new CamflowError('USAGE', 'usage: camflow batches list [--limit N] | cancel BATCH_ID | repair BATCH_ID');
      await withContext(async (ctx) => {
        const report = await repairBatch({ store: ctx.store, flow: ctx.flow, queues: ctx.queues, batchId: rest[1]!, log: ctx.log });
        print(v.json, report, report.action === 'none' ? `${report.batchId}: nothing to repair (${report.state})` : `${report.batchId}: jobs re-created for chunks [${report.recreated.join(', ')}]; finalization queued (${report.committed} chunks already committed, ${report.failed.length} failed)`);
      });
      return;
    }
    case 'results': {
      if (!rest[0]) throw new CamflowError('USAGE', 'usage: camflow results BATCH_ID [--format jsonl|csv|geojson] [--out FILE]');
      const format = v.format ?? 'jsonl';
      if (!(RESULT_FORMATS as readonly string[]).includes(format)) throw new InvalidParameterError('--format', RESULT_FORMATS.join(', '), format);
      await withContext(async (ctx) => {
        const out = await exportBatchResults(ctx.store, rest[0]!, format as ResultFormat);
        if (!out) {
          const status = await batchStatus(ctx.store, ctx.queues.batch, rest[0]!);
          if (status.state === 'unknown') throw new NotFoundError('batch', rest[0]!);
          throw new CamflowError('NOT_READY', `batch ${rest[0]} is ${status.state} (${status.chunks.done}/${status.chunks.total} chunks): no results yet${status.reason ? `; ${status.reason}` : ''}`);
        }
        if (v.out) {
          await pipeline(out.body, createWriteStream(v.out));
          process.stderr.write(`wrote ${v.out} (${format})\n`);
        } else await pipeline(out.body, process.stdout, { end: false });
      });
      return;
    }
    case 'train': {
      if (v.cancel) {
        await withContext(async (ctx) => {
          const report = await cancelTraining(ctx.queues.train, ctx.redis, ctx.config.QUEUE_PREFIX, v.cancel!);
          const human = { removed: `training job ${report.jobId} removed (it had not started)`, stopping: `training job ${report.jobId} stops within ten steps; nothing is published`, none: `training job ${report.jobId} has already finished (${report.state})` }[report.action];
          print(v.json, report, human);
        });
        return;
      }
      if (!v.dataset) throw new CamflowError('USAGE', 'usage: camflow train --dataset NAME | camflow train --cancel JOB_ID');
      await withContext(async (ctx) => {
        await getDatasetManifest(ctx.store, v.dataset!, v.version); // an unknown dataset fails here, not in the trainer
        const job = await enqueueTraining(ctx.queues.train, {
          dataset: v.dataset!,
          ...(v.version ? { datasetVersion: v.version } : {}),
          ...(v.preset ? { preset: v.preset as 'fast' | 'seed' } : {}),
          ...(v.epochs ? { epochs: num('epochs') } : {}),
          ...(v.lr ? { learningRate: num('lr') } : {}),
          ...(v['batch-size'] ? { batchSize: num('batch-size') } : {}),
          ...(v.split ? { splitBy: v.split as 'auto' | 'item' | 'group' } : {}),
          ...(v.seed ? { seed: num('seed') } : {}),
          ...(v['val-fraction'] ? { validationFraction: num('val-fraction') } : {}),
          ...(v.patience ? { earlyStopPatience: num('patience') } : {}),
          promote: !v['no-promote'],
        });
        if (!v.wait) {
          print(v.json, { jobId: job.id }, `training job ${job.id} queued`);
          return;
        }
        const outcome = await waitForJob(ctx.queues.train, job.id!, (p) => {
          const m = p as { epoch: number; loss: number; valAccuracy: number; attempt: number };
          if (!v.json) process.stderr.write(`epoch ${m.epoch} (attempt ${m.attempt + 1}): loss ${m.loss.toFixed(4)} val accuracy ${m.valAccuracy.toFixed(4)}\n`);
        });
        print(v.json, outcome, JSON.stringify(outcome));
      });
      return;
    }
    case 'schedule': {
      if (!v.dataset || !v.cron) throw new CamflowError('USAGE', 'usage: camflow schedule --dataset NAME --cron "0 2 * * *" [--tz ZONE]');
      await withContext(async (ctx) => {
        await getDatasetManifest(ctx.store, v.dataset!);
        const s = await scheduleRetraining(ctx.queues.train, v.cron!, v.tz ?? 'UTC', {
          dataset: v.dataset!,
          ...(v.preset ? { preset: v.preset as 'fast' | 'seed' } : {}),
          ...(v.epochs ? { epochs: num('epochs') } : {}),
        }).catch((error: Error) => {
          // BullMQ's cron parser says "Invalid characters, got value: a": name the option and the expectation.
          if (/invalid|cron|timezone/i.test(error.message) && !/redis|connect/i.test(error.message)) {
            throw new InvalidParameterError('--cron/--tz', `a cron pattern such as "0 2 * * *" and an IANA time zone (${error.message})`, `${v.cron} ${v.tz ?? 'UTC'}`);
          }
          throw error;
        });
        print(v.json, s, `nightly retraining scheduled (${v.cron}, ${v.tz ?? 'UTC'}); next run ${s.next ? new Date(s.next).toISOString() : 'unknown'}`);
      });
      return;
    }
    case 'models': {
      await withContext(async (ctx) => {
        if (rest[0] === 'promote') {
          if (!rest[1]) throw new CamflowError('USAGE', 'usage: camflow models promote VERSION');
          const channel = await promote(ctx.store, await getModelManifest(ctx.store, rest[1]));
          print(v.json, channel, `production → ${channel.version}`);
          return;
        }
        const [models, production] = await Promise.all([listModels(ctx.store), getProduction(ctx.store)]);
        print(
          v.json,
          { production: production?.version ?? null, models: models.map((m) => ({ version: m.version, preset: m.preset, valAccuracy: m.metrics.valAccuracy, dataset: m.dataset, int8: m.int8 ? { classAgreement: m.int8.classAgreement, boxIou: m.int8.boxIou } : null, screening: m.screening ?? null })) },
          models.map((m) => `${m.version === production?.version ? '*' : ' '} ${m.version}  ${m.preset}  val ${m.metrics.valAccuracy.toFixed(4)}  ${m.dataset.name}@${m.dataset.version}${m.int8 ? `  int8: agree ${m.int8.classAgreement.toFixed(3)} box IoU median ${m.int8.boxIou.median.toFixed(2)}` : ''}${m.screening ? `  screen: ${m.screening.positiveClass} ≥ ${m.screening.threshold.toFixed(3)} (val recall ${m.screening.validation.recall.toFixed(3)}, specificity ${m.screening.validation.specificity.toFixed(3)})` : ''}`).join('\n') || 'no models yet',
        );
      });
      return;
    }
    default:
      throw new CamflowError('USAGE', `unknown command "${command}" (camflow --help lists the commands)`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  // One line naming what is wrong; config errors name the variable. Exit codes: 78 configuration, 2 usage or
  // bad input, 1 anything else.
  const message = error instanceof CamflowError ? error.message : `error: ${errorMessage(error)}`;
  process.stderr.write(`${message}\n`);
  const code = error instanceof ConfigError || (error as CamflowError).code === 'CONFIG' ? 78 : error instanceof InvalidParameterError || (error as CamflowError).code === 'USAGE' || (error as CamflowError).code === 'KEY_CONFLICT' ? 2 : 1;
  process.exit(code);
});
