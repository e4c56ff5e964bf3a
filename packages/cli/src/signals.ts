import type { Logger } from '@camflow/common/core';

/**
 * Close on SIGTERM/SIGINT within `graceMs`, then exit. A second signal exits at once.
 *
 * A long-running process also never dies of a stray rejection: an unhandled rejection is logged with its stack and
 * the process goes on (every job's own errors are handled by its processor); an uncaught exception is logged and
 * the process shuts down through the same path as SIGTERM, so its jobs are handed back, not left locked.
 */
export function closeOnSignals(close: () => Promise<void>, log: Logger, graceMs = 30_000, what = 'finishing or handing back active jobs'): void {
  let closing = false;
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason instanceof Error ? reason : new Error(String(reason)) }, 'unhandled rejection (a bug: please report it); the process goes on');
  });
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception: shutting down gracefully');
    handler('uncaughtException');
  });
  const handler = (signal: string) => {
    if (closing) process.exit(1);
    closing = true;
    log.info({ signal }, `shutting down: ${what}`);
    const timer = setTimeout(() => {
      log.error({ graceMs }, 'shutdown grace period exceeded; exiting (active jobs will be recovered as stalled)');
      process.exit(1);
    }, graceMs);
    timer.unref();
    close().then(
      () => process.exit(0),
      (err: Error) => {
        log.error({ err }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}
