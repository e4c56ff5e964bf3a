// `npm run bench:nih [-- train flags]`: issue #9's measurement. Default training (`camflow train --dataset nih --wait`)
// on the NIH dev cells, then `camflow eval` of the validation patients' cells (the trainer's own split) through the
// queues. Real servers (spawned redis-server, s3rver), one `worker all` process, the CLI as a user runs it.
import { cp, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { keys } from '@camflow/common';
import { splitIndices } from '../packages/trainer/src/split.ts';
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
  // The same split as the trainer, over the registered manifest's items.
  const latest = (await c.ctx.store.getJson(keys.datasetLatest('nih'))) as { version: string };
  const manifest = (await c.ctx.store.getJson(keys.datasetManifest('nih', latest.version))) as { classNames: string[]; items: { name: string; label: number; group: string }[] };
  const items = manifest.items.map((x) => ({ ...x, path: join(manifest.classNames[x.label]!, x.name.split('/').pop()!) }));
  const split = splitIndices(items, 0.15, 42, 'group');
  const out = join(c.dir, 'val');
  for (const i of split.validation) {
    await mkdir(join(out, items[i]!.path, '..'), { recursive: true });
    await cp(join(src, items[i]!.path), join(out, items[i]!.path));
  }
  console.log('validation', split.validation.length);
  r = await runCli(c, ['eval', out, '--json', '--out', join(c.dir, 'eval')]);
  console.log(r.stdout.trim().split('\n').pop(), r.code === 0 ? '' : r.stderr.slice(-2000));
} finally {
  await c.close();
}
