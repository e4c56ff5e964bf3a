import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename, extname, sep } from 'node:path';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import yauzl from 'yauzl';
import { ListObjectsCommand, GetObjectCommand, type ListObjectsCommandOutput } from '@aws-sdk/client-s3';
import { CamflowError, ImageInputError, InvalidParameterError, ObjectStore, withoutUserInfo, type Refusal } from '@camflow/common/core';

/**
 * An entry of a submission: a display name (its relative path inside the source; metadata only) and either its
 * bytes, to read on demand, or the reason it is refused. Every entry the user submitted becomes one of these, so
 * every entry gets exactly one result line.
 */
export type SourceFile = { name: string; read(): Promise<Buffer> } | { name: string; refused: Refusal };

export interface SourceLimits {
  /** Largest file or archive member, in bytes (uncompressed). */
  maxFileBytes: number;
  /** Largest total of an archive's uncompressed members, in bytes; members past it are refused. */
  maxArchiveBytes: number;
}

export const defaultSourceLimits: SourceLimits = { maxFileBytes: 64 * 1024 ** 2, maxArchiveBytes: 16 * 1024 ** 3 };

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.tif', '.tiff', '.webp']);

export class SourceError extends CamflowError {
  /** A refusal no retry can change (credentials, access, a missing bucket), as opposed to an outage. */
  readonly permanent: boolean;
  constructor(message: string, options: { permanent?: boolean } = {}) {
    super('SOURCE', message);
    this.permanent = options.permanent ?? false;
  }
}

/**
 * S3 error codes that say the request will never succeed as made (a wrong key or signature, no access, no such
 * bucket). By code only: an HTTP status alone is not enough (a 400 RequestTimeout or ExpiredToken, a proxy's 404
 * during a rolling update pass), and a credentials provider that found nothing may be an instance-metadata timeout.
 */
const PERMANENT_S3_ERRORS = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'AllAccessDisabled', 'NoSuchBucket', 'InvalidBucketName', 'AccountProblem']);
const isPermanentS3Error = (error: unknown): boolean => PERMANENT_S3_ERRORS.has((error as { name?: string }).name ?? '');

/** Every process that lists a source reads these of its own environment: the CLI at submit, then each ingest worker. */
const WHERE_SET = 'in the environment of each process that lists it — the submitting command or API server (`camflow serve`) and every ingest worker (`camflow worker ingest`, `camflow dev`) read their own';
/** Without SOURCE_AWS_*, the SDK's default chain answers: perhaps camflow's own store keys, which the source refuses. */
const DEFAULT_CHAIN = ' (none is set here: the AWS SDK\'s default chain was used — AWS_ACCESS_KEY_ID, a profile or an instance role — perhaps camflow\'s own store keys)';

/**
 * Pure: why a source store refused or did not answer, with the setting that decides it (`where`: the store asked).
 * @example sourceProblem(Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }), 'AWS S3 (us-east-1)')
 */
export function sourceProblem(error: unknown, where: string, sourceKeys = true): string {
  const e = (error instanceof Error ? error : new Error(String(error))) as NodeJS.ErrnoException & { name?: string };
  const code = e.code ?? '';
  if (e.name === 'CredentialsProviderError' || /could not load credentials/i.test(e.message)) {
    return `${where} needs credentials: set SOURCE_AWS_ACCESS_KEY_ID and SOURCE_AWS_SECRET_ACCESS_KEY ${WHERE_SET}`;
  }
  if (e.name === 'InvalidAccessKeyId' || e.name === 'SignatureDoesNotMatch' || e.name === 'AccessDenied') {
    return `${where} refused these credentials (${e.name}): check SOURCE_AWS_ACCESS_KEY_ID and SOURCE_AWS_SECRET_ACCESS_KEY${sourceKeys ? '' : DEFAULT_CHAIN} ${WHERE_SET}`;
  }
  if (e.name === 'NoSuchBucket') return `no such bucket (asked ${where}; the bucket is the URL's first part, SOURCE_S3_ENDPOINT names the store)`;
  if (/^(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH)$/.test(code)) {
    return `${where} does not answer (${code}): check SOURCE_S3_ENDPOINT (and SOURCE_S3_REGION) ${WHERE_SET}`;
  }
  return `${where}: ${e.message}`;
}

const refuse = (name: string, reason: string, error: string): SourceFile => ({ name, refused: { reason, error } });
const tooLarge = (name: string, bytes: number | string, limit: number) => refuse(name, 'file-too-large', `${bytes} bytes, above the limit of ${limit} bytes per file (MAX_FILE_BYTES)`);

/**
 * Normalise an archive member's or an upload's name: forward slashes, no leading `/`, `.` dropped and `..` resolved as a
 * path resolves it (`P/../U/x.png` is `U/x.png`: the folder a name ends in is its class), never above the root (kept as
 * metadata: nothing is written under it).
 */
export function safeMemberName(name: string): string {
  const parts: string[] = [];
  for (const part of name.replace(/\\/g, '/').split('/')) {
    if (part === '..') parts.pop();
    else if (part !== '' && part !== '.') parts.push(part);
  }
  return parts.join('/');
}

/** A path segment as text: UTF-8 when it is, else with U+FFFD for the undecodable bytes (the name is metadata). */
const segmentName = (raw: Buffer) => raw.toString('utf8');

/**
 * Every entry under a folder, recursively, sorted by relative path (so the batch order is reproducible). Names are
 * read as bytes, so a file whose name is not UTF-8 is still read. Dot-files are entries like any other. A symbolic
 * link is followed only when it resolves inside the folder: a link to a file there is read, a link to a folder
 * there is reported (its files are submitted under their own path), a link outside the folder or a dangling one is
 * refused. Fifos, sockets and devices are refused, never opened.
 */
export async function listFolder(root: string, limits: SourceLimits = defaultSourceLimits): Promise<SourceFile[]> {
  const rootReal = await realpath(root);
  const inside = (p: string) => p === rootReal || p.startsWith(rootReal.endsWith(sep) ? rootReal : rootReal + sep);
  const out: SourceFile[] = [];
  const walk = async (dir: Buffer, rel: string) => {
    const entries = await readdir(dir, { withFileTypes: true, encoding: 'buffer' });
    for (const e of entries) {
      const rawName = e.name as unknown as Buffer;
      const full = Buffer.concat([dir, Buffer.from(sep), rawName]);
      const name = rel ? `${rel}/${segmentName(rawName)}` : segmentName(rawName);
      if (e.isDirectory()) {
        await walk(full, name);
      } else if (e.isFile()) {
        const size = (await stat(full)).size;
        out.push(size > limits.maxFileBytes ? tooLarge(name, size, limits.maxFileBytes) : { name, read: () => readFile(full) });
      } else if (e.isSymbolicLink()) {
        let target: string;
        try {
          target = await realpath(full);
        } catch {
          out.push(refuse(name, 'broken-link', 'symbolic link whose target does not exist'));
          continue;
        }
        if (!inside(target)) {
          out.push(refuse(name, 'outside-source', 'symbolic link to a path outside the submitted folder: not followed'));
          continue;
        }
        const info = await stat(target);
        if (info.isDirectory()) out.push(refuse(name, 'link-to-folder', 'symbolic link to a folder inside the submission: its files are submitted under their own path'));
        else if (!info.isFile()) out.push(refuse(name, 'not-a-file', 'symbolic link to something that is not a regular file'));
        else if (info.size > limits.maxFileBytes) out.push(tooLarge(name, info.size, limits.maxFileBytes));
        else out.push({ name, read: () => readFile(target) });
      } else {
        const info = await lstat(full);
        const kind = info.isFIFO() ? 'a fifo' : info.isSocket() ? 'a socket' : info.isCharacterDevice() || info.isBlockDevice() ? 'a device' : 'not a regular file';
        out.push(refuse(name, 'not-a-file', `${kind}: only regular files are read`));
      }
    }
  };
  await walk(Buffer.from(root), '');
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Read a stream into memory up to `limit` bytes. Past the limit the rest is drained (never kept) and undefined is
 * returned, so a member that inflates to gigabytes costs time, not memory.
 */
async function readBounded(stream: AsyncIterable<Buffer | string>, limit: number): Promise<{ bytes?: Buffer; size: number }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    size += c.length;
    if (size <= limit) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
    else chunks.length = 0;
  }
  return size <= limit ? { bytes: Buffer.concat(chunks), size } : { size };
}

/** Tar members, streamed in order: each member is read as the parser reaches it; the file stream pauses while members wait. */
async function* tarEntries(path: string, gzip: boolean, limits: SourceLimits): AsyncGenerator<SourceFile> {
  const parser = new Parser({ strict: false });
  const ready: Promise<SourceFile>[] = [];
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  let total = 0;
  // Hard links point at earlier members: their bytes are kept by name (bounded by the member and archive limits).
  const seen = new Map<string, Promise<Buffer | undefined>>();
  parser.on('entry', (entry: ReadEntry) => {
    const name = safeMemberName(entry.path);
    const type = entry.type;
    let result: Promise<SourceFile>;
    if (type === 'File' || type === 'OldFile' || type === 'ContiguousFile') {
      const declared = entry.size ?? 0;
      if (declared > limits.maxFileBytes) {
        entry.resume();
        result = Promise.resolve(tooLarge(name, declared, limits.maxFileBytes));
      } else if (total + declared > limits.maxArchiveBytes) {
        entry.resume();
        result = Promise.resolve(refuse(name, 'archive-too-large', `the archive's members add up to more than ${limits.maxArchiveBytes} bytes (MAX_ARCHIVE_BYTES)`));
      } else {
        total += declared;
        const read = readBounded(entry as unknown as AsyncIterable<Buffer>, limits.maxFileBytes);
        // Kept for hard links: the last 32 members of at most 8 MiB (256 MiB at worst; cells are ~50 KB).
        if (declared <= 8 * 1024 ** 2) {
          seen.set(name, read.then((r) => r.bytes));
          if (seen.size > 32) seen.delete(seen.keys().next().value!);
        }
        result = read.then(({ bytes, size }) => (bytes ? { name, read: async () => bytes } : tooLarge(name, size, limits.maxFileBytes)));
      }
    } else if (type === 'Link') {
      entry.resume();
      const targetName = safeMemberName(entry.linkpath ?? '');
      const target = seen.get(targetName);
      result = (target ?? Promise.resolve(undefined)).then((bytes) =>
        bytes ? { name, read: async () => bytes } : refuse(name, 'broken-link', `hard link to "${targetName}", which is not one of the 32 members before it (of at most 8 MiB)`),
      );
    } else if (type === 'SymbolicLink') {
      entry.resume();
      result = Promise.resolve(refuse(name, 'symlink-member', 'symbolic link member: links inside archives are not followed'));
    } else if (type === 'Directory' || type === 'GNUDumpDir' || /Header|Extended|NextFileHas/.test(type)) {
      entry.resume();
      return;
    } else {
      entry.resume();
      result = Promise.resolve(refuse(name, 'not-a-file', `archive member of type ${type}: only regular files are read`));
    }
    result.catch(() => undefined);
    ready.push(result);
    notify();
  });
  parser.on('end', () => {
    ended = true;
    notify();
  });
  const fail = (error: Error) => {
    failure = error;
    notify();
  };
  parser.on('error', fail);
  // Pull the file through (gunzip and) the parser only while few members wait: memory stays at a few members,
  // whatever the archive's size.
  let space: (() => void) | undefined;
  const pump = (async () => {
    const raw = createReadStream(path);
    const source: AsyncIterable<Buffer> = gzip ? raw.pipe(createGunzip()) : raw;
    try {
      for await (const chunk of source) {
        parser.write(chunk);
        while (ready.length > 8 && !failure) await new Promise<void>((resolve) => (space = resolve));
      }
      parser.end();
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      fail(gzip && e.code?.startsWith('Z_') ? new SourceError(`not a valid gzip archive: ${e.message}`) : e);
    } finally {
      raw.destroy();
    }
  })();
  try {
    for (;;) {
      if (ready.length > 0) {
        const next = await ready.shift()!;
        space?.();
        space = undefined;
        yield next;
        continue;
      }
      if (failure) throw failure;
      if (ended) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    failure ??= new SourceError('closed');
    space?.();
    await pump;
  }
}

// yauzl 3's promise API (its @types lag behind).
interface ZipEntry {
  fileName: Buffer | string;
  uncompressedSize: number;
  externalFileAttributes: number;
}
interface PromiseZip {
  eachEntry(): AsyncIterable<ZipEntry>;
  openReadStreamPromise(entry: ZipEntry): Promise<AsyncIterable<Buffer>>;
  close(): void;
}

/** Zip members, streamed one at a time; declared and actual sizes are both held to the limits. */
async function* zipEntries(path: string, limits: SourceLimits): AsyncGenerator<SourceFile> {
  // decodeStrings: false, so a member named "../x" or "/etc/x" is our metadata to clean, not a fatal error.
  let zip: PromiseZip;
  try {
    zip = (await (yauzl as unknown as { openPromise(p: string, o: object): Promise<PromiseZip> }).openPromise(path, { decodeStrings: false })) as PromiseZip;
  } catch (error) {
    throw new SourceError(`not a valid zip archive: ${(error as Error).message}`);
  }
  let total = 0;
  try {
    for await (const entry of zip.eachEntry()) {
      const raw = Buffer.isBuffer(entry.fileName) ? entry.fileName.toString('utf8') : entry.fileName;
      if (raw.endsWith('/')) continue;
      const name = safeMemberName(raw);
      const mode = (entry.externalFileAttributes >>> 16) & 0o170000;
      if (mode === 0o120000) {
        yield refuse(name, 'symlink-member', 'symbolic link member: links inside archives are not followed');
        continue;
      }
      if (mode !== 0 && mode !== 0o100000) {
        yield refuse(name, 'not-a-file', 'archive member that is not a regular file');
        continue;
      }
      if (entry.uncompressedSize > limits.maxFileBytes) {
        yield tooLarge(name, entry.uncompressedSize, limits.maxFileBytes);
        continue;
      }
      if (total + entry.uncompressedSize > limits.maxArchiveBytes) {
        yield refuse(name, 'archive-too-large', `the archive's members add up to more than ${limits.maxArchiveBytes} bytes (MAX_ARCHIVE_BYTES)`);
        continue;
      }
      let result: SourceFile;
      try {
        const { bytes, size } = await readBounded(await zip.openReadStreamPromise(entry), limits.maxFileBytes);
        total += size;
        result = bytes ? { name, read: async () => bytes } : tooLarge(name, size, limits.maxFileBytes);
      } catch (error) {
        result = refuse(name, 'corrupt-member', `archive member cannot be read: ${(error as Error).message}`);
      }
      yield result;
    }
  } finally {
    zip.close();
  }
}

export async function* fromArray(files: SourceFile[]): AsyncGenerator<SourceFile> {
  yield* files;
}

/** Where an `s3://bucket/prefix` source is read from: its own endpoint and credentials (not camflow's store). */
export interface S3SourceOptions {
  endpoint?: string | undefined;
  region?: string | undefined;
  forcePathStyle?: boolean | undefined;
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
}

/** Pure: `s3://bucket/some/prefix` → bucket and prefix (a prefix that names a folder gets its trailing `/`). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new InvalidParameterError('source', 's3://bucket[/prefix] with a valid bucket name', url);
  const prefix = m[2] ?? '';
  return { bucket: m[1]!, prefix: prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/` };
}

/** An S3 prefix opened for reading: its bucket and prefix, and a client for the source store. */
export interface S3Prefix {
  url: string;
  bucket: string;
  prefix: string;
  store: ObjectStore;
  /** The store asked, as errors name it (`S3 at http://…`, `AWS S3 (region)`): no credentials in it. */
  where: string;
  /** Whether SOURCE_AWS_* gave the credentials (else the SDK's default chain did). */
  sourceKeys: boolean;
}

export function openS3Prefix(url: string, options: S3SourceOptions = {}): S3Prefix {
  const { bucket, prefix } = parseS3Url(url);
  const store = new ObjectStore({ bucket, endpoint: options.endpoint, region: options.region, forcePathStyle: options.forcePathStyle, credentials: options.credentials, maxSockets: 8 });
  const where = options.endpoint ? `S3 at ${withoutUserInfo(options.endpoint)}` : `AWS S3 (${options.region ?? 'us-east-1'})`;
  return { url, bucket, prefix, store, where, sourceKeys: options.credentials !== undefined };
}

/** One page of an S3 listing: the objects (folder markers left out) and whether more follow after the last key. */
export interface S3Page {
  objects: { key: string; size: number }[];
  /** The last key listed (folder markers included): the marker of the next page. */
  last?: string;
  truncated: boolean;
}

/**
 * List one page (at most `pageSize` keys, ≤ 1,000) after `marker`. ListObjects (v1) with Marker = the last key read
 * (a plain key: the natural checkpoint of a resumable listing). Not v2: s3rver answers every truncated v2 listing with
 * a continuation token it encrypts with DES, a cipher OpenSSL 3 (Node ≥ 17) no longer offers. Every S3-compatible
 * store serves v1.
 */
export async function listS3Page(source: S3Prefix, marker: string | undefined, pageSize = 1000): Promise<S3Page> {
  let page: ListObjectsCommandOutput;
  try {
    page = await source.store.client.send(new ListObjectsCommand({ Bucket: source.bucket, Prefix: source.prefix, MaxKeys: pageSize, ...(marker ? { Marker: marker } : {}) }));
  } catch (error) {
    throw new SourceError(`cannot list ${source.url}: ${sourceProblem(error, source.where, source.sourceKeys)}`, { permanent: isPermanentS3Error(error) });
  }
  const contents = page.Contents ?? [];
  const last = contents.at(-1)?.Key;
  return {
    objects: contents.filter((o) => o.Key && !o.Key.endsWith('/')).map((o) => ({ key: o.Key!, size: o.Size ?? 0 })),
    ...(last ? { last } : {}),
    truncated: Boolean(page.IsTruncated) && contents.length > 0,
  };
}

/**
 * The entries of listed objects, read one by one as streams held to `maxFileBytes` (larger objects are refused from
 * the listing, never downloaded). Names are keys relative to the prefix, so `Parasitized/x.png` keeps its folder.
 */
export function s3ObjectEntries(source: S3Prefix, objects: { key: string; size: number }[], limits: SourceLimits): SourceFile[] {
  return objects.map(({ key, size }) => {
    const name = key.slice(source.prefix.length);
    if (size > limits.maxFileBytes) return tooLarge(name, size, limits.maxFileBytes);
    return {
      name,
      read: async () => {
        const out = await source.store.client.send(new GetObjectCommand({ Bucket: source.bucket, Key: key }));
        const { bytes, size: read } = await readBounded(out.Body as AsyncIterable<Buffer>, limits.maxFileBytes);
        if (!bytes) throw new ImageInputError('file-too-large', `${read} bytes or more, above the limit of ${limits.maxFileBytes} bytes per file (MAX_FILE_BYTES)`);
        return bytes;
      },
    };
  });
}

/** Every object under an S3 prefix, page after page (a listing in one process; batches list page by page in `ingest` jobs). */
async function* s3Entries(url: string, options: S3SourceOptions, limits: SourceLimits): AsyncGenerator<SourceFile> {
  const source = openS3Prefix(url, options);
  let marker: string | undefined;
  let any = false;
  for (;;) {
    const page = await listS3Page(source, marker);
    any ||= page.objects.length > 0;
    yield* s3ObjectEntries(source, page.objects, limits);
    if (!page.truncated) break;
    marker = page.last;
  }
  if (!any) throw new InvalidParameterError('source', 'an S3 prefix holding at least one object', url);
}

/** A submission source: its entries, streamed in order. */
export interface OpenedSource {
  kind: 'folder' | 'file' | 'tar' | 'zip' | 'upload' | 's3';
  entries: AsyncIterable<SourceFile>;
}

/**
 * Open a submission source: a folder, or a `.tar`, `.tar.gz`/`.tgz` or `.zip` archive. Archive members are
 * streamed one at a time, held to per-member and total size limits, and never written to disk, so `../` or
 * absolute member paths cannot escape anywhere.
 * @example for await (const entry of (await openSource('./cells.zip')).entries) …
 */
export async function openSource(path: string, limits: SourceLimits = defaultSourceLimits, s3: S3SourceOptions = {}): Promise<OpenedSource> {
  if (path.startsWith('s3://')) {
    parseS3Url(path); // a malformed URL fails here, before anything is listed
    return { kind: 's3', entries: s3Entries(path, s3, limits) };
  }
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch {
    throw new InvalidParameterError('source', 'an existing folder, image, or .tar/.tar.gz/.zip archive', path);
  }
  if (info.isDirectory()) return { kind: 'folder', entries: fromArray(await listFolder(path, limits)) };
  if (/\.(tar\.gz|tgz)$/i.test(path)) return { kind: 'tar', entries: tarEntries(path, true, limits) };
  if (/\.tar$/i.test(path)) return { kind: 'tar', entries: tarEntries(path, false, limits) };
  if (/\.zip$/i.test(path)) return { kind: 'zip', entries: zipEntries(path, limits) };
  // One image (a smear field, a slide scan): a batch of one, named by its file name.
  if (info.isFile() && looksLikeImage(path)) {
    const name = basename(path);
    return { kind: 'file', entries: fromArray([info.size > limits.maxFileBytes ? tooLarge(name, info.size, limits.maxFileBytes) : { name, read: () => readFile(path) }]) };
  }
  throw new InvalidParameterError('source', 'a folder, an image, or a .tar, .tar.gz, .tgz or .zip archive', path);
}

/** Uploaded files as a source. */
export const uploadSource = (files: SourceFile[]): OpenedSource => ({ kind: 'upload', entries: fromArray(files) });

/** All entries of a source in memory (small sources and tests). */
export async function collectEntries(source: OpenedSource): Promise<SourceFile[]> {
  const out: SourceFile[] = [];
  for await (const e of source.entries) out.push(e);
  return out;
}

/** Does the name look like an image file? Others are reported, not silently dropped. */
export const looksLikeImage = (name: string) => IMAGE_EXT.has(extname(name).toLowerCase());

