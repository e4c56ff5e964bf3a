import { tempDirRemovedAtExit } from './temp-dirs.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitForPort } from './ports.js';

export interface LocalS3 {
  endpoint: string;
  port: number;
  dir: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  restart(): Promise<void>;
  /** Send SIGTERM now, synchronously (for `process.on('exit')`). */
  signalStop(): void;
}

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Spawn the npm package `s3rver` as a child process on a free loopback port, storing objects in a temp
 * directory. A real S3 server over TCP: the AWS SDK talks to it exactly as to MinIO or AWS.
 */
export async function startS3(options: { bucket?: string; dir?: string; port?: number } = {}): Promise<LocalS3> {
  const port = options.port ?? (await freePort());
  const dir = options.dir ?? tempDirRemovedAtExit('camflow-s3-');
  const bucket = options.bucket ?? 'camflow';
  let child: ChildProcess | undefined;
  const launch = async () => {
    child = spawn(process.execPath, [join(here, 's3-server-main.mjs'), String(port), dir, bucket], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitForPort(port, 30_000);
  };
  await launch();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    dir,
    bucket,
    // s3rver's fixed development credentials.
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    /** SIGTERM drains open keep-alive connections first (busy clients keep it serving); SIGKILL is an outage. */
    async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM') {
      if (!child || child.exitCode !== null) return;
      const c = child;
      await new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.kill(signal);
      });
    },
    async restart() {
      await launch();
    },
    /** Send SIGTERM now, synchronously (for `process.on('exit')`, where nothing can be awaited). */
    signalStop() {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
  };
}
