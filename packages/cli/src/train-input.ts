import { parseWith, trainJobSchema, type TrainJobInput } from '@camflow/common/core';
import type { CommandInput } from './cli-io.js';

/** The training job's fields as the CLI's flags name them: an error names the flag that was typed. */
const TRAIN_FLAGS: Record<string, string> = {
  dataset: '--dataset',
  datasetVersion: '--version',
  preset: '--preset',
  epochs: '--epochs',
  learningRate: '--lr',
  batchSize: '--batch-size',
  splitBy: '--split',
  seed: '--seed',
  validationFraction: '--val-fraction',
  earlyStopPatience: '--patience',
};

/**
 * The training job the flags ask for, checked against `trainJobSchema` (the one the HTTP API, the schedule and the
 * trainer use) before anything is contacted; an error names the flag, what it expects and the value.
 */
export function trainJobFromFlags({ v, num }: Pick<CommandInput, 'v' | 'num'>, extra: Partial<TrainJobInput> = {}): TrainJobInput {
  const input: TrainJobInput = {
    dataset: v.dataset!,
    ...(v.version ? { datasetVersion: v.version } : {}),
    ...(v.preset ? { preset: v.preset as 'fast' | 'seed' } : {}),
    ...(v.epochs !== undefined ? { epochs: num('epochs') } : {}),
    ...(v.lr !== undefined ? { learningRate: num('lr') } : {}),
    ...(v['batch-size'] !== undefined ? { batchSize: num('batch-size') } : {}),
    ...(v.split ? { splitBy: v.split as 'auto' | 'item' | 'group' } : {}),
    ...(v.seed !== undefined ? { seed: num('seed') } : {}),
    ...(v['val-fraction'] !== undefined ? { validationFraction: num('val-fraction') } : {}),
    ...(v.patience !== undefined ? { earlyStopPatience: num('patience') } : {}),
    promote: !v['no-promote'],
    ...extra,
  };
  parseWith(trainJobSchema, input, 'train job', TRAIN_FLAGS);
  return input;
}
