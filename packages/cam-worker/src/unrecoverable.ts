import { UnrecoverableError } from 'bullmq';

/** Run a check that no retry can fix (a malformed payload, a class the model lacks): its failure fails the job for good. */
export function orFailForGood<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw new UnrecoverableError((error as Error).message);
  }
}
