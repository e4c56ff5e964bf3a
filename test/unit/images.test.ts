import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { crc32, deflateSync } from 'node:zlib';
import { ImageInputError, decodeRgb, inspectImage, isTruncated, preprocess, sha256Hex } from '@camflow/common';

const solid = (w: number, h: number, channels: 3 | 4, rgba: number[]) =>
  sharp({ create: { width: w, height: h, channels, background: { r: rgba[0]!, g: rgba[1]!, b: rgba[2]!, alpha: (rgba[3] ?? 255) / 255 } } });

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A PNG declaring a size, with the first two rows of zeros compressed: a few hundred bytes on disk. */
function pngHeader(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc((width * 3 + 1) * 2))), chunk('IEND', Buffer.alloc(0))]);
}

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'accepted';
  } catch (e) {
    assert.ok(e instanceof ImageInputError, String(e));
    return e.reason;
  }
}

test('PNG, JPEG, TIFF and WebP decode to RGB at their size; preprocessing resizes to the model input', async () => {
  for (const fmt of ['png', 'jpeg', 'tiff', 'webp'] as const) {
    const bytes = await solid(30, 20, 3, [200, 100, 50]).toFormat(fmt).toBuffer();
    const info = await inspectImage(bytes);
    assert.deepEqual([info.width, info.height], [30, 20]);
    const { input, original, width, height } = await preprocess(bytes, 16);
    assert.equal(input.length, 16 * 16 * 3);
    assert.deepEqual([original!.width, original!.height, width, height], [30, 20, 30, 20]);
    // Without the original: one pipeline, the same input bytes, the same size.
    const lean = await preprocess(bytes, 16, undefined, { keepOriginal: false });
    assert.equal(lean.original, undefined);
    assert.deepEqual([lean.width, lean.height], [30, 20]);
    assert.deepEqual(Buffer.from(lean.input), Buffer.from(input), `${fmt}: same input bytes`);
    assert.ok(Math.abs(input[0]! - 200) < 8 && Math.abs(input[1]! - 100) < 8, `${fmt}: ${input.slice(0, 3)}`);
  }
});

test('alpha is flattened onto black, as the NIH crops', async () => {
  const bytes = await solid(4, 4, 4, [255, 255, 255, 0]).png().toBuffer();
  const rgb = await decodeRgb(bytes);
  assert.deepEqual([...rgb.data.slice(0, 3)], [0, 0, 0]);
});

test('EXIF orientation is applied: a portrait photo stored landscape comes out portrait', async () => {
  const bytes = await solid(40, 20, 3, [10, 20, 30]).jpeg().withMetadata({ orientation: 6 }).toBuffer();
  const info = await inspectImage(bytes);
  assert.deepEqual([info.width, info.height], [20, 40]);
  const rgb = await decodeRgb(bytes);
  assert.deepEqual([rgb.width, rgb.height], [20, 40]);
});

test('16-bit and CMYK inputs are converted to 8-bit sRGB, not refused', async () => {
  const sixteen = await solid(8, 8, 3, [255, 0, 0]).toColourspace('rgb16').png().toBuffer();
  const a = await decodeRgb(sixteen);
  assert.ok(a.data[0]! > 240 && a.data[1]! < 15);
  const cmyk = await solid(8, 8, 3, [0, 0, 255]).jpeg().toColourspace('cmyk').toBuffer();
  assert.equal((await sharp(cmyk).metadata()).space, 'cmyk');
  const b = await decodeRgb(cmyk);
  assert.ok(b.data[2]! > b.data[0]! + 60 && b.data[2]! > b.data[1]! + 60, `cmyk blue → ${b.data.slice(0, 3)}`);
});

test('bad files fail with specific reasons', async () => {
  const png = await solid(64, 64, 3, [1, 2, 3]).png({ compressionLevel: 0 }).toBuffer();
  const jpg = await solid(64, 64, 3, [1, 2, 3]).jpeg().toBuffer();
  assert.equal(await reason(inspectImage(Buffer.alloc(0))), 'empty');
  assert.equal(await reason(inspectImage(Buffer.from('hello, I am text'))), 'unsupported-format');
  assert.equal(await reason(decodeRgb(png.subarray(0, png.length >> 1))), 'truncated');
  assert.equal(await reason(decodeRgb(jpg.subarray(0, jpg.length >> 1))), 'truncated');
  // libvips repeats its warnings on lines of their own: the reason is one line (a result line's error, a CSV cell).
  const cutJpeg = await decodeRgb(jpg.subarray(0, jpg.length >> 1)).catch((e: Error) => e.message);
  assert.match(String(cutJpeg), /^image data is truncated: \S/);
  assert.doesNotMatch(String(cutJpeg), /\n/);
  assert.equal(isTruncated(png), false);
  assert.equal(isTruncated(jpg), false);
  const gif = await solid(4, 4, 3, [1, 2, 3]).gif().toBuffer();
  assert.equal(await reason(inspectImage(gif)), 'unsupported-format');
  // A TIFF cut short (its directory, written after the pixels, is gone) or a bare TIFF header is a TIFF that is
  // truncated, not "not a supported image".
  const tif = await solid(600, 400, 3, [1, 2, 3]).tiff({ tile: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg' }).toBuffer();
  assert.equal(isTruncated(tif), false);
  for (const cut of [tif.subarray(0, tif.length >> 1), Buffer.from('II*\0'), Buffer.from('MM\0*\0\0\0\x08')]) {
    assert.equal(await reason(inspectImage(cut)), 'truncated', `${cut.length} bytes`);
  }
});

test('a decompression bomb is refused from its header, before any pixel is decoded', async () => {
  // A PNG header declaring 50,000 × 50,000 pixels (2.5 gigapixels) in a few dozen bytes.
  const bomb = pngHeader(50_000, 50_000);
  assert.ok(bomb.length < 1000);
  assert.equal(await reason(inspectImage(bomb)), 'too-many-pixels');
  assert.equal(await reason(decodeRgb(bomb)), 'too-many-pixels');
  // And a pathological shape within the limit is accepted as an image (1 × 50,000).
  const thin = await solid(1, 50_000, 3, [9, 9, 9]).png().toBuffer();
  assert.deepEqual(await inspectImage(thin).then((i) => [i.width, i.height]), [1, 50_000]);
});

test('sha256 of the bytes names the original', () => {
  assert.equal(sha256Hex(Buffer.from('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('the one-pipeline preprocessing gives the same input bytes as decode-then-resize (JPEG shrink, EXIF rotation, alpha)', async () => {
  const noise = (w: number, h: number, channels: 3 | 4) => sharp(Buffer.from(Array.from({ length: w * h * channels }, (_, i) => (i * 7919 + ((i * i) % 251)) % 256)), { raw: { width: w, height: h, channels } });
  const cases = {
    'large JPEG (a shrink of more than 2×)': await noise(400, 300, 3).jpeg({ quality: 90 }).toBuffer(),
    'JPEG with EXIF orientation 6': await noise(90, 60, 3).jpeg().withMetadata({ orientation: 6 }).toBuffer(),
    'PNG with alpha': await noise(50, 70, 4).png().toBuffer(),
    'PNG already at the input size': await noise(64, 64, 3).png().toBuffer(),
  };
  for (const [name, bytes] of Object.entries(cases)) {
    const full = await preprocess(bytes, 64);
    const lean = await preprocess(bytes, 64, undefined, { keepOriginal: false });
    assert.deepEqual([lean.width, lean.height], [full.width, full.height], name);
    assert.ok(Buffer.from(lean.input).equals(Buffer.from(full.input)), `${name}: input bytes differ`);
  }
});
