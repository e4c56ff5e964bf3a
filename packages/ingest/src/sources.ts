import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import yauzl from 'yauzl';
import { CamflowError, InvalidParameterError } from '@camflow/common';

/** A file to ingest: a display name (relative path inside the source; metadata only) and its bytes. */
export interface SourceFile {
  name: string;
  read(): Promise<Buffer>;
}

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.tif', '.tiff', '.webp']);

export class SourceError extends CamflowError {
  constructor(message: string) {
    super('SOURCE', message);
  }
}

/** Normalise an archive member name: forward slashes, no leading `/`, no `..` segments (kept as metadata). */
export function safeMemberName(name: string): string {
  return name
    .replace(/\\/g, '/')
    .split('/')
    .filter((part) => part !== '' && part !== '.' && part !== '..')
    .join('/');
}

/** All files under a folder, recursively, sorted by relative path (so the batch order is reproducible). */
export async function listFolder(root: string): Promise<SourceFile[]> {
  const out: SourceFile[] = [];
  const walk = async (dir: string) => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      const full = join(dir, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.isFile() && !e.name.startsWith('.')) out.push({ name: relative(root, full).split(sep).join('/'), read: () => readFile(full) });
    }
  };
  await walk(root);
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

async function readTar(path: string, gzip: boolean): Promise<SourceFile[]> {
  const files: SourceFile[] = [];
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({ strict: false });
    parser.on('entry', (entry: ReadEntry) => {
      if (entry.type !== 'File' && entry.type !== 'OldFile') {
        entry.resume();
        return;
      }
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => {
        const bytes = Buffer.concat(chunks);
        files.push({ name: safeMemberName(entry.path), read: async () => bytes });
      });
    });
    parser.on('end', () => resolve());
    parser.on('error', reject);
    const input = createReadStream(path);
    input.on('error', reject);
    if (gzip) {
      const gunzip = createGunzip();
      gunzip.on('error', (e) => reject(new SourceError(`${path}: not a valid gzip archive: ${e.message}`)));
      input.pipe(gunzip).pipe(parser as unknown as NodeJS.WritableStream);
    } else input.pipe(parser as unknown as NodeJS.WritableStream);
  });
  return files;
}

// yauzl 3's promise API (its @types lag behind).
interface ZipEntry {
  fileName: Buffer | string;
}
interface PromiseZip {
  eachEntry(): AsyncIterable<ZipEntry>;
  openReadStreamPromise(entry: ZipEntry): Promise<NodeJS.ReadableStream>;
  close(): void;
}

async function readZip(path: string): Promise<SourceFile[]> {
  // decodeStrings: false, so a member named "../x" or "/etc/x" is our metadata to clean, not a fatal error.
  let zip: PromiseZip;
  try {
    zip = (await (yauzl as unknown as { openPromise(p: string, o: object): Promise<PromiseZip> }).openPromise(path, { decodeStrings: false })) as PromiseZip;
  } catch (error) {
    throw new SourceError(`${path}: not a valid zip archive: ${(error as Error).message}`);
  }
  const files: SourceFile[] = [];
  try {
    for await (const entry of zip.eachEntry()) {
      const name = Buffer.isBuffer(entry.fileName) ? entry.fileName.toString('utf8') : entry.fileName;
      if (name.endsWith('/')) continue;
      const stream = await zip.openReadStreamPromise(entry);
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(c as Buffer);
      const bytes = Buffer.concat(chunks);
      files.push({ name: safeMemberName(name), read: async () => bytes });
    }
  } finally {
    zip.close();
  }
  return files;
}

/**
 * Open a submission source: a folder, a `.tar`, `.tar.gz`/`.tgz` or `.zip` archive. Archive members are read
 * into memory and never written to disk, so `../` or absolute member paths cannot escape anywhere.
 */
export async function openSource(path: string): Promise<SourceFile[]> {
  let info;
  try {
    info = await stat(path);
  } catch {
    throw new InvalidParameterError('source', 'an existing folder or .tar/.tar.gz/.zip archive', path);
  }
  let files: SourceFile[];
  if (info.isDirectory()) files = await listFolder(path);
  else if (/\.(tar\.gz|tgz)$/i.test(path)) files = await readTar(path, true);
  else if (/\.tar$/i.test(path)) files = await readTar(path, false);
  else if (/\.zip$/i.test(path)) files = await readZip(path);
  else throw new InvalidParameterError('source', 'a folder or a .tar, .tar.gz, .tgz or .zip archive', path);
  return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Does the name look like an image file? Others are reported, not silently dropped. */
export const looksLikeImage = (name: string) => IMAGE_EXT.has(extname(name).toLowerCase());
