import { z } from 'zod';
import { CamflowError, InvalidParameterError } from '../errors.js';
import { batchItemSchema, camOptionsSchema, idSchema, precisionSchema, sha256Schema } from './schemas.js';
import { issueText } from '../validate.js';
import { suggest } from '../suggest.js';

/**
 * Every shape that one package stores or queues and another reads back: job ids, batch manifest lines, refusal
 * reasons, result lines, chunk failures, batch info and summaries. Written and read through these schemas only.
 */

/** The BullMQ job id of a batch's chunk, and its inverse (the one place that knows the format). */
export const chunkJobId = (batchId: string, chunk: number): string => `${idSchema.parse(batchId)}-c${chunk}`;

/** The BullMQ job id of a batch's finalization job. */
export const finalizeJobId = (batchId: string): string => idSchema.parse(batchId);

/** The BullMQ job id of one listing page of an S3-prefix batch (`ingest` queue). */
export const listingPageJobId = (batchId: string, page: number): string => `${idSchema.parse(batchId)}-p${page}`;

/** The BullMQ job id of one part of a smear field's cells (the `field-cells` jobs a chunk fans out). */
export const fieldCellsJobId = (batchId: string, chunk: number, imageId: string, part: number): string => `${idSchema.parse(batchId)}-c${chunk}-${idSchema.parse(imageId)}-p${part}`;

/**
 * Why an item has no result: a stable machine-readable `reason` (e.g. `truncated`, `unsupported-format`,
 * `outside-source`, `chunk-failed`) and a human `error` sentence.
 */
export const refusalSchema = z.object({ reason: z.string().regex(/^[a-z0-9-]{1,64}$/), error: z.string().max(2000) });
export type Refusal = z.infer<typeof refusalSchema>;

/** An accepted item of a batch manifest: the stored image and the chunk that processes it. */
export const acceptedLineSchema = batchItemSchema.extend({ chunk: z.number().int().nonnegative() });
export type AcceptedLine = z.infer<typeof acceptedLineSchema>;

/** An entry refused at submission (unreadable, not an image, a link outside the source, too large, …). */
export const refusedLineSchema = z.object({ imageId: idSchema, name: z.string(), reason: refusalSchema.shape.reason, error: refusalSchema.shape.error });
export type RefusedLine = z.infer<typeof refusedLineSchema>;

/** One line of `batches/<id>/manifest.jsonl`: every submitted entry, exactly once. */
export const manifestLineSchema = z.union([acceptedLineSchema, refusedLineSchema]);
export type ManifestLine = z.infer<typeof manifestLineSchema>;
export const isRefused = (line: ManifestLine): line is RefusedLine => 'reason' in line;

const regionSchema = z
  .object({ x: z.number(), y: z.number(), width: z.number(), height: z.number(), area: z.number(), score: z.number(), peak: z.number() })
  .describe('A connected region of the normalised CAM above the threshold, in original-image pixels (x, y: top-left corner; y down); area in pixels; score: mean normalised CAM inside; peak: its maximum');

/** The localization of one class on one image, in original-image pixels. */
export const classLocalizationSchema = z.object({
  class: z.string(),
  classIndex: z.number().int().nonnegative(),
  box: regionSchema.nullable().describe("The paper's box: the largest 8-connected region above `fraction` (default 0.2) × the CAM's maximum; null when the CAM is flat"),
  regions: z.array(regionSchema).describe('Every region of at least `minArea` pixels above the threshold, largest first'),
  peak: z.object({ x: z.number(), y: z.number() }).describe("The CAM's maximum, original-image pixels (the pointing game's point)"),
  featureCam: z.array(z.number()).describe('The raw CAM Σ_k w_k^c f_k at feature resolution (featureSize, row-major), before upsampling and normalisation'),
});

/** The screening call of one cell at the model's operating point. */
const screenSchema = z.object({ positiveClass: z.string(), probability: z.number(), threshold: z.number(), positive: z.boolean() });

export const okResultSchema = z.object({
  batchId: idSchema,
  imageId: idSchema,
  name: z.string(),
  status: z.literal('ok'),
  /** Processed as one cell crop (lines written before kinds existed read as cells). */
  kind: z.literal('cell').default('cell'),
  sha256: sha256Schema,
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  modelVersion: idSchema,
  precision: precisionSchema,
  /** What computed it: `onnxruntime/webgpu`, `onnxruntime/cpu`, `tfjs/wasm`… (absent on lines written before). */
  engine: z.string().optional().describe('What computed the line: onnxruntime/<provider> or tfjs/<backend>'),
  predicted: z.object({ index: z.number().int().nonnegative(), label: z.string(), probability: z.number() }).describe('The argmax class and its softmax probability'),
  probabilities: z.record(z.string(), z.number()).describe('Softmax probability per class name'),
  cams: z.array(classLocalizationSchema).describe('One localization per class asked for by `target` (predicted, all, or a class name)'),
  featureSize: z.object({ width: z.number().int().positive(), height: z.number().int().positive() }).describe("The last conv layer's map size (featureCam's shape)"),
  outputs: z.object({ json: z.string().optional(), heatmap: z.string().optional(), overlay: z.string().optional() }),
  /** The screening call at the model's operating point (absent for models published without one). */
  screen: screenSchema.optional(),
});

export const failedResultSchema = z.object({
  batchId: idSchema,
  imageId: idSchema,
  name: z.string(),
  status: z.literal('failed'),
  reason: refusalSchema.shape.reason.describe('Machine-readable reason, e.g. not-an-image, too-many-pixels, file-too-large, decode-failed'),
  error: z.string().describe('What went wrong, in words'),
  modelVersion: idSchema.optional(),
});

const boxSchema = z.object({ x: z.number(), y: z.number(), width: z.number(), height: z.number() });

/**
 * One red cell found in a field, classified and localized; every coordinate in field pixels. No screening call: the
 * model's operating point is chosen on cell crops and does not hold on the cells camflow cuts from a field (README,
 * "Smear fields"); the field's count uses the argmax.
 */
export const fieldCellSchema = z.object({
  cell: z.number().int().nonnegative(),
  box: boxSchema,
  /** Outline, closed (the last point joins the first). */
  polygon: z.array(z.tuple([z.number(), z.number()])),
  /** Cut by the image's or the field of view's edge: listed, but not counted in the parasitemia. */
  clipped: z.boolean(),
  predicted: z.object({ index: z.number().int().nonnegative(), label: z.string(), probability: z.number() }),
  probabilities: z.record(z.string(), z.number()),
  /** Deprecated, no longer written: lines written before 2026-11-29 carried a screening call uncalibrated on field cells. */
  screen: screenSchema.optional().describe('Deprecated: written only before 2026-11-29 (uncalibrated on field cells); ignore'),
  /** The positive class's CAM: its peak and its box (20 %-of-max rule), restricted to the cell. */
  peak: z.object({ x: z.number(), y: z.number() }),
  parasiteBox: boxSchema.nullable(),
});
export type FieldCell = z.infer<typeof fieldCellSchema>;

/** A field's answer: cells found and counted, how many infected, the parasitemia with its 95 % Wilson interval. */
export const fieldSummarySchema = z.object({
  positiveClass: z.string(),
  cells: z.number().int().nonnegative(),
  /** Cells not cut by an edge: the parasitemia's denominator. */
  counted: z.number().int().nonnegative(),
  /** Counted cells predicted (argmax) as the positive class. */
  infected: z.number().int().nonnegative(),
  parasitemia: z.number().min(0).max(1),
  interval: z.tuple([z.number(), z.number()]),
  /** Deprecated, no longer written: a count at the crops' screening point, uncalibrated on field cells (before 2026-11-29). */
  screenPositive: z.number().int().nonnegative().optional().describe('Deprecated: written only before 2026-11-29 (uncalibrated on field cells); ignore'),
  /** White cells found (a large, very dark nucleus): not red cells, so neither counted nor classified. */
  whiteCells: z.number().int().nonnegative().optional(),
  /** The cell diameter used for finding (given, or estimated from the field), field pixels. */
  cellDiameter: z.number(),
  fov: z.object({ cx: z.number(), cy: z.number(), r: z.number() }).optional(),
  /** Why this answer may not be what it seems (e.g. a single large cell read as a field under `auto`). */
  warning: z.string().optional(),
});
export type FieldSummary = z.infer<typeof fieldSummarySchema>;

/** A smear field's result line; the cells themselves are in `outputs.field` (`field.json`) and `outputs.geojson`. */
export const fieldResultSchema = z.object({
  batchId: idSchema,
  imageId: idSchema,
  name: z.string(),
  status: z.literal('ok'),
  kind: z.literal('field'),
  sha256: sha256Schema,
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  modelVersion: idSchema,
  precision: precisionSchema,
  engine: z.string().optional(),
  field: fieldSummarySchema,
  /** `fieldDzi` / `heatmapDzi`: Deep Zoom descriptors; their tiles sit beside them in `<name>_files/`. */
  outputs: z.object({ field: z.string(), geojson: z.string(), overlay: z.string().optional(), fieldDzi: z.string().optional(), heatmapDzi: z.string().optional() }),
});
export type FieldResult = z.infer<typeof fieldResultSchema>;

/** `field.json`: the summary and every cell. */
export const fieldDocumentSchema = z.object({ batchId: idSchema, imageId: idSchema, name: z.string(), width: z.number().int(), height: z.number().int(), modelVersion: idSchema, summary: fieldSummarySchema, cells: z.array(fieldCellSchema) });
export type FieldDocument = z.infer<typeof fieldDocumentSchema>;

/** One line of a batch's results (`results.jsonl`, chunk JSONL, per-image JSON): a cell, a field, or a failure. */
export const imageResultSchema = z.union([okResultSchema, fieldResultSchema, failedResultSchema]);
export type ImageResult = z.infer<typeof imageResultSchema>;
/** A cell crop's result. */
export type OkResult = z.infer<typeof okResultSchema>;
/** A result of a cell crop (not a failure, not a field). */
export const isCellResult = (r: ImageResult): r is OkResult => r.status === 'ok' && r.kind === 'cell';
export type FailedResult = z.infer<typeof failedResultSchema>;

/**
 * A smear field's cells as found by the chunk that holds the field (segmentation and crops, done once), before any
 * is classified. Its cells are localized in `parts` of consecutive cells, each a `field-cells` job of the `cam`
 * queue, so one field's hundreds of cells spread over the worker pool; the chunk assembles the field when all are in.
 */
export const fieldPlanSchema = z.object({
  batchId: idSchema,
  imageId: idSchema,
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  /** Decoded whole (false: a slide read region by region). */
  whole: z.boolean(),
  diameter: z.number(),
  fov: z.object({ cx: z.number(), cy: z.number(), r: z.number() }).optional(),
  regions: z.number().int().nonnegative(),
  whiteCells: z.number().int().nonnegative().default(0),
  cells: z.array(z.object({ box: boxSchema, polygon: z.array(z.tuple([z.number(), z.number()])), clipped: z.boolean() })),
  /** Consecutive cells per part: part p holds cells first … first + count − 1. */
  parts: z.array(z.object({ first: z.number().int().nonnegative(), count: z.number().int().positive() })),
});
export type FieldPlan = z.infer<typeof fieldPlanSchema>;

/** One part of a field's cells: its model inputs are in `keys.fieldCellsInput`, keyed by cell number. */
export const fieldCellsJobSchema = z.object({
  batchId: idSchema,
  chunk: z.number().int().nonnegative(),
  imageId: idSchema,
  part: z.number().int().nonnegative(),
  modelVersion: idSchema,
  options: camOptionsSchema,
  /** Each cell's number in the field and its box size (field pixels): the CAM is mapped back onto it. */
  cells: z.array(z.object({ cell: z.number().int().nonnegative(), width: z.number().int().positive(), height: z.number().int().positive() })).min(1).max(4096),
});
export type FieldCellsJob = z.infer<typeof fieldCellsJobSchema>;

/** One cell localized by a `field-cells` job; peak and parasite box in the cell's box (0, 0: its top-left). */
export const localizedFieldCellSchema = z.object({
  cell: z.number().int().nonnegative(),
  predicted: fieldCellSchema.shape.predicted,
  probabilities: fieldCellSchema.shape.probabilities,
  peak: fieldCellSchema.shape.peak,
  parasiteBox: boxSchema.nullable(),
  /** The positive class's raw CAM at feature resolution: the field's stitched heatmap is painted from it. */
  featureCam: z.array(z.number()),
  featureSize: z.object({ width: z.number().int().positive(), height: z.number().int().positive() }),
});
export type LocalizedFieldCell = z.infer<typeof localizedFieldCellSchema>;
export const fieldCellsResultSchema = z.object({ part: z.number().int().nonnegative(), engine: z.string(), precision: precisionSchema, cells: z.array(localizedFieldCellSchema) });
export type FieldCellsResult = z.infer<typeof fieldCellsResultSchema>;
/** A part whose job exhausted its attempts (the field then fails with this reason). */
export const fieldCellsFailureSchema = z.object({ part: z.number().int().nonnegative(), attempts: z.number().int().nonnegative(), error: z.string(), failedAt: z.string() });
export type FieldCellsFailure = z.infer<typeof fieldCellsFailureSchema>;

/** A chunk whose job exhausted its attempts, recorded in S3 so the reason survives a lost Redis. */
export const chunkFailureSchema = z.object({ batchId: idSchema, chunk: z.number().int().nonnegative(), attempts: z.number().int().nonnegative(), error: z.string(), failedAt: z.string() });
export type ChunkFailure = z.infer<typeof chunkFailureSchema>;

/** `batches/<id>/batch.json`: written once the batch's manifest is complete, before its jobs are enqueued. */
export const batchPrioritySchema = z.enum(['high', 'normal', 'low']);
export type BatchPriority = z.infer<typeof batchPrioritySchema>;
/** BullMQ priorities (1 is taken first). Every chunk job has one: jobs without a priority would jump every queue. */
export const BULLMQ_PRIORITY: Record<BatchPriority, number> = { high: 1, normal: 100, low: 10_000 };
export const webhookUrlSchema = z
  .string()
  .max(2000)
  .regex(/^https?:\/\/[^\s]+$/, 'an http(s) URL');

/** The ports the WHATWG fetch standard blocks: Node's fetch refuses them ("bad port"), so a webhook there never leaves. */
const FETCH_BAD_PORTS = new Set([1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080]);

/**
 * A webhook as submitted: an http(s) URL that parses, on a port fetch may call — refused at submission rather than
 * found "NOT delivered" when the batch completes. (Stored batches keep `webhookUrlSchema`: what was accepted stays readable.)
 */
export const webhookSubmitSchema = webhookUrlSchema.superRefine((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'an http(s) URL that parses (scheme, host, optional port and path)' });
    return;
  }
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  if (FETCH_BAD_PORTS.has(port)) ctx.addIssue({ code: 'custom', message: `an http(s) URL on a port HTTP clients may call (port ${port} is on fetch's blocked list, as 6000 and 10080 are: the POST would never leave)` });
});

export const batchInfoSchema = z.object({
  batchId: idSchema,
  createdAt: z.string(),
  modelVersion: idSchema,
  items: z.number().int().nonnegative(),
  accepted: z.number().int().nonnegative(),
  rejected: z.number().int().nonnegative(),
  uniqueImages: z.number().int().nonnegative(),
  chunks: z.number().int().nonnegative(),
  chunkSize: z.number().int().positive(),
  options: camOptionsSchema,
  /** Retries of each chunk job (stalls count against the same number). */
  attempts: z.number().int().positive(),
  backoffMs: z.number().int().positive(),
  /** Digest of what was submitted (entries, options): same key and same digest is the same batch. */
  fingerprint: z.string(),
  /** The idempotency key's digest, when the batch was submitted with one. */
  keyDigest: z.string().optional(),
  /**
   * The QUEUE_PREFIX its jobs were queued under (absent on batches submitted before 2026-11-29): status and repair
   * under another prefix say so rather than call the batch stalled and re-create its jobs there.
   */
  queuePrefix: z.string().optional(),
  /**
   * What was submitted, to pick a batch out of a list: the folder's or archive's name, `upload of N files`, or the
   * s3:// URL (absent on batches submitted before 2026-11-29).
   */
  source: z.string().optional(),
  /** Scheduling between batches: a `high` batch's chunks are taken before any `normal` one's, `low` after. */
  priority: batchPrioritySchema.default('normal'),
  /** Told (HTTP POST, signed with WEBHOOK_SECRET) when the batch completes. */
  webhook: webhookUrlSchema.optional(),
  /**
   * An S3-prefix batch is listed page by page by `ingest` jobs, and grows as they go: the counts above are those of
   * the pages listed so far until `state` leaves `listing`.
   */
  listing: z
    .object({
      source: z.string(),
      pageSize: z.number().int().positive().max(1000),
      /** `listing`: pages still to list; `done`: every object listed; `cancelled`: stopped by `batches cancel`; `failed`: a page exhausted its attempts (`reason`). */
      state: z.enum(['listing', 'done', 'cancelled', 'failed']),
      pages: z.number().int().nonnegative(),
      reason: z.string().optional(),
    })
    .optional(),
});
export type BatchInfo = z.infer<typeof batchInfoSchema>;

/** Running totals of a listed batch, carried from page to page (the checkpoint, with the marker). */
export const listingTotalsSchema = z.object({
  items: z.number().int().nonnegative(),
  accepted: z.number().int().nonnegative(),
  rejected: z.number().int().nonnegative(),
  uniqueImages: z.number().int().nonnegative(),
  chunks: z.number().int().nonnegative(),
});
export type ListingTotals = z.infer<typeof listingTotalsSchema>;

/**
 * An `ingest` job: list one page of an S3 prefix after `marker` (the last key of the page before: the checkpoint),
 * store its objects, write its manifest part and enqueue its chunks. Its images and chunks are numbered on from
 * `totals`.
 */
export const listingPageJobSchema = z.object({
  batchId: idSchema,
  page: z.number().int().nonnegative(),
  marker: z.string().optional(),
  totals: listingTotalsSchema,
});
export type ListingPageJob = z.infer<typeof listingPageJobSchema>;

/** `batches/<id>/listing/<page>.json`: the keys a page listed, fixed on its first attempt so a retry reads the same ones. */
export const listingPageSchema = z.object({
  page: z.number().int().nonnegative(),
  objects: z.array(z.object({ key: z.string(), size: z.number().int().nonnegative() })),
  /** The last key listed (folder markers included): the next page's marker. */
  last: z.string().optional(),
  truncated: z.boolean(),
});
export type ListingPage = z.infer<typeof listingPageSchema>;

/** How many fields a batch summary lists one by one (`fields.each`). */
export const FIELDS_IN_SUMMARY = 10;

/** `results/<id>/summary.json`. */
export const batchSummarySchema = z.object({
  batchId: idSchema,
  modelVersion: idSchema,
  items: z.number().int().nonnegative(),
  ok: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
  byClass: z.record(z.string(), z.number()),
  failures: z.record(z.string(), z.number()),
  chunks: z.object({ total: z.number().int().nonnegative(), failed: z.number().int().nonnegative() }),
  /** Screen-positive and screen-negative images at the model's operating point (models that have one). */
  screen: z.object({ positiveClass: z.string(), positive: z.number().int().nonnegative(), negative: z.number().int().nonnegative() }).optional(),
  /**
   * The batch's smear fields together (batches with fields): their cells pooled — counted cells, those predicted
   * positive, parasitemia = infected / counted with its 95 % Wilson interval. Each field's own is in its result line.
   */
  fields: fieldSummarySchema
    .pick({ positiveClass: true, cells: true, counted: true, infected: true, parasitemia: true, interval: true })
    .extend({
      images: z.number().int().nonnegative(),
      /** The lowest and highest parasitemia of one field (fields with counted cells): a pooled figure hides a spread. */
      range: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]).optional(),
      /** The first `FIELDS_IN_SUMMARY` fields' own counts, in submission order (all of them in the result lines). */
      each: z.array(z.object({ name: z.string(), counted: z.number().int().nonnegative(), infected: z.number().int().nonnegative(), parasitemia: z.number().min(0).max(1), warning: z.string().optional() })).optional(),
    })
    .optional(),
  /** An S3-prefix batch: how its listing ended (`done`, or `cancelled` / `failed` with the objects listed until then). */
  listing: z.object({ source: z.string(), state: z.enum(['listing', 'done', 'cancelled', 'failed']), pages: z.number().int().nonnegative(), reason: z.string().optional() }).optional(),
  /** The model's trainer would not promote it (it does not yet tell the classes apart), and why: read the results with that. */
  modelWarnings: z.array(z.string()).optional(),
  completedAt: z.string(),
});
export type BatchSummary = z.infer<typeof batchSummarySchema>;

/** An idempotency key's claim: which batch owns it, and what was submitted under it. */
export const keyClaimSchema = z.object({ batchId: idSchema, fingerprint: z.string() });
export type KeyClaim = z.infer<typeof keyClaimSchema>;

/** The cancellation of a batch (S3, the truth): when, and why. */
export const batchCancelSchema = z.object({ batchId: idSchema, cancelledAt: z.string(), reason: z.string().max(500) });
export type BatchCancel = z.infer<typeof batchCancelSchema>;
/** The completion webhook's delivery, written by the finalizer once it has tried (`batches/<id>/webhook.json`). */
export const webhookDeliverySchema = z.object({
  /** The receiver's origin (scheme, host, port): never its path or query, which may carry a token. */
  origin: z.string(),
  delivered: z.boolean(),
  attempts: z.number().int().positive(),
  /** The last failure (an HTTP status, or the network error and its code), when not delivered. */
  error: z.string().optional(),
  at: z.string(),
});
export type WebhookDelivery = z.infer<typeof webhookDeliverySchema>;

/** A stored line that does not match its contract. */
export class ContractError extends CamflowError {
  constructor(what: string, line: number, problem: string) {
    super('CONTRACT', `${what}, line ${line}: ${problem}`);
  }
}

/**
 * Parse JSON lines with a schema; a line that is not valid JSON or breaks the contract throws a ContractError
 * naming the object and the line.
 * @example const lines = parseJsonLines(text, manifestLineSchema, keys.batchManifest(batchId));
 */
export function parseJsonLines<T>(text: string, schema: z.ZodType<T>, what: string): T[] {
  const out: T[] = [];
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() !== '') out.push(parseJsonLine(raw, i + 1, schema, what));
  });
  return out;
}

/** One JSONL line (1-based `lineNo`), checked against its schema; errors name the object and the line. */
export function parseJsonLine<T>(raw: string, lineNo: number, schema: z.ZodType<T>, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    throw new ContractError(what, lineNo, `not JSON (${(error as Error).message})`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new ContractError(what, lineNo, issueText(parsed.error.issues));
  }
  return parsed.data;
}

/** Serialise lines as JSONL (one trailing newline; empty text for no lines). */
export const toJsonLines = (lines: readonly unknown[]): string => lines.map((l) => JSON.stringify(l)).join('\n') + (lines.length ? '\n' : '');

/**
 * The CAM target must be `predicted`, `all` or one of the model's classes: checked at submit with the same rule
 * the worker applies, so nothing is accepted that a worker would refuse.
 */
export function checkTarget(target: string, classNames: readonly string[], field = 'options.target'): void {
  if (target === 'predicted' || target === 'all' || classNames.includes(target)) return;
  const near = suggest(target, ['predicted', 'all', ...classNames]);
  throw new InvalidParameterError(field, `"predicted", "all" or one of the model's classes (${classNames.join(', ')})${near ? ` — did you mean "${near}"?` : ''}`, target);
}
