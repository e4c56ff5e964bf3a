import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';
import { parseWith } from '../validate.js';

/** A batch id as a cursor (`before`): the shape batch ids have (`b` and the date they were submitted, then more). */
export const batchCursorSchema = z.string().regex(/^b\d{8}[-T][A-Za-z0-9_.-]{1,100}$/, 'a batch id (b<yyyymmdd>…, as `next` gives it)');

/** Ids used in object keys: letters, digits, `_ . -`. */
export const idSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'an id of letters, digits, _ . -').refine((v) => !v.includes('..'), 'no ".."');
export const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, '64 lowercase hex characters');

export const outputSchema = z.enum(['json', 'heatmap', 'overlay']);
export type Output = z.infer<typeof outputSchema>;

/**
 * The outputs option as a user writes it (CLI `--outputs`, the HTTP `outputs` field): a comma list of
 * json / heatmap / overlay, or `none` (archive runs: the result lines only).
 * @example parseOutputs('json,overlay', '--outputs') // ['json', 'overlay']
 */
export function parseOutputs(value: string, field: string): Output[] {
  return value.trim() === 'none' ? [] : value.split(',').map((o) => parseWith(outputSchema, o.trim(), field));
}

/** What a CAM run computes for each image. */
export const precisionSchema = z.enum(['fp32', 'int8']);
export type Precision = z.infer<typeof precisionSchema>;

export const camOptionsSchema = z.object({
  /** `predicted`: the CAM of the predicted class; `all`: every class; or a class name. */
  target: z.string().min(1).max(128).default('predicted'),
  /** Box threshold as a fraction of the CAM's maximum (paper: 0.2). */
  fraction: z.number().gt(0).lt(1).default(0.2),
  /** Minimum region area in original pixels for the region list. */
  minArea: z.number().int().nonnegative().default(16),
  /** Per-image objects to write besides the packed chunk results. */
  outputs: z.array(outputSchema).default(['json', 'heatmap', 'overlay']),
  /**
   * Restrict each CAM to the cell (the crop's non-black pixels) before the peak and the boxes: the paper's CAM can
   * peak on the black background along a crop's edge. `false`: the paper's map as it is.
   */
  restrictToCell: z.boolean().default(true),
  /** Overlay heat weight (seed: 0.3). */
  alpha: z.number().min(0).max(1).default(0.3),
  /**
   * Serving graph: `fp32` (the model as trained) or `int8` (the published `model.int8.onnx`: quantized hidden
   * convolutions, ~2.4× faster on CPU; its agreement with fp32 is in the model manifest). Results record which ran.
   */
  precision: precisionSchema.default('fp32'),
  /**
   * How each image is read: `cells` (a cell crop, classified whole), `fields` (a smear field: its red cells are
   * found, cropped onto black and each classified and localized), or `auto` (default): a field when both sides
   * exceed 4× the typical cell side (the model's training cells' median side, 130 px when unrecorded).
   */
  kind: z.enum(['auto', 'cells', 'fields']).default('auto'),
  /** Red-cell diameter in field pixels for cell finding (default: estimated from each field). */
  cellDiameter: z.number().min(8).max(2000).optional(),
});
export type CamOptions = z.infer<typeof camOptionsSchema>;

/** One stored image of a batch, as the batch manifest lists it. */
export const batchItemSchema = z.object({
  imageId: idSchema,
  name: z.string(),
  sha256: sha256Schema,
  ext: z.string().regex(/^[a-z0-9]{1,8}$/),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  /** How the image is processed (decided at submission): a cell crop, or a smear field whose cells are found. */
  kind: z.enum(['cell', 'field']).default('cell'),
});
export type BatchItem = z.infer<typeof batchItemSchema>;

export const camJobSchema = z.object({
  batchId: idSchema,
  chunk: z.number().int().nonnegative(),
  modelVersion: idSchema,
  items: z.array(batchItemSchema).min(1),
  options: camOptionsSchema,
});
export type CamJob = z.infer<typeof camJobSchema>;

export const batchJobSchema = z.object({
  batchId: idSchema,
  modelVersion: idSchema,
});
export type BatchJob = z.infer<typeof batchJobSchema>;

/** Side of a typical cell crop when a model does not record its training cells' (the NIH crops' median). */
export const DEFAULT_CELL_SIDE = 130;

/**
 * The kind an image of `width × height` is processed as under a batch's `kind` option: `auto` reads an image as a
 * field when both sides exceed 4× the typical cell side.
 * @example itemKind('auto', 5312, 2988) // 'field'
 */
export function itemKind(kind: CamOptions['kind'], width: number, height: number, cellSide = DEFAULT_CELL_SIDE): 'cell' | 'field' {
  if (kind === 'cells') return 'cell';
  if (kind === 'fields') return 'field';
  return Math.min(width, height) > 4 * cellSide ? 'field' : 'cell';
}

/** Fewer counted cells than this in a small image read as a field under `auto`: said in a warning (below). */
export const FEW_FIELD_CELLS = 10;

/**
 * `auto` reads an image as a field by its size alone, in cells of the model's training size: a single cell photographed
 * larger (a high-resolution crop, 560 px where the model's cells are 130 px) is then a "field" of one or no counted
 * cells, and its parasitemia (0 of 1: 0 %) says nothing about the cell. Such a result is kept but carries this warning:
 * a field read under `auto`, less than 8 cells across, with fewer than `FEW_FIELD_CELLS` cells counted.
 * @example smallFieldWarning('auto', 560, 560, 1) // 'only 1 cell counted in this 560×560 image, read as a field …'
 */
export function smallFieldWarning(kind: CamOptions['kind'], width: number, height: number, counted: number, cellSide = DEFAULT_CELL_SIDE): string | undefined {
  if (kind !== 'auto' || counted >= FEW_FIELD_CELLS || Math.min(width, height) >= 8 * cellSide) return undefined;
  return `only ${counted} cell${counted === 1 ? '' : 's'} counted in this ${width}×${height} image, read as a field because it is more than 4 cells of ~${Math.round(cellSide)} px across: if it is one cell photographed larger, submit it with --kind cells`;
}

/**
 * An explicit kind that the image's size contradicts — whatever camflow then reported would be confidently wrong — as
 * a refusal: `cells` for an image more than 8× the typical cell side both ways (a smear field read as one cell), or
 * `fields` for one under 2× it both ways (a single crop searched for cells). `auto` never contradicts.
 * @example kindContradiction('cells', 5312, 2988)?.reason // 'not-a-cell'
 */
export function kindContradiction(kind: CamOptions['kind'], width: number, height: number, cellSide = DEFAULT_CELL_SIDE): { reason: string; error: string } | undefined {
  const side = Math.round(cellSide);
  if (kind === 'cells' && Math.min(width, height) > 8 * cellSide) {
    return { reason: 'not-a-cell', error: `image is ${width}×${height}, more than 8 cells across both ways (the model's cells are ~${side} px): a smear field? submit fields with --kind fields or auto` };
  }
  if (kind === 'fields' && Math.max(width, height) < 2 * cellSide) {
    return { reason: 'not-a-field', error: `image is ${width}×${height}, less than 2 cells across (the model's cells are ~${side} px): a cell crop? submit crops with --kind cells or auto` };
  }
  return undefined;
}

export const presetSchema = z.enum(['seed', 'fast']);
export type PresetName = z.infer<typeof presetSchema>;

/**
 * Adam's learning rate when a job names none. `fast`: 0.002 trained it to 0.946 on unseen patients (0.0005 stalled
 * at 0.64). `seed`: the seed's own 0.0005 — at 0.002 its 2-channel ReLU head stays at chance (NIH dev cells, 4 epochs).
 */
export const defaultLearningRate: Record<PresetName, number> = { fast: 0.002, seed: 0.0005 };

export const trainJobSchema = z.object({
  dataset: idSchema,
  /** A dataset version, or `latest`. */
  datasetVersion: z.string().default('latest'),
  preset: presetSchema.default('fast'),
  /** Most epochs; training stops earlier when the validation loss has not improved for `earlyStopPatience` epochs. */
  epochs: z.number().int().positive().max(1000).default(30),
  batchSize: z.number().int().positive().max(4096).default(32),
  /** Adam's learning rate; absent: the preset's (`defaultLearningRate`). */
  learningRate: z.number().positive().max(1).optional(),
  /** Epochs without a lower validation loss before training stops; the best epoch's weights are published. */
  earlyStopPatience: z.number().int().positive().max(1000).default(5),
  /** Halve the learning rate after this many epochs without a lower validation loss (0: constant rate). */
  lrPlateauPatience: z.number().int().nonnegative().max(1000).default(2),
  /**
   * Seeded augmentation of each training batch: flips, 90° rotations, and per-image multiplicative brightness and
   * per-channel stain jitter (multiplicative, so the crops' black background stays black, as in serving).
   */
  augment: z.boolean().default(true),
  /** Weight each class's loss by n / (classes × n_class) when the training classes are unbalanced. */
  classWeights: z.boolean().default(true),
  /** The screening operating point: the threshold on P(positive class) reaching this recall on validation. */
  screenRecall: z.number().gt(0).lte(1).default(0.98),
  /** The class a screen looks for (default: `Parasitized` when the dataset has it, else the first class). */
  positiveClass: z.string().min(1).max(128).optional(),
  seed: z.number().int().nonnegative().default(42),
  validationFraction: z.number().gt(0).lt(1).default(0.15),
  /**
   * `group` splits by the manifest items' group (e.g. patient), never putting one group on both sides; `item` by
   * image; `auto` (default): by group whenever groups hold several images (a patient's cells on both sides would
   * measure memory of the patient, not the parasite), else by item.
   */
  splitBy: z.enum(['auto', 'item', 'group']).default('auto'),
  /** Restarts with a fresh initialisation when a run collapses. */
  maxRestarts: z.number().int().nonnegative().max(10).default(3),
  /** Epochs at chance or with constant predictions before a run counts as collapsed (dead features: at once). */
  collapsePatience: z.number().int().positive().default(2),
  /** Skip when the dataset version equals the production model's (nightly retraining). */
  skipIfUnchanged: z.boolean().default(false),
  /** Promote when validation accuracy ≥ production's. */
  promote: z.boolean().default(true),
});
export type TrainJob = z.infer<typeof trainJobSchema>;
export type TrainJobInput = z.input<typeof trainJobSchema>;

/** The macros BullMQ's cron parser reads in place of five fields. */
const CRON_MACROS = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'];

/**
 * When retraining runs: a standard five-field cron pattern (minute hour day-of-month month day-of-week) or a macro
 * such as `@daily`, in an IANA time zone. BullMQ's parser also takes 4 fields (read as if the minute were missing: a
 * "nightly" pattern that runs once a month) and 6 (seconds first: every 5 s): both refused here.
 */
export const retrainingScheduleSchema = z.object({
  cron: z
    .string()
    .trim()
    .refine((v) => CRON_MACROS.includes(v.toLowerCase()) || (v.split(/\s+/).length === 5 && v.split(/\s+/).every((f) => /^[A-Za-z0-9*?,/#LW-]+$/.test(f))), 'five cron fields (minute hour day-of-month month day-of-week), e.g. "0 2 * * *", or a macro (@daily, @weekly, @monthly, @hourly, @yearly)'),
  tz: z.string().refine((tz) => {
    try {
      new Intl.DateTimeFormat('en', { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  }, 'an IANA time zone such as UTC or Europe/Paris'),
}).superRefine((v, ctx) => {
  // Fields of the right shape can still name no time ("61 2 * * *"): the parser BullMQ schedules with says so here,
  // so the CLI and the HTTP API refuse it as bad input rather than failing inside the queue.
  try {
    CronExpressionParser.parse(v.cron, { tz: v.tz });
  } catch (error) {
    ctx.addIssue({ code: 'custom', path: ['cron'], message: `a cron pattern whose fields are in range, e.g. "0 2 * * *" (${error instanceof Error ? error.message : String(error)})` });
  }
});
export type RetrainingSchedule = z.infer<typeof retrainingScheduleSchema>;
