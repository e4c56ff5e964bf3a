import { ImageInputError } from '../errors.js';

/** A pixel whose channels spread by more than this many levels has colour (JPEG chroma noise on grey stays below ~6). */
const CHROMA_LEVELS = 12;
/**
 * Below this share of coloured pixels an image is grey: 1 pixel in 5,000. The palest real smear here has 12 % coloured
 * pixels; one stained 70-px cell in a 5-Mpx field of a neutral background, 0.08 %.
 */
const COLOURED_SHARE = 0.0002;

/** Pixels sampled and, of them, pixels with colour: summed over the regions of a slide read piece by piece. */
export interface ColourCount {
  sampled: number;
  coloured: number;
}

/**
 * A cell crop's pixel has colour above this spread. Tighter than a field's: the palest real NIH crops (washed-out
 * uninfected cells) spread their channels by only 10–14 levels — 8 of the 2,000 development cells have no pixel
 * above `CHROMA_LEVELS` — while a grey crop (three equal channels, a one-channel PNG or JPEG) spreads by 0–2 once
 * resized to the model's input.
 */
export const CELL_CHROMA_LEVELS = 3;

/**
 * Count an RGB image's (`width × height × 3` bytes) coloured pixels (channels spread by more than `chromaLevels`),
 * ~250,000 at most, evenly strided; added to `into` when given (a slide's regions one after another).
 */
export function countColour(rgb: Uint8Array, into: ColourCount = { sampled: 0, coloured: 0 }, chromaLevels = CHROMA_LEVELS): ColourCount {
  const pixels = Math.floor(rgb.length / 3);
  const step = Math.max(1, Math.floor(pixels / 250_000));
  for (let p = 0; p < pixels; p += step) {
    const r = rgb[p * 3]!;
    const g = rgb[p * 3 + 1]!;
    const b = rgb[p * 3 + 2]!;
    into.sampled++;
    if (Math.max(r, g, b) - Math.min(r, g, b) > chromaLevels) into.coloured++;
  }
  return into;
}

/** Pure: whether counted pixels say grey (fewer than 1 in 5,000 coloured; nothing sampled is grey too). */
export const noColour = ({ sampled, coloured }: ColourCount): boolean => sampled === 0 || coloured < COLOURED_SHARE * sampled;

/**
 * Whether an RGB image (`width × height × 3` bytes) holds no colour: a greyscale picture stored as RGB (a monochrome
 * camera, a `b-w` JPEG decoded to sRGB). Reads ~250,000 pixels at most, evenly strided.
 * @example isColourless(new Uint8Array([9, 9, 9, 200, 200, 200])) // true
 */
export const isColourless = (rgb: Uint8Array, chromaLevels = CHROMA_LEVELS): boolean => noColour(countColour(rgb, undefined, chromaLevels));

const STAIN = "camflow tells parasites (and, in a field, cells) by the Giemsa stain's colours";

/**
 * The refusal of a cell crop whose model input (`width × height` original, resized) has no colour, else undefined.
 * One rule and one message wherever a crop is checked: at ingest, in `dataset add`, in the cam-worker.
 */
export function greyCellRefusal(input: Uint8Array, width: number, height: number): ImageInputError | undefined {
  if (!isColourless(input, CELL_CHROMA_LEVELS)) return undefined;
  return new ImageInputError('greyscale', `the cell crop has no colour (${width}×${height}, a greyscale image): ${STAIN}; submit the colour image`);
}

/** The refusal of an image stored in grey (one channel, or grey with alpha: a monochrome camera, a `b-w` JPEG), read off its header. */
export function greyImageRefusal(kind: 'cell' | 'field', width: number, height: number): ImageInputError {
  return new ImageInputError('greyscale', `the ${kind === 'cell' ? 'cell crop' : 'image'} has no colour (stored as one grey channel, ${width}×${height}): ${STAIN}; submit the colour image`);
}
