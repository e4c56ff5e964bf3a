import { createHash } from 'node:crypto';
import sharp, { type Metadata, type ResizeOptions, type Sharp } from 'sharp';
import { ImageInputError, InvalidParameterError } from '../errors.js';

// No libvips operation cache: every image is decoded once, and a cache would only hold memory.
sharp.cache(false);

/**
 * One libvips thread per pipeline, for processes that already run one pipeline per image concurrently (cam-workers,
 * the trainer's dataset snapshots): libvips' own pool would oversubscribe the cores. Processes that decode one upload
 * at a time (the API, `submit`) keep libvips' default, a thread per core.
 */
export function useOneImageThread(): void {
  sharp.concurrency(1);
}

/** Formats camflow accepts, by sharp's format name → the extension stored. */
const ACCEPTED: Record<string, string> = { png: 'png', jpeg: 'jpg', tiff: 'tiff', webp: 'webp' };

/** An RGB image in memory: interleaved bytes, `width × height × 3`. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface ImageInfo {
  format: string;
  ext: string;
  /** Width and height after EXIF orientation. */
  width: number;
  height: number;
  /** EXIF orientation (1: stored upright). */
  orientation: number;
  /** A TIFF stored in tiles: a region can be decoded without the rest (what whole-slide scans need). */
  tiled: boolean;
  /** Stored with one grey channel (± alpha): no colour to read, whatever the pixels. */
  grey: boolean;
}

/**
 * A field above `maxFieldPixels` is read region by region, which only a tiled TIFF allows without decoding it all;
 * anything else that large is refused (a small PNG can hold a 16,000² image of zeros). The worker checks the same.
 */
export function tooLargeToReadWhole(info: { width: number; height: number; format: string; tiled: boolean }, maxFieldPixels: number): void {
  if (info.width * info.height > maxFieldPixels && !info.tiled) {
    throw new ImageInputError(
      'too-many-pixels',
      `image is ${info.width}×${info.height} = ${info.width * info.height} pixels, above MAX_FIELD_PIXELS (${maxFieldPixels}); a field this large must be a tiled TIFF (whole-slide scans are), which is read region by region — this is a ${info.tiled ? 'tiled' : 'non-tiled'} ${info.format}`,
    );
  }
}

interface TiffEntry {
  type: number;
  count: number;
  /** Where the values are: inline in the entry when they fit, else at the offset the entry names. */
  at: number;
}

/**
 * The first image directory of a TIFF, read from its bytes: `undefined` when the bytes are not a TIFF, `cut` when they
 * end before the header, the directory or a strip or tile it names (a file cut short; `tags` when the directory was read).
 */
function firstTiffDirectory(bytes: Uint8Array): { cut: boolean; tags?: Map<number, TiffEntry> } | undefined {
  const little = bytes[0] === 0x49 && bytes[1] === 0x49;
  if (bytes.length < 4 || (!little && !(bytes[0] === 0x4d && bytes[1] === 0x4d))) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint16(2, little);
  // Classic TIFF (42): 2-byte entry count, 12-byte entries; BigTIFF (43): 8-byte count and offsets, 20-byte entries.
  const big = magic === 43;
  if (magic !== 42 && !big) return undefined;
  if (bytes.length < (big ? 16 : 8)) return { cut: true };
  const ifd = big ? Number(view.getBigUint64(8, little)) : view.getUint32(4, little);
  if (ifd < 8 || ifd + (big ? 8 : 2) > bytes.length) return { cut: true };
  const count = big ? Number(view.getBigUint64(ifd, little)) : view.getUint16(ifd, little);
  const first = ifd + (big ? 8 : 2);
  if (first + count * (big ? 20 : 12) > bytes.length) return { cut: true };
  const tags = new Map<number, TiffEntry>();
  const sizes: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8 };
  for (let i = 0; i < count; i++) {
    const e = first + i * (big ? 20 : 12);
    const type = view.getUint16(e + 2, little);
    const n = big ? Number(view.getBigUint64(e + 4, little)) : view.getUint32(e + 4, little);
    const inline = n * (sizes[type] ?? 1) <= (big ? 8 : 4);
    const at = inline ? e + (big ? 12 : 8) : big ? Number(view.getBigUint64(e + 12, little)) : view.getUint32(e + 8, little);
    tags.set(view.getUint16(e, little), { type, count: n, at });
  }
  // The pixels: every strip (273/279) or tile (324/325) must end within the file.
  const value = (entry: TiffEntry, k: number): number | undefined => {
    const size = sizes[entry.type] ?? 0;
    const o = entry.at + k * size;
    if (o + size > bytes.length) return undefined;
    return entry.type === 3 ? view.getUint16(o, little) : entry.type === 4 ? view.getUint32(o, little) : entry.type === 16 ? Number(view.getBigUint64(o, little)) : undefined;
  };
  for (const [offsetsTag, countsTag] of [[273, 279], [324, 325]] as const) {
    const offsets = tags.get(offsetsTag);
    const counts = tags.get(countsTag);
    if (!offsets || !counts) continue;
    for (let k = 0; k < Math.min(offsets.count, counts.count); k++) {
      const o = value(offsets, k);
      const c = value(counts, k);
      if (o === undefined || c === undefined || o + c > bytes.length) return { cut: true, tags };
    }
  }
  return { cut: false, tags };
}

/** Whether a TIFF's first image directory has tiles (tags 322/323, TileWidth/TileLength), from the header bytes. */
export function isTiledTiff(bytes: Uint8Array): boolean {
  const dir = firstTiffDirectory(bytes);
  return dir?.tags !== undefined && (dir.tags.has(322) || dir.tags.has(323));
}

export const sha256Hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** The default pixel limit: 16384 × 16383, sharp's own default, refuses decompression bombs before decoding. */
export const DEFAULT_MAX_PIXELS = 268_402_689;

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
const PNG_IEND = Buffer.from('IEND');

/**
 * Is the file cut short? Decided from the bytes (PNG without its IEND chunk, JPEG without its EOI marker, a TIFF
 * ending before its directory or a strip or tile it names), since
 * libvips' error text is not reliable when several decodes fail at once ("Unknown error").
 */
export function isTruncated(bytes: Uint8Array): boolean {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.subarray(0, 4).equals(PNG_SIGNATURE)) return b.lastIndexOf(PNG_IEND) < 0 || b.lastIndexOf(PNG_IEND) < b.length - 12;
  if (b[0] === 0xff && b[1] === 0xd8) {
    // Trailing padding after EOI is common; look for FFD9 near the end.
    const tail = b.subarray(Math.max(0, b.length - 64));
    for (let i = tail.length - 2; i >= 0; i--) if (tail[i] === 0xff && tail[i + 1] === 0xd9) return false;
    return true;
  }
  return firstTiffDirectory(bytes)?.cut === true;
}

/**
 * Pure: a decoder's message on one line — libvips writes each warning on a line of its own and repeats them
 * (`premature end of JPEG image` three times): each distinct line once, joined by "; ".
 * @example oneLine('VipsJpeg: premature end\nVipsJpeg: Bogus marker\nVipsJpeg: premature end\n') // 'VipsJpeg: premature end; VipsJpeg: Bogus marker'
 */
export function oneLine(message: string): string {
  return [...new Set(message.split(/\r?\n/).map((l) => l.trim()).filter(Boolean))].join('; ');
}

function classify(error: unknown, bytes?: Uint8Array): ImageInputError {
  const message = oneLine(error instanceof Error ? error.message : String(error));
  if (bytes && isTruncated(bytes)) {
    // libvips calls a TIFF whose directory is missing "unsupported image format": not the news here.
    const detail = /unsupported image format/i.test(message) ? `the file ends at ${bytes.length} bytes, before the data its header points to` : message;
    return new ImageInputError('truncated', `image data is truncated: ${detail}`, { cause: error });
  }
  if (/pixel limit/i.test(message)) return new ImageInputError('too-many-pixels', `image exceeds the pixel limit: ${message}`, { cause: error });
  if (/unsupported image format/i.test(message)) return new ImageInputError('unsupported-format', 'not a supported image (PNG, JPEG, TIFF or WebP)', { cause: error });
  if (/premature end|truncat|unexpected end|not enough data/i.test(message)) {
    return new ImageInputError('truncated', `image data is truncated: ${message}`, { cause: error });
  }
  if (/corrupt|read error|IDAT|crc|invalid/i.test(message)) return new ImageInputError('corrupt', `image data is corrupt: ${message}`, { cause: error });
  return new ImageInputError('undecodable', `image cannot be decoded: ${message}`, { cause: error });
}

/**
 * A pyramidal TIFF (what slide scanners and libvips write): every page a smaller copy of the first. Only the first,
 * full-resolution page is read; a TIFF of unrelated pages stays refused.
 */
async function isPyramid(bytes: Uint8Array, meta: Metadata, maxPixels: number): Promise<boolean> {
  let previous = meta.width ?? 0;
  for (let page = 1; page < Math.min(meta.pages ?? 1, 12); page++) {
    const m = await sharp(bytes, { page, limitInputPixels: maxPixels }).metadata().catch(() => undefined);
    if (!m?.width || m.width > 0.75 * previous) return false;
    previous = m.width;
  }
  return true;
}

/**
 * Read and validate an image's header: format, oriented size, pixel limit, single page. Throws ImageInputError
 * with a reason (`empty`, `unsupported-format`, `too-many-pixels`, `multi-page`, `bad-dimensions`, …).
 * @example const info = await inspectImage(bytes);
 */
export async function inspectImage(bytes: Uint8Array, maxPixels = DEFAULT_MAX_PIXELS): Promise<ImageInfo> {
  if (bytes.byteLength === 0) throw new ImageInputError('empty', 'file is empty (0 bytes)');
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: maxPixels }).metadata();
  } catch (error) {
    throw classify(error, bytes);
  }
  const format = meta.format ?? 'unknown';
  const ext = ACCEPTED[format];
  if (!ext) throw new ImageInputError('unsupported-format', `format "${format}" is not accepted (PNG, JPEG, TIFF or WebP)`);
  if ((meta.pages ?? 1) > 1 && !(format === 'tiff' && (await isPyramid(bytes, meta, maxPixels)))) {
    throw new ImageInputError('multi-page', `image has ${meta.pages} pages or frames; submit one image per file`);
  }
  const rotated = (meta.orientation ?? 1) >= 5;
  const width = rotated ? meta.height : meta.width;
  const height = rotated ? meta.width : meta.height;
  if (!width || !height) throw new ImageInputError('bad-dimensions', 'image has no width or height');
  if (width * height > maxPixels) {
    throw new ImageInputError('too-many-pixels', `image is ${width}×${height} = ${width * height} pixels, above the limit of ${maxPixels}`);
  }
  return { format, ext, width, height, orientation: meta.orientation ?? 1, tiled: format === 'tiff' && isTiledTiff(bytes), grey: (meta.channels ?? 3) <= 2 || meta.space === 'b-w' || meta.space === 'grey16' };
}

/** The decoding pipeline: EXIF auto-orient, alpha flattened onto black, 8-bit sRGB, three channels. */
export function rgbPipeline(bytes: Uint8Array, maxPixels: number): Sharp {
  return sharp(bytes, { limitInputPixels: maxPixels, failOn: 'truncated' })
    .rotate()
    .flatten({ background: { r: 0, g: 0, b: 0 } })
    .toColourspace('srgb')
    .removeAlpha();
}

/**
 * Decode one region of an image (oriented coordinates), with the same pipeline as `decodeRgb`. For tiled TIFFs
 * libvips reads only the tiles under the region, so a whole-slide scan larger than memory is read piece by piece.
 */
export async function decodeRegion(bytes: Uint8Array, region: { left: number; top: number; width: number; height: number }, maxPixels: number): Promise<RgbImage> {
  try {
    const { data, info } = await rgbPipeline(bytes, maxPixels).extract(region).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new ImageInputError('undecodable', `decoded to ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (error) {
    if (error instanceof ImageInputError) throw error;
    throw classify(error, bytes);
  }
}

/** The model-input resize: cubic, aspect ratio not kept (as the seed), never libjpeg's approximate shrink-on-load. */
const inputResize = (size: number): ResizeOptions => ({ width: size, height: size, fit: 'fill', kernel: 'cubic', fastShrinkOnLoad: false });

/**
 * Decode to RGB: EXIF auto-orient, any colour space (CMYK, 16-bit, grey) converted to 8-bit sRGB, alpha
 * flattened onto black (the NIH crops' background).
 */
export async function decodeRgb(bytes: Uint8Array, maxPixels = DEFAULT_MAX_PIXELS): Promise<RgbImage> {
  // Header checks first (format, pages, pixel limit): a bomb is refused before any pixel is decoded.
  await inspectImage(bytes, maxPixels);
  try {
    const { data, info } = await rgbPipeline(bytes, maxPixels).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new ImageInputError('undecodable', `decoded to ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (error) {
    if (error instanceof ImageInputError) throw error;
    throw classify(error, bytes);
  }
}

/**
 * Resize an RGB image to the model's square input with cubic interpolation, as the seed's
 * `cv2.resize(..., INTER_CUBIC)` (aspect ratio not kept, as the seed).
 */
export async function resizeRgb(image: RgbImage, size: number): Promise<Uint8Array> {
  if (!Number.isInteger(size) || size < 8 || size > 2048) throw new InvalidParameterError('size', 'an integer in [8, 2048]', size);
  if (image.width === size && image.height === size) return image.data;
  const out = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(inputResize(size))
    .raw()
    .toBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

export interface Preprocessed {
  /** The model input, `size × size × 3` bytes. */
  input: Uint8Array;
  /** The original (oriented) size. */
  width: number;
  height: number;
  /** The decoded original, unless `keepOriginal` was false. */
  original?: RgbImage;
}

/**
 * Decode, orient, flatten and resize to the model input. With `keepOriginal: false` (no heatmap or overlay to draw)
 * the decode and the resize are one libvips pipeline and the original's pixels are not returned; the input bytes
 * are the same either way (JPEG/WebP reduced 2× or more still take two steps: their shrink-on-load differs).
 * @example const { input, width, height } = await preprocess(bytes, 128, undefined, { keepOriginal: false });
 */
export async function preprocess(bytes: Uint8Array, size: number, maxPixels = DEFAULT_MAX_PIXELS, options: { keepOriginal?: boolean } = {}): Promise<Preprocessed> {
  if (!Number.isInteger(size) || size < 8 || size > 2048) throw new InvalidParameterError('size', 'an integer in [8, 2048]', size);
  const info = options.keepOriginal ?? true ? undefined : await inspectImage(bytes, maxPixels);
  // Two steps where one pipeline would resample differently: JPEG and WebP shrink on load when a side is reduced 2×
  // or more, and libvips resizes a rotated image before rotating it.
  const twoSteps = info && (info.orientation !== 1 || ((info.format === 'jpeg' || info.format === 'webp') && Math.max(info.width, info.height) >= 2 * size));
  if (!info || twoSteps) {
    const original = await decodeRgb(bytes, maxPixels);
    return { input: await resizeRgb(original, size), width: original.width, height: original.height, ...(info ? {} : { original }) };
  }
  try {
    const pipeline = rgbPipeline(bytes, maxPixels);
    const out = await (info.width === size && info.height === size ? pipeline : pipeline.resize(inputResize(size))).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (out.info.channels !== 3) throw new ImageInputError('undecodable', `decoded to ${out.info.channels} channels, expected 3`);
    return { input: new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength), width: info.width, height: info.height };
  } catch (error) {
    if (error instanceof ImageInputError) throw error;
    throw classify(error, bytes);
  }
}

/** PNG-encode interleaved RGB (or grey when `channels` is 1). */
export async function encodePng(data: Uint8Array, width: number, height: number, channels: 1 | 3 = 3): Promise<Buffer> {
  return sharp(data, { raw: { width, height, channels } }).png({ compressionLevel: 6 }).toBuffer();
}
