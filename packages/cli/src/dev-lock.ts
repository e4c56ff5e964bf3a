import { openSync, readFileSync, unlinkSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { CamflowError, InvalidParameterError } from '@camflow/common/core';

/** Is a process with this pid running (signal 0 checks without sending anything)? */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Claim `camflow dev`'s data folder for this process: two instances on one folder would run two redis-servers
 * appending to one AOF. The claim is `dev.lock` holding the pid, made exclusively; a lock left by a process that is
 * gone is taken over. Returns the release (also run at exit).
 * @example const release = claimDataDir('/home/me/.local/share/camflow/dev');
 */
export function claimDataDir(dir: string, pid = process.pid): () => void {
  const path = join(dir, 'dev.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, String(pid));
      closeSync(fd);
      const release = () => {
        try {
          if (readFileSync(path, 'utf8').trim() === String(pid)) unlinkSync(path);
        } catch {
          // already gone
        }
      };
      process.once('exit', release);
      return release;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number(readFileSync(path, 'utf8').trim());
      if (Number.isInteger(holder) && holder > 0 && alive(holder)) {
        throw new CamflowError('USAGE', `${dir} is in use by pid ${holder} (another camflow dev): stop it, or give this one its own --data-dir`);
      }
      unlinkSync(path); // a stale claim: its process is gone
    }
  }
  throw new InvalidParameterError('--data-dir', 'a folder this process can claim', dir);
}
