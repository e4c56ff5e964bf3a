import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { ImageInputError, decodeRgbPng, encodePng, packInputs, unpackInputs } from '@camflow/common';

/** Texture that makes libpng pick every row filter (flat runs, gradients, noise). */
function texture(w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) out[(y * w + x) * 3 + c] = y % 4 === 0 ? 128 : y % 4 === 1 ? (x * 3 + c * 40) & 255 : y % 4 === 2 ? (x * y + c) & 255 : ((x * 7919) ^ (y * 104729) ^ c) & 255;
  return out;
}

test('the in-process PNG decoder returns exactly the pixels sharp encoded, for every compression level', async () => {
  const rgb = texture(37, 29);
  for (const level of [0, 1, 6, 9]) {
    const png = await sharp(rgb, { raw: { width: 37, height: 29, channels: 3 } }).png({ compressionLevel: level, adaptiveFiltering: true }).toBuffer();
    const decoded = decodeRgbPng(png)!;
    assert.deepEqual([decoded.width, decoded.height], [37, 29]);
    assert.ok(Buffer.from(decoded.data).equals(Buffer.from(rgb)), `level ${level}`);
  }
  const ours = decodeRgbPng(await encodePng(rgb, 37, 29))!;
  assert.ok(Buffer.from(ours.data).equals(Buffer.from(rgb)), 'camflow\'s own encoder');
});

test('other PNG flavours are left to sharp; damaged data is refused with a reason', async () => {
  const interlaced = await sharp(texture(8, 8), { raw: { width: 8, height: 8, channels: 3 } }).png({ progressive: true }).toBuffer();
  const palette = await sharp(texture(8, 8), { raw: { width: 8, height: 8, channels: 3 } }).png({ palette: true }).toBuffer();
  assert.equal(decodeRgbPng(interlaced), undefined, 'Adam7 interlaced');
  assert.equal(decodeRgbPng(palette), undefined, 'palette');
  assert.equal(decodeRgbPng(Buffer.from('not a png at all, not even close')), undefined);
  const png = Buffer.from(await encodePng(texture(16, 16), 16, 16));
  const reason = (f: () => unknown) => {
    try {
      f();
    } catch (error) {
      return error instanceof ImageInputError ? error.reason : `other: ${error}`;
    }
    return 'no error';
  };
  assert.equal(reason(() => decodeRgbPng(png.subarray(0, 60))), 'truncated');
  const idat = png.indexOf('IDAT');
  const garbled = Buffer.from(png);
  garbled.fill(0xff, idat + 4, idat + 20);
  assert.equal(reason(() => decodeRgbPng(garbled)), 'corrupt');
});

test('an input pack returns each payload under its sha256, and a damaged pack is refused', () => {
  const entries = [
    { sha256: 'a'.repeat(64), png: Uint8Array.of(1, 2, 3) },
    { sha256: 'b'.repeat(64), png: Uint8Array.of(4, 5) },
  ];
  const pack = packInputs(128, entries);
  const { size, inputs } = unpackInputs(pack);
  assert.equal(size, 128);
  assert.deepEqual([...inputs.entries()].map(([k, v]) => [k, Array.from(v)]), [['a'.repeat(64), [1, 2, 3]], ['b'.repeat(64), [4, 5]]]);
  assert.throws(() => unpackInputs(pack.subarray(0, pack.length - 1)), /runs past the end/);
  assert.throws(() => unpackInputs(Buffer.from([200, 0, 0, 0, 1])), /runs past the end/);
  const notJson = Buffer.concat([Buffer.from([3, 0, 0, 0]), Buffer.from('{{{')]);
  assert.throws(() => unpackInputs(notJson), /not JSON/);
});
