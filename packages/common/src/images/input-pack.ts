import { z } from 'zod';
import { CamflowError } from '../errors.js';
import { parseWith } from '../validate.js';

/**
 * A chunk's model inputs in one object: `u32 header length (LE) · header JSON · PNG payloads`. The header names
 * each payload by the image's sha256, so a reader never pairs an input with the wrong item; an image whose input
 * could not be made has no entry.
 */
const headerSchema = z.object({
  v: z.literal(1),
  size: z.number().int().positive(),
  entries: z.array(z.object({ sha256: z.string(), bytes: z.number().int().positive() })),
});

export function packInputs(size: number, entries: { sha256: string; png: Uint8Array }[]): Buffer {
  const header = Buffer.from(JSON.stringify({ v: 1, size, entries: entries.map((e) => ({ sha256: e.sha256, bytes: e.png.byteLength })) }));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(header.length);
  return Buffer.concat([length, header, ...entries.map((e) => e.png)]);
}

/** The payloads of a pack by sha256 (views into `bytes`, no copies). Throws CamflowError on a malformed pack. */
export function unpackInputs(bytes: Uint8Array): { size: number; inputs: Map<string, Uint8Array> } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 4) throw new CamflowError('INPUT_PACK', `input pack of ${b.length} bytes has no header`);
  const headerLength = b.readUInt32LE(0);
  if (4 + headerLength > b.length) throw new CamflowError('INPUT_PACK', `input pack header of ${headerLength} bytes runs past the end (${b.length} bytes)`);
  let raw: unknown;
  try {
    raw = JSON.parse(b.toString('utf8', 4, 4 + headerLength));
  } catch (error) {
    throw new CamflowError('INPUT_PACK', `input pack header is not JSON: ${(error as Error).message}`);
  }
  const header = parseWith(headerSchema, raw, 'input pack header');
  const inputs = new Map<string, Uint8Array>();
  let offset = 4 + headerLength;
  for (const e of header.entries) {
    if (offset + e.bytes > b.length) throw new CamflowError('INPUT_PACK', `input pack entry ${e.sha256} runs past the end`);
    inputs.set(e.sha256, b.subarray(offset, offset + e.bytes));
    offset += e.bytes;
  }
  return { size: header.size, inputs };
}
