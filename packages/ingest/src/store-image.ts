import { ImageInputError, tooLargeToReadWhole, encodePng, errorMessage, greyCellRefusal, greyImageRefusal, inspectImage, keys, preprocess, sha256Hex, type ObjectStore } from '@camflow/common/core';

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
 * Validate an image's header against the pixel limits (a cell within `maxPixels`; with `kindOf`, a field may be a
 * whole-slide scan up to `maxSlidePixels`, read region by region) and name its content: nothing is stored.
 */
export async function checkOriginal(
  bytes: Buffer,
  maxPixels: number,
  kindOf?: (width: number, height: number) => 'cell' | 'field',
  maxSlidePixels = maxPixels,
  maxFieldPixels = maxPixels,
): Promise<StoredImage & { kind: 'cell' | 'field'; format: string }> {
  const info = await inspectImage(bytes, Math.max(maxPixels, kindOf ? maxSlidePixels : maxPixels));
  const kind = kindOf?.(info.width, info.height) ?? 'cell';
  if (kind === 'cell' && info.width * info.height > maxPixels) {
    throw new ImageInputError('too-many-pixels', `image is ${info.width}×${info.height} = ${info.width * info.height} pixels, above the limit of ${maxPixels} for a cell (a field may have up to ${maxSlidePixels}: --kind fields)`);
  }
  tooLargeToReadWhole(info, maxFieldPixels);
  if (info.grey) throw greyImageRefusal(kind, info.width, info.height);
  return { sha256: sha256Hex(bytes), ext: info.ext, width: info.width, height: info.height, kind, format: info.format };
}

/** Store checked bytes content-addressed under `originals/`, once per run (`known` holds the hashes stored). */
export async function putOriginal(store: ObjectStore, bytes: Buffer, image: { sha256: string; ext: string; format: string }, known?: Set<string>): Promise<void> {
  if (known?.has(image.sha256)) return;
  await store.put(keys.original(image.sha256, image.ext), bytes, `image/${image.format}`);
  known?.add(image.sha256);
}

/**
 * Validate an image and store its bytes content-addressed under `originals/`. `known` holds hashes already stored
 * in this run, so duplicates cost no second PUT.
 *
 * A cell crop is also decoded and resized to the model's input here (`cellInput.size`), so what a cam-worker would
 * refuse — pixels that do not decode, a crop without colour — is refused now, with its reason, and nothing of it is
 * stored. With `cellInput.pack`, the model input comes back as a lossless PNG (`inputPng`) for the chunk's input
 * pack. A field is searched for cells by the worker: here only its header is read (a one-channel field is refused).
 */
export async function storeOriginal(
  store: ObjectStore,
  bytes: Buffer,
  maxPixels: number,
  known?: Set<string>,
  cellInput?: { size: number; pack: boolean },
  kindOf?: (width: number, height: number) => 'cell' | 'field',
  maxSlidePixels = maxPixels,
  maxFieldPixels = maxPixels,
): Promise<StoredImage & { kind: 'cell' | 'field'; inputPng?: Buffer }> {
  const { format, ...checked } = await checkOriginal(bytes, maxPixels, kindOf, maxSlidePixels, maxFieldPixels);
  const { sha256, ext, width, height, kind } = checked;
  const stored = { sha256, ext, width, height, kind };
  let inputPng: Buffer | undefined;
  if (cellInput && kind === 'cell') {
    const { input } = await preprocess(bytes, cellInput.size, maxPixels, { keepOriginal: false });
    const grey = greyCellRefusal(input, width, height);
    if (grey) throw grey;
    if (cellInput.pack) inputPng = await encodePng(input, cellInput.size, cellInput.size);
  }
  await putOriginal(store, bytes, { ...checked, format }, known);
  return inputPng ? { ...stored, inputPng } : stored;
}
