import { ImageInputError, encodePng, errorMessage, inspectImage, keys, preprocess, sha256Hex, type ObjectStore } from '@camflow/common';

export interface StoredImage {
  sha256: string;
  ext: string;
  width: number;
  height: number;
}

/** Why an item was refused, as one line for its result: `reason: message`. */
export function rejectionReason(error: unknown): string {
  if (error instanceof ImageInputError) return `${error.reason}: ${error.message}`;
  return errorMessage(error);
}

/**
 * Validate an image's header and store its bytes content-addressed under `originals/`. `known` holds hashes
 * already stored in this run, so duplicates cost no second PUT.
 *
 * With `inputSize`, also store the model input (`images/<size>/…png`, lossless) so that cam-workers skip the
 * decode and resize. That copy is a cache: an image that does not decode gets none, and the cam-worker then
 * decodes the original itself and fails that item with the reason.
 */
export async function storeOriginal(store: ObjectStore, bytes: Buffer, maxPixels: number, known?: Set<string>, inputSize?: number): Promise<StoredImage> {
  const info = await inspectImage(bytes, maxPixels);
  const sha256 = sha256Hex(bytes);
  if (!known?.has(sha256)) {
    await store.put(keys.original(sha256, info.ext), bytes, `image/${info.format}`);
    if (inputSize) {
      const input = await preprocess(bytes, inputSize, maxPixels, { keepOriginal: false }).then(
        (p) => p.input,
        (error: unknown) => {
          if (error instanceof ImageInputError) return undefined;
          throw error;
        },
      );
      if (input) await store.put(keys.preprocessed(inputSize, sha256), await encodePng(input, inputSize, inputSize), 'image/png');
    }
    known?.add(sha256);
  }
  return { sha256, ext: info.ext, width: info.width, height: info.height };
}
