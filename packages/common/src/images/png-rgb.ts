import { inflateSync } from 'node:zlib';
import { ImageInputError } from '../errors.js';

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * Decode an 8-bit RGB, non-interlaced PNG (the model inputs camflow stores under `images/<size>/`) in-process:
 * one inflate and the five scanline filters, no libvips round trip. Any other PNG flavour returns `undefined`
 * (decode it with sharp); a damaged file throws ImageInputError.
 */
export function decodeRgbPng(bytes: Uint8Array): { data: Uint8Array; width: number; height: number } | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 33 || SIGNATURE.some((v, i) => b[i] !== v)) return undefined;
  let pos = 8;
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  let ended = false;
  while (pos + 8 <= b.length) {
    const length = b.readUInt32BE(pos);
    const type = b.toString('latin1', pos + 4, pos + 8);
    const body = b.subarray(pos + 8, pos + 8 + length);
    if (body.length !== length) throw new ImageInputError('truncated', `PNG chunk ${type} is cut short`);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      const [depth, colour, , , interlace] = [body[8], body[9], body[10], body[11], body[12]];
      if (depth !== 8 || colour !== 2 || interlace !== 0) return undefined;
    } else if (type === 'IDAT') idat.push(body);
    else if (type === 'IEND') {
      ended = true;
      break;
    }
    pos += 12 + length;
  }
  if (!ended) throw new ImageInputError('truncated', 'PNG ends before its IEND chunk');
  if (!width || !height || idat.length === 0) throw new ImageInputError('corrupt', 'PNG has no header or no image data');
  const stride = width * 3;
  let raw: Buffer;
  try {
    raw = inflateSync(idat.length === 1 ? idat[0]! : Buffer.concat(idat));
  } catch (error) {
    throw new ImageInputError('corrupt', `PNG image data does not inflate: ${(error as Error).message}`, { cause: error });
  }
  if (raw.length !== height * (stride + 1)) throw new ImageInputError('corrupt', `PNG image data is ${raw.length} bytes, expected ${height * (stride + 1)}`);
  const out = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    const up = row - stride;
    switch (filter) {
      case 0:
        out.set(raw.subarray(src, src + stride), row);
        break;
      case 1: // Sub
        for (let x = 0; x < stride; x++) out[row + x] = (raw[src + x]! + (x >= 3 ? out[row + x - 3]! : 0)) & 255;
        break;
      case 2: // Up
        for (let x = 0; x < stride; x++) out[row + x] = (raw[src + x]! + (y > 0 ? out[up + x]! : 0)) & 255;
        break;
      case 3: // Average
        for (let x = 0; x < stride; x++) out[row + x] = (raw[src + x]! + (((x >= 3 ? out[row + x - 3]! : 0) + (y > 0 ? out[up + x]! : 0)) >> 1)) & 255;
        break;
      case 4: // Paeth
        for (let x = 0; x < stride; x++) {
          const a = x >= 3 ? out[row + x - 3]! : 0;
          const c = x >= 3 && y > 0 ? out[up + x - 3]! : 0;
          const bb = y > 0 ? out[up + x]! : 0;
          const p = a + bb - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - bb);
          const pc = Math.abs(p - c);
          out[row + x] = (raw[src + x]! + (pa <= pb && pa <= pc ? a : pb <= pc ? bb : c)) & 255;
        }
        break;
      default:
        throw new ImageInputError('corrupt', `PNG row ${y} has unknown filter ${filter}`);
    }
  }
  return { data: out, width, height };
}
