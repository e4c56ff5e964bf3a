import type { FlowJob, FlowProducer } from 'bullmq';
import { BULLMQ_PRIORITY, chunkJobId, finalizeJobId, queueNames, type AcceptedLine, type BatchInfo, type BatchJob, type CamJob } from '@camflow/common/core';

/** Job options of a batch's chunks: retried with backoff; a chunk that exhausts them is reported, never blocking. */
export function chunkJobOptions(info: Pick<BatchInfo, 'batchId' | 'attempts' | 'backoffMs' | 'priority'>, chunk: number) {
  return {
    jobId: chunkJobId(info.batchId, chunk),
    priority: BULLMQ_PRIORITY[info.priority ?? 'normal'],
    attempts: info.attempts,
    backoff: { type: 'exponential', delay: info.backoffMs },
    ignoreDependencyOnFailure: true,
    removeOnComplete: { age: 24 * 3600, count: 10_000 },
    removeOnFail: { age: 7 * 24 * 3600 },
  };
}

/** The chunk jobs of a batch, from its manifest's accepted lines (each line carries its chunk). */
export function chunkJobs(info: BatchInfo, accepted: AcceptedLine[], only?: Set<number>): FlowJob[] {
  const byChunk = new Map<number, AcceptedLine[]>();
  for (const line of accepted) {
    if (only && !only.has(line.chunk)) continue;
    const list = byChunk.get(line.chunk) ?? [];
    list.push(line);
    byChunk.set(line.chunk, list);
  }
  return [...byChunk.entries()]
    .sort(([a], [b]) => a - b)
    .map(([chunk, lines]) => {
      const data: CamJob = { batchId: info.batchId, chunk, modelVersion: info.modelVersion, items: lines.map(({ chunk: _c, ...item }) => item), options: info.options };
      return { name: 'chunk', queueName: queueNames.cam, data, opts: chunkJobOptions(info, chunk) };
    });
}

/**
 * Enqueue a batch as one BullMQ flow: the `batch` parent (finalization) runs when its chunk children are done.
 * Job ids are deterministic, so enqueuing the same batch again adds nothing twice.
 */
export async function enqueueBatch(flow: FlowProducer, info: BatchInfo, accepted: AcceptedLine[], only?: Set<number>, moreChildren: FlowJob[] = []): Promise<void> {
  const data: BatchJob = { batchId: info.batchId, modelVersion: info.modelVersion };
  await flow.add({
    name: 'finalize',
    queueName: queueNames.batch,
    data,
    opts: { jobId: finalizeJobId(info.batchId), attempts: info.attempts, backoff: { type: 'exponential', delay: info.backoffMs }, removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 30 * 24 * 3600 } },
    children: [...chunkJobs(info, accepted, only), ...moreChildren],
  });
}
