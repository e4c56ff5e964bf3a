import { Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { InvalidParameterError, NotFoundError } from '../errors.js';
import { trainCancelKey, trainRemovedKey } from './names.js';
import { trainJobOptions, trainingJobStatus } from './train-jobs.js';

export interface TrainCancelReport {
  jobId: string;
  /** `removed`: it had not started; `stopping`: the trainer stops it within ten steps; `none`: it had finished. */
  action: 'removed' | 'stopping' | 'none';
  state: string;
}

/** Cancel a training job: a waiting one is removed; a running one is asked to stop (nothing is published). */
export async function cancelTraining(queue: Queue, redis: Redis, prefix: string, jobId: string): Promise<TrainCancelReport> {
  const job = await Job.fromId(queue, jobId);
  if (!job) {
    // Removed already (by an earlier cancel): nothing to do, said as such.
    if ((await redis.exists(trainRemovedKey(prefix, jobId))) > 0) return { jobId, action: 'none', state: 'removed' };
    throw new NotFoundError('training job', jobId);
  }
  const state = await job.getState();
  // The schedule's next run belongs to the schedule: BullMQ refuses to remove it alone.
  if (job.repeatJobKey && state === 'delayed') {
    throw new InvalidParameterError('jobId', 'a queued or running training job (the retraining schedule\'s next run goes with the schedule: `camflow schedule remove`, DELETE /v1/schedule)', jobId);
  }
  if (state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'waiting-children') {
    // `train show` still knows it afterwards: removed by the operator, when, before it started.
    const record = { ...trainingJobStatus(job, state), state: 'removed', removedAt: new Date().toISOString() };
    await job.remove();
    // Kept as long as a finished job is.
    await redis.set(trainRemovedKey(prefix, jobId), JSON.stringify(record), 'EX', trainJobOptions.removeOnComplete.age);
    return { jobId, action: 'removed', state };
  }
  if (state === 'active') {
    await redis.set(trainCancelKey(prefix, jobId), new Date().toISOString(), 'EX', 86_400);
    return { jobId, action: 'stopping', state };
  }
  return { jobId, action: 'none', state };
}
