import { tempDirRemovedAtExit } from './temp-dirs.js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { CamflowError } from '../errors.js';
import { freePort, waitForPort } from './ports.js';

export interface LocalRedis {
  url: string;
  port: number;
  dir: string;
  /** Stop gracefully (SHUTDOWN; with AOF the data survives a restart). */
  stop(): Promise<void>;
  /** SIGKILL the server. */
  kill(): Promise<void>;
  /** Start again on the same port and directory. */
  restart(): Promise<void>;
  /** Send SIGTERM now, synchronously (for `process.on('exit')`). */
  signalStop(): void;
}

/**
 * Spawn a private `redis-server` on a free loopback port with its own temp directory, `noeviction`, and AOF
 * when asked. Tests and `camflow dev` use it so they can stop and restart Redis at will.
 */
export async function startRedis(options: { appendonly?: boolean; dir?: string; port?: number; evictionPolicy?: string } = {}): Promise<LocalRedis> {
  const which = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (which.error) {
    throw new CamflowError('NO_REDIS', 'redis-server not found on PATH: run `npm run setup` (installs it with apt-get) or install the redis-server package');
  }
  const port = options.port ?? (await freePort());
  const dir = options.dir ?? tempDirRemovedAtExit('camflow-redis-');
  let child: ChildProcess | undefined;
  const launch = async () => {
    child = spawn(
      'redis-server',
      [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--dir', dir,
        '--save', '',
        '--appendonly', options.appendonly ? 'yes' : 'no',
        '--appendfsync', 'everysec',
        '--maxmemory-policy', options.evictionPolicy ?? 'noeviction',
        '--daemonize', 'no',
        '--loglevel', 'warning',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    await waitForPort(port);
  };
  const exited = () =>
    new Promise<void>((resolve) => {
      if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
    });
  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    async stop() {
      child?.kill('SIGTERM');
      await exited();
    },
    async kill() {
      child?.kill('SIGKILL');
      await exited();
    },
    /** Send SIGTERM now, synchronously (for `process.on('exit')`, where nothing can be awaited). */
    signalStop() {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
    async restart() {
      await launch();
    },
  };
}
