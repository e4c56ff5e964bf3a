import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import sharp, { type Sharp } from 'sharp';

/** One file of a Deep Zoom pyramid: `<name>.dzi` or `<name>_files/<level>/<col>_<row>.<ext>`. */
export interface DeepZoomFile {
  path: string;
  file: string;
}

/**
 * Cut an RGB or RGBA image into a Deep Zoom pyramid (DZI layout, 256-px tiles, 1-px overlap) with libvips, into a
 * temporary folder. Tiles are JPEG for RGB and PNG for RGBA (a heatmap keeps its transparency). Call `dispose()`
 * once the files are copied out.
 * @example const dz = await deepZoom(rgb, 5312, 2988, 3, 'field'); for (const f of dz.files) …; await dz.dispose();
 */
export async function deepZoom(pixels: Uint8Array, width: number, height: number, channels: 3 | 4, name: string): Promise<{ files: DeepZoomFile[]; dispose(): Promise<void> }> {
  return deepZoomOf(sharp(pixels, { raw: { width, height, channels } }), channels, name);
}

/**
 * The same from a libvips pipeline (e.g. an encoded whole-slide scan: `dzsave` streams it, so a slide larger than
 * memory is tiled without being decoded whole).
 */
export async function deepZoomOf(image: Sharp, channels: 3 | 4, name: string): Promise<{ files: DeepZoomFile[]; dispose(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'camflow-dz-'));
  try {
    await (channels === 4 ? image.png({ compressionLevel: 6 }) : image.jpeg({ quality: 85 }))
      .tile({ size: 256, overlap: 1, layout: 'dz', container: 'fs' })
      .toFile(join(dir, `${name}.dz`));
    const files: DeepZoomFile[] = [];
    const walk = async (d: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true })) {
        const full = join(d, e.name);
        if (e.isDirectory()) await walk(full);
        else if (e.name !== 'vips-properties.xml') files.push({ path: relative(dir, full), file: full });
      }
    };
    await walk(dir);
    files.sort((a, b) => (a.path < b.path ? -1 : 1));
    return { files, dispose: () => rm(dir, { recursive: true, force: true }) };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
