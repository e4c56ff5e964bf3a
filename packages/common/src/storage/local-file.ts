// Writing a local file from a stream so that it is whole or absent: beside it under a temporary name of its own, renamed
// once complete. Used by `camflow download` for the objects it copies and for the results.csv it writes.
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm, utimes } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CamflowError } from '../errors.js';

/** A temporary name, `FILE.<pid>-<8 hex>.part`, and (group 1) the process that wrote it. */
export const PART_FILE = /\.(\d+)-[0-9a-f]{8}\.part$/;

export interface LocalWrite {
  /** The length the source announced: fewer bytes is the source's failure, reported through `sourceError`. */
  expectedBytes?: number | undefined;
  /** The file's modification time once written (the object's, so that a later copy can tell it is the same). */
  modified?: Date | undefined;
  /** What a failure of the source (not the disk) becomes; rethrown as it is by default. */
  sourceError?: (error: unknown) => unknown;
}

/**
 * Stream `body` into `file`. Two writers of one file never share a temporary name; an interrupted write leaves no
 * `file`, only (if killed outright) its `.part`. A local failure (disk full, permissions) is a WRITE_FAILED naming the
 * file. The bytes written.
 */
export async function writeLocalFile(file: string, body: Readable, options: LocalWrite = {}): Promise<number> {
  const part = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.part`;
  const sink = createWriteStream(part);
  const writeFailed = (error: Error) => new CamflowError('WRITE_FAILED', `could not write ${file}: ${error.message}`, { cause: error });
  let diskError: Error | undefined;
  sink.on('error', (error) => (diskError = error));
  const sourceError = options.sourceError ?? ((error: unknown) => error);
  try {
    await pipeline(body, sink);
    if (options.expectedBytes !== undefined && sink.bytesWritten !== options.expectedBytes) {
      throw sourceError(new Error(`the body ended after ${sink.bytesWritten} of ${options.expectedBytes} bytes`));
    }
  } catch (error) {
    await rm(part, { force: true });
    if (diskError) throw writeFailed(diskError);
    throw error instanceof CamflowError ? error : sourceError(error);
  }
  try {
    if (options.modified) await utimes(part, options.modified, options.modified);
    await rename(part, file);
  } catch (error) {
    await rm(part, { force: true });
    throw writeFailed(error as Error);
  }
  return sink.bytesWritten;
}
