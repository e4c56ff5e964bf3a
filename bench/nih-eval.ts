// `npm run bench:nih [-- train flags]`: issue #9's measurement. Default training (`camflow train --dataset nih --wait`)
// on the NIH dev cells, then `camflow eval nih` (the model's validation patients: the trainer's own split) through
// the queues. Real servers (spawned redis-server, s3rver), one `worker all` process, the CLI as a user runs it.
import { existsSync } from 'node:fs';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { readResults } from '../packages/cli/src/wait.ts';
import { join } from 'node:path';
import { runCli, startCluster } from '../test/helpers/cluster.ts';

const extra = process.argv.slice(2);
const c = await startCluster({ LOG_LEVEL: 'info', JOB_LOCK_MS: '120000', STALLED_INTERVAL_MS: '60000' });
try {
  c.spawnWorker('all');
  const src = '../shared/data/nih-cells-dev';
  let r = await runCli(c, ['dataset', 'add', 'nih', src, '--json']);
  if (r.code !== 0) throw new Error(r.stderr);
  const t0 = Date.now();
  r = await runCli(c, ['train', '--dataset', 'nih', '--wait', '--json', ...extra]);
  console.log('train', (Date.now() - t0) / 1000, r.stdout.trim().split('\n').pop(), r.stderr.split('\n').filter((l) => /epoch/.test(l)).slice(-40).join('\n'));
  // The model's own dataset: eval scores the images it was validated on (the trainer's patient split), as a user
  // runs it.
  r = await runCli(c, ['eval', 'nih', '--json', '--out', join(c.dir, 'eval')]);
  console.log(r.stdout.trim().split('\n').pop(), r.code === 0 ? '' : r.stderr.slice(-2000));
  // With BENCH_NIH_REPORT=DIR the eval's HTML report (and its overlays) is copied there.
  if (process.env.BENCH_NIH_REPORT) await cp(join(c.dir, 'eval'), process.env.BENCH_NIH_REPORT, { recursive: true });
  // The shared smear fields with the same model (#10's real fields): cells, counted, infected, parasitemia. With
  // BENCH_NIH_OVERLAYS=DIR the fields' overlays are written there (the README's screenshots).
  const smears = '../shared/data/smears';
  if (existsSync(smears)) {
    r = await runCli(c, ['submit', smears, '--wait', '--json']);
    const batchId = JSON.parse(r.stdout.trim().split('\n').pop()!).batchId as string;
    for (const line of await readResults(c.ctx.store, batchId)) {
      if (line.status !== 'ok' || line.kind !== 'field') {
        console.log(JSON.stringify({ field: line.name, status: line.status }));
        continue;
      }
      const f = line.field;
      console.log(JSON.stringify({ field: line.name, cells: f.cells, counted: f.counted, infected: f.infected, parasitemia: Number((100 * f.parasitemia).toFixed(1)), interval: f.interval.map((v) => Number((100 * v).toFixed(1))) }));
      if (process.env.BENCH_NIH_OVERLAYS && line.outputs.overlay) {
        await mkdir(process.env.BENCH_NIH_OVERLAYS, { recursive: true });
        await writeFile(join(process.env.BENCH_NIH_OVERLAYS, `${line.name.replace(/\.[a-z]+$/i, '')}.png`), await c.ctx.store.get(line.outputs.overlay));
      }
    }
  }
} finally {
  await c.close();
}
