import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const owned = new Set<string>();
let hooked = false;

/**
 * A new folder under the OS temp dir that is removed when this process exits (its servers are stopped by then, or
 * die with it). The local Redis and S3 servers of tests, benches and the demo without `--out` keep their data
 * here; without this, every `npm test` left its objects behind (15 GB of /tmp after a day's runs here).
 */
export function tempDirRemovedAtExit(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  owned.add(dir);
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const d of owned) {
        try {
          rmSync(d, { recursive: true, force: true });
        } catch {
          // A server that has not exited yet may still write there: what is left is the OS's to clean.
        }
      }
    });
  }
  return dir;
}
