import {
  CreateBucketCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsCommand,
  type ListObjectsCommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { Agent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { CamflowError, NotFoundError } from '../errors.js';
import { writeLocalFile } from './local-file.js';

/** One entry of a listing: its key, size in bytes and, where the store says, when it was last written. */
export interface StoredObject {
  key: string;
  size: number;
  modified?: Date;
}

/** Bodies above this size go through a multipart upload. */
const MULTIPART_THRESHOLD = 16 * 1024 * 1024;

export interface ObjectStoreOptions {
  bucket: string;
  endpoint?: string | undefined;
  region?: string;
  forcePathStyle?: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  maxSockets?: number;
}

/** An S3 request failed for a reason other than "not found" (outage, auth, throttling). Retryable. */
export class StorageError extends CamflowError {
  constructor(operation: string, key: string, cause: unknown) {
    const status = (cause as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
    super('STORAGE', `S3 ${operation} ${key} failed: ${publicReason(cause)}${status ? ` (HTTP ${status})` : ''}`, { cause });
  }
}

/**
 * An error's reason without the storage's internal address: what a result line, a response or a status may carry
 * (the full error, with its address, goes to the log as `cause`).
 */
export function publicReason(error: unknown): string {
  const e = error as { code?: string; name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const message = (e?.message ?? String(error))
    // Not an s3:// URL: that is a bucket and prefix the user named (a source), not where a server listens.
    .replace(/\b(?!s3:)[a-z][a-z0-9+.-]*:\/\/[^\s"')]+/gi, '<endpoint>')
    .replace(/\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b/g, '<address>')
    .replace(/\[[0-9a-f:]+\](?::\d+)?/gi, '<address>');
  const code = e?.code && !message.includes(e.code) ? ` (${e.code})` : '';
  return `${message}${code}`;
}

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/**
 * S3-compatible object store bound to one bucket. Works against AWS S3, MinIO and s3rver.
 * @example const store = new ObjectStore({ bucket: 'camflow', endpoint: 'http://127.0.0.1:9000' });
 *          await store.putJson('models/channels/production.json', { version });
 */
export class ObjectStore {
  readonly bucket: string;
  readonly client: S3Client;

  constructor(options: ObjectStoreOptions) {
    this.bucket = options.bucket;
    const maxSockets = options.maxSockets ?? 32;
    const config: S3ClientConfig = {
      region: options.region ?? 'us-east-1',
      forcePathStyle: options.forcePathStyle ?? true,
      // Plain checksums only when required: s3rver and older MinIO do not speak aws-chunked bodies.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: new NodeHttpHandler({
        // An unreachable endpoint fails in seconds, not at the OS's TCP timeout.
        connectionTimeout: 5000,
        requestTimeout: 120_000,
        httpAgent: new Agent({ keepAlive: true, maxSockets }),
        httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
      }),
      maxAttempts: 3,
    };
    if (options.endpoint) config.endpoint = options.endpoint;
    if (options.credentials) config.credentials = options.credentials;
    this.client = new S3Client(config);
  }

  /**
   * The bucket exists, or is created when `create` (the default, for stores camflow owns: tests, the demo); with
   * `create` false a missing bucket is a NotFoundError — a mistyped name must not become a new, empty store. Services
   * started together may all create it: the ones that lose the race find it theirs. A refused creation (access, an
   * invalid name) is a StorageError, so its HTTP status reaches the caller's message.
   */
  async ensureBucket(create = true): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      if (!isNotFound(error)) throw new StorageError('HeadBucket', this.bucket, error);
      if (!create) throw new NotFoundError('bucket', this.bucket);
      try {
        await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }));
      } catch (createError) {
        // Created meanwhile by another service (BucketAlreadyOwnedByYou; s3rver says BucketAlreadyExists): ours if it
        // answers now.
        // AWS answers a creation racing another with 409 OperationAborted: the bucket is there a moment later.
        const name = (createError as { name?: string }).name;
        const status = (createError as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (name === 'BucketAlreadyOwnedByYou' || name === 'BucketAlreadyExists' || status === 409) {
          for (let attempt = 0; attempt < 10; attempt++) {
            if (await this.client.send(new HeadBucketCommand({ Bucket: this.bucket })).then(() => true, () => false)) return;
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
        }
        throw new StorageError('CreateBucket', this.bucket, createError);
      }
    }
  }

  async put(key: string, body: Uint8Array | string, contentType = 'application/octet-stream'): Promise<void> {
    const size = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
    try {
      if (size > MULTIPART_THRESHOLD) {
        await new Upload({
          client: this.client,
          params: { Bucket: this.bucket, Key: key, Body: body, ContentType: contentType },
          partSize: 8 * 1024 * 1024,
          queueSize: 4,
        }).done();
      } else {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType }));
      }
    } catch (error) {
      throw new StorageError('PUT', key, error);
    }
  }

  /** An object's response, its body not yet read; NotFoundError when absent, StorageError for any other failure. */
  private async getObject(key: string): Promise<GetObjectCommandOutput> {
    try {
      return await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      if (isNotFound(error)) throw new NotFoundError('object', key);
      throw new StorageError('GET', key, error);
    }
  }

  /** Bytes of an object; NotFoundError when absent. */
  async get(key: string): Promise<Buffer> {
    // A body cut off after its headers (a connection reset; s3rver, which writes objects in place, aborts a read that
    // races a write of the same key) is read again twice: the SDK's own retries end when the headers arrive.
    for (let attempt = 0; ; attempt++) {
      const out = await this.getObject(key);
      try {
        const bytes = await out.Body!.transformToByteArray();
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      } catch (error) {
        if (attempt >= 2) throw new StorageError('GET', key, error);
        await new Promise((resolve) => setTimeout(resolve, 100 * (attempt + 1)));
      }
    }
  }

  /** The lines of a text object, streamed (memory: one line and the stream's buffer); NotFoundError when absent. */
  async *lines(key: string): AsyncGenerator<string> {
    const body = (await this.getObject(key)).Body as Readable;
    try {
      yield* createInterface({ input: body, crlfDelay: Infinity });
    } catch (error) {
      throw new StorageError('GET', key, error);
    }
  }

  /**
   * Copy an object to a local file, streamed (memory: the stream's buffer, whatever its size). Written beside the file
   * under a name of its own (`FILE.<pid>-<random>.part`: two copies into one folder never share one) and renamed when
   * every byte the store announced has arrived, so an interrupted copy never looks like a finished one; the file then
   * carries the object's modification time. NotFoundError when absent; a local failure is a WRITE_FAILED naming the file.
   */
  async download(key: string, file: string): Promise<{ bytes: number; modified?: Date }> {
    const out = await this.getObject(key);
    const bytes = await writeLocalFile(file, out.Body as Readable, {
      expectedBytes: out.ContentLength,
      modified: out.LastModified,
      sourceError: (error) => new StorageError('GET', key, error),
    });
    return { bytes, ...(out.LastModified ? { modified: out.LastModified } : {}) };
  }

  /** Write an object from a stream of chunks (multipart past 8 MiB): memory is a few parts, whatever its size. */
  async putStream(key: string, body: AsyncIterable<string | Uint8Array>, contentType = 'application/octet-stream'): Promise<void> {
    // An error of the body's producer (a corrupt input it reads, say) is its own error, not a storage one.
    let producerError: unknown;
    async function* guarded() {
      try {
        for await (const part of body) yield typeof part === 'string' ? Buffer.from(part) : part;
      } catch (error) {
        producerError = error;
        throw error;
      }
    }
    try {
      await new Upload({ client: this.client, params: { Bucket: this.bucket, Key: key, Body: Readable.from(guarded()), ContentType: contentType }, partSize: 8 * 1024 * 1024, queueSize: 2 }).done();
    } catch (error) {
      if (producerError !== undefined) throw producerError;
      throw new StorageError('PUT', key, error);
    }
  }

  /** Bytes of an object, or undefined when absent. */
  async getIfExists(key: string): Promise<Buffer | undefined> {
    try {
      return await this.get(key);
    } catch (error) {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== undefined;
  }

  async head(key: string): Promise<{ size: number; etag?: string } | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: out.ContentLength ?? 0, ...(out.ETag ? { etag: out.ETag } : {}) };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw new StorageError('HEAD', key, error);
    }
  }

  async putJson(key: string, value: unknown): Promise<void> {
    await this.put(key, JSON.stringify(value, null, 2), 'application/json');
  }

  async getJson<T = unknown>(key: string): Promise<T> {
    const value = await this.getJsonIfExists<T>(key);
    if (value === undefined) throw new NotFoundError('object', key);
    return value;
  }

  /**
   * Parse a JSON object. s3rver writes objects in place, so a read racing a write can see a partial body (S3 and
   * MinIO PUTs are atomic): an unparseable body is read again a few times before it is reported as corrupt.
   */
  async getJsonIfExists<T = unknown>(key: string): Promise<T | undefined> {
    for (let attempt = 0; ; attempt++) {
      const bytes = await this.getIfExists(key);
      if (bytes === undefined) return undefined;
      try {
        return JSON.parse(bytes.toString('utf8')) as T;
      } catch (error) {
        if (attempt >= 4) throw new CamflowError('CORRUPT_OBJECT', `object ${key} is not valid JSON (${bytes.length} bytes): ${(error as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 50 * (attempt + 1)));
      }
    }
  }

  /**
   * Every key under a prefix, page by page. ListObjects v1 with `Marker` (the last key or prefix read), not v2:
   * s3rver answers truncated v2 listings with a DES-encrypted continuation token that OpenSSL 3 cannot make, so any
   * v2 listing past 1,000 keys fails there; v1 works on every S3-compatible store.
   */
  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    for await (const page of this.listPages(prefix)) out.push(...page);
    return out;
  }

  /** The keys under a prefix a page (≤ 1,000) at a time, read as they are consumed: memory is one page. */
  async *listPages(prefix: string): AsyncGenerator<StoredObject[]> {
    let marker: string | undefined;
    for (;;) {
      let page: ListObjectsCommandOutput;
      try {
        page = await this.client.send(new ListObjectsCommand({ Bucket: this.bucket, Prefix: prefix, ...(marker ? { Marker: marker } : {}) }));
      } catch (error) {
        throw new StorageError('LIST', prefix, error);
      }
      const objects = (page.Contents ?? []).map((o) => ({ key: o.Key!, size: o.Size ?? 0, ...(o.LastModified ? { modified: o.LastModified } : {}) }));
      if (objects.length) yield objects;
      const last = objects.map((o) => o.key).sort().pop();
      if (!page.IsTruncated || !last) return;
      marker = page.NextMarker ?? last;
    }
  }

  /** The "folders" directly under a prefix (S3 common prefixes with delimiter `/`), at most `max` of them. */
  async listPrefixes(prefix: string, max = 1000): Promise<string[]> {
    const out: string[] = [];
    await this.pages(prefix, '/', (page) => {
      for (const p of page.CommonPrefixes ?? []) if (p.Prefix && out.length < max) out.push(p.Prefix);
      return out.length < max;
    });
    return out;
  }

  private async pages(prefix: string, delimiter: string | undefined, onPage: (page: ListObjectsCommandOutput) => boolean): Promise<void> {
    let marker: string | undefined;
    try {
      for (;;) {
        const page = await this.client.send(new ListObjectsCommand({ Bucket: this.bucket, Prefix: prefix, ...(delimiter ? { Delimiter: delimiter } : {}), ...(marker ? { Marker: marker } : {}) }));
        const more = onPage(page);
        const last = [...(page.Contents ?? []).map((o) => o.Key ?? ''), ...(page.CommonPrefixes ?? []).map((p) => p.Prefix ?? '')].sort().pop();
        if (!more || !page.IsTruncated || !last) return;
        marker = page.NextMarker ?? last;
      }
    } catch (error) {
      throw new StorageError('LIST', prefix, error);
    }
  }

  /** Delete keys in pages of 1,000 (the S3 limit per request). */
  async deleteMany(keyList: string[]): Promise<void> {
    for (let i = 0; i < keyList.length; i += 1000) {
      const page = keyList.slice(i, i + 1000);
      let failed: { Key?: string; Code?: string; Message?: string } | undefined;
      try {
        const out = await this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: page.map((Key) => ({ Key })) } }));
        // S3 answers 200 and lists the keys it could not delete (access, throttling, object lock) in `Errors`.
        failed = out.Errors?.[0];
      } catch (error) {
        throw new StorageError('DELETE', page[0] ?? '', error);
      }
      if (failed) throw new StorageError('DELETE', failed.Key ?? page[0] ?? '', Object.assign(new Error(failed.Message ?? 'not deleted'), { code: failed.Code }));
    }
  }

  destroy(): void {
    this.client.destroy();
  }
}

/** Run `task` over `items` with at most `limit` in flight; results keep the input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index]!, index);
    }
  });
  await Promise.all(runners);
  return results;
}

/** A concurrency limiter: `limit(task)` runs `task` when fewer than `concurrency` are running. */
export function createLimiter(concurrency: number): <R>(task: () => Promise<R>) => Promise<R> {
  let active = 0;
  const queue: (() => void)[] = [];
  const release = () => {
    active--;
    queue.shift()?.();
  };
  return <R>(task: () => Promise<R>) =>
    new Promise<R>((resolve, reject) => {
      const run = () => {
        active++;
        task().then(resolve, reject).finally(release);
      };
      if (active < concurrency) run();
      else queue.push(run);
    });
}
