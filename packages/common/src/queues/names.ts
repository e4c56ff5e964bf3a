/** The one place queue and channel names live. */
export const queueNames = {
  cam: 'cam',
  batch: 'batch',
  train: 'train',
} as const;

export type QueueName = (typeof queueNames)[keyof typeof queueNames];

/** Redis pub/sub channel on which the trainer announces new model versions. */
export const modelChannel = (prefix: string) => `${prefix}:models`;

/** Id of the nightly retraining job scheduler. */
export const nightlySchedulerId = 'nightly-retrain';
