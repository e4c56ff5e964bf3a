import { z } from 'zod';

/** How the int8 serving graph compares with the float graph on held-out images (written into the manifest). */
export const int8ReportSchema = z.object({
  calibrationImages: z.number().int().positive(),
  evaluatedImages: z.number().int().nonnegative(),
  /** Share of images whose predicted class is the same. */
  classAgreement: z.number(),
  /** IoU of the paper's box (20 % rule) between the two graphs, on the float graph's predicted class. */
  boxIou: z.object({ median: z.number(), p05: z.number(), min: z.number() }),
  /** Largest |difference| of the min-max normalised CAMs at input resolution. */
  camMaxAbsDiff: z.object({ median: z.number(), p95: z.number() }),
  /** Calibrated largest post-ReLU activation of each quantized conv layer. */
  activationMax: z.record(z.string(), z.number()),
});
export type Int8Report = z.infer<typeof int8ReportSchema>;
