/** The one place queue and channel names live. */
export const queueNames = {
  cam: 'cam',
  batch: 'batch',
  train: 'train',
  /** Listing pages of S3-prefix batches. */
  ingest: 'ingest',
} as const;

export type QueueName = (typeof queueNames)[keyof typeof queueNames];

/** Redis pub/sub channel on which the trainer announces new model versions. */
export const modelChannel = (prefix: string) => `${prefix}:models`;

/** Id of the nightly retraining job scheduler. */
export const nightlySchedulerId = 'nightly-retrain';

/** Redis key asking the trainer to stop a running training job (`camflow train --cancel`); it expires in a day. */
export const trainCancelKey = (prefix: string, jobId: string) => `${prefix}:train-cancel:${jobId}`;
/** What a training job removed before it started was (its status at removal), kept a week for `train show`. */
export const trainRemovedKey = (prefix: string, jobId: string) => `${prefix}:train-removed:${jobId}`;
