// `npm run chaos` (not part of `npm test`): CHAOS_MINUTES (default 5) of submissions through 3 chunk workers and one
// finalizer while faults are injected at random: SIGKILLs of chunk workers and of the finalizer, Redis restarts (AOF),
// a 20 s S3 outage, concurrent submissions with one key (same files, and other files), and inputs that must be refused
// (symlinks out of the folder, dot-files, a pixel bomb, a zip bomb). It then checks every submitted file: exactly one
// result line, in the right batch, for the right content. Prints a table and one JSON line on stdout.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { keys, type ImageResult } from '@camflow/common';
import { KeyConflictError, batchStatus, repairBatch, submitBatch, type SubmitResult } from '@camflow/ingest';
import { readResults } from '../packages/cli/src/wait.ts';
import { publishUntrained, sleep, startCluster, syntheticFolder, type Cluster, type WorkerProcess } from '../test/helpers/cluster.ts';

const MINUTES = Number(process.env.CHAOS_MINUTES ?? 5);
const say = (m: string) => process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${m}\n`);
let seed = Number(process.env.CHAOS_SEED ?? 1);
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

type FaultName = 'kill-chunk-worker' | 'kill-finalizer' | 'redis-restart' | 's3-outage-20s' | 'same-key-race';
const faultNames: FaultName[] = ['kill-chunk-worker', 'kill-finalizer', 'redis-restart', 's3-outage-20s', 'same-key-race'];

/** What a submission should produce: per entry name, the content hash (accepted) or undefined (must be refused). */
interface Expected {
  key: string;
  folder: string;
  entries: Map<string, string | undefined>;
  batchId?: string;
  submittedAt: number;
  completedAt?: number;
}

async function main() {
  const c: Cluster = await startCluster({ LOG_LEVEL: 'warn', JOB_LOCK_MS: '5000', STALLED_INTERVAL_MS: '1000', CAM_ATTEMPTS: '8', CAM_BACKOFF_MS: '1000', CAM_THREADS: '1' });
  const faults = new Map<FaultName, number[]>(faultNames.map((f) => [f, []]));
  const expected: Expected[] = [];
  const outcomes: Record<string, number> = { conflicts: 0, sameKeyMerged: 0, submitRetries: 0, repairs: 0 };
  try {
    await publishUntrained(c.ctx);
    say('making the input pool: synthetic cells, a pixel bomb, a zip bomb');
    await syntheticFolder(c.dir, 300, 90);
    const pool = (await readdir(join(c.dir, 'batch-90'))).map((n) => join(c.dir, 'batch-90', n));
    const outside = join(c.dir, 'outside.png');
    await copyFile(pool[0]!, outside);
    const bomb = join(c.dir, 'bomb.png');
    // 16,000 × 16,000 RGB, ~750 KB on disk; the header alone refuses it.
    const py = `import zlib,struct,sys\nw=h=16000\nrow=bytes(1+3*w)\nc=zlib.compressobj(9)\nd=b''.join(c.compress(row) for _ in range(h))+c.flush()\nch=lambda t,x: struct.pack('>I',len(x))+t+x+struct.pack('>I',zlib.crc32(t+x)&0xffffffff)\nopen(sys.argv[1],'wb').write(b'\\x89PNG\\r\\n\\x1a\\n'+ch(b'IHDR',struct.pack('>IIBBBBB',w,h,8,2,0,0,0))+ch(b'IDAT',d)+ch(b'IEND',b''))`;
    if (spawnSync('python3', ['-c', py, bomb]).status !== 0) throw new Error('could not make the pixel bomb');
    const zipBomb = join(c.dir, 'zipbomb.zip');
    const pz = `import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED)\nw=z.open('zeros.png','w',force_zip64=True)\nb=bytes(1<<20)\nfor _ in range(1024): w.write(b)\nw.close()\nfor p in sys.argv[2:]: z.write(p, p.split('/')[-1])\nz.close()`;
    if (spawnSync('python3', ['-c', pz, zipBomb, ...pool.slice(0, 5)]).status !== 0) throw new Error('could not make the zip bomb');

    const chunkWorkers: WorkerProcess[] = [c.spawnWorker('chunks'), c.spawnWorker('chunks'), c.spawnWorker('chunks')];
    let finalizer = c.spawnWorker('finalizer');

    /** A submission folder: cells, plus entries that must each get a refusal line. */
    const makeFolder = async (n: number): Promise<{ folder: string; entries: Map<string, string | undefined> }> => {
      const folder = join(c.dir, `sub-${n}`);
      await mkdir(folder, { recursive: true });
      const entries = new Map<string, string | undefined>();
      const count = 40 + Math.floor(rand() * 80);
      for (let i = 0; i < count; i++) {
        const src = pick(pool);
        const name = `cell-${String(i).padStart(3, '0')}.png`;
        await copyFile(src, join(folder, name));
        entries.set(name, sha(await readFile(src)));
      }
      await writeFile(join(folder, '.hidden.png'), 'not an image');
      entries.set('.hidden.png', undefined);
      await symlink(outside, join(folder, 'escape.png'));
      entries.set('escape.png', undefined);
      await symlink(join(folder, 'cell-000.png'), join(folder, 'inside-link.png'));
      entries.set('inside-link.png', entries.get('cell-000.png'));
      if (rand() < 0.5) {
        await copyFile(bomb, join(folder, 'bomb.png'));
        entries.set('bomb.png', undefined);
      }
      return { folder, entries };
    };

    /** Submit until it lands (a user re-running the command with its key). */
    const submitUntilDone = async (e: Expected): Promise<SubmitResult> => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await submitBatch({ store: c.ctx.store, flow: c.ctx.flow, redis: c.ctx.redis, queues: c.ctx.queues, prefix: 'camflow', source: e.folder, chunkSize: 16, idempotencyKey: e.key, options: { outputs: ['json'] }, attempts: 8, backoffMs: 1000 });
        } catch (error) {
          if (error instanceof KeyConflictError || attempt > 100) throw error;
          outcomes.submitRetries!++;
          await sleep(2000);
        }
      }
    };

    const t0 = Date.now();
    const end = t0 + MINUTES * 60_000;
    let n = 0;
    const submissions: Promise<void>[] = [];
    const submitter = (async () => {
      while (Date.now() < end) {
        const { folder, entries } = await makeFolder(n);
        const e: Expected = { key: `chaos-${n}`, folder, entries, submittedAt: Date.now() };
        n++;
        expected.push(e);
        submissions.push(submitUntilDone(e).then((info) => void (e.batchId = info.batchId)));
        if (n % 4 === 0) {
          // The zip bomb, as its own archive submission.
          const z: Expected = { key: `chaos-zip-${n}`, folder: zipBomb, entries: new Map([['zeros.png', undefined], ...await Promise.all(pool.slice(0, 5).map(async (p) => [p.split('/').pop()!, sha(await readFile(p))] as [string, string]))]), submittedAt: Date.now() };
          expected.push(z);
          submissions.push(submitUntilDone(z).then((info) => void (z.batchId = info.batchId)));
        }
        await sleep(4000 + rand() * 6000);
      }
    })();

    const injector = (async () => {
      let s3Outages = 0;
      while (Date.now() < end - 20_000) {
        await sleep(8000 + rand() * 12_000);
        const fault = pick(faultNames.filter((f) => f !== 's3-outage-20s' || s3Outages < 2));
        faults.get(fault)!.push(Date.now());
        say(`fault: ${fault}`);
        if (fault === 'kill-chunk-worker') {
          const victim = chunkWorkers.splice(Math.floor(rand() * chunkWorkers.length), 1)[0]!;
          victim.kill('SIGKILL');
          await victim.exited;
          chunkWorkers.push(c.spawnWorker('chunks'));
        } else if (fault === 'kill-finalizer') {
          finalizer.kill('SIGKILL');
          await finalizer.exited;
          finalizer = c.spawnWorker('finalizer');
        } else if (fault === 'redis-restart') {
          await c.redis.stop();
          await sleep(2000);
          await c.redis.restart();
        } else if (fault === 's3-outage-20s') {
          s3Outages++;
          await c.s3.stop('SIGKILL');
          await sleep(20_000);
          await c.s3.restart();
        } else {
          // Three identical submissions and one with other files, at once, under one key.
          const { folder, entries } = await makeFolder(n);
          const other = await makeFolder(n + 1000);
          const e: Expected = { key: `race-${n}`, folder, entries, submittedAt: Date.now() };
          n++;
          const tries = await Promise.allSettled([...[0, 1, 2].map(() => submitUntilDone(e)), submitUntilDone({ ...other, key: e.key, submittedAt: Date.now() })]);
          const landed = tries.filter((t): t is PromiseFulfilledResult<SubmitResult> => t.status === 'fulfilled').map((t) => t.value);
          const ids = new Set(landed.map((l) => l.batchId));
          outcomes.conflicts! += tries.filter((t) => t.status === 'rejected' && t.reason instanceof KeyConflictError).length;
          outcomes.sameKeyMerged! += landed.length - ids.size;
          // Whichever content won the key is the one expected; the other got a 409.
          const winner = landed[0]!;
          const fromOther = tries[3]!.status === 'fulfilled';
          expected.push({ ...(fromOther ? other : { folder, entries }), key: e.key, batchId: winner.batchId, submittedAt: e.submittedAt });
          if (ids.size !== 1) say(`!! one key, ${ids.size} batches`);
        }
      }
    })();

    await Promise.all([submitter, injector]);
    say(`faults done; waiting for ${expected.length} submissions to complete`);
    await Promise.all(submissions);
    for (const e of expected) {
      const deadline = Date.now() + 10 * 60_000;
      for (;;) {
        const s = await batchStatus(c.ctx.store, c.ctx.queues.batch, e.batchId!).catch(() => undefined);
        if (s?.state === 'completed') break;
        if (s?.state === 'failed' || s?.state === 'stalled') {
          say(`repairing ${e.batchId} (${s.state}: ${s.reason})`);
          outcomes.repairs!++;
          await repairBatch({ store: c.ctx.store, flow: c.ctx.flow, queues: c.ctx.queues, batchId: e.batchId! });
        }
        if (Date.now() > deadline) throw new Error(`batch ${e.batchId} did not complete`);
        await sleep(1000);
      }
      e.completedAt = Date.now();
    }

    // The check: every submitted entry exactly once, in its batch, for its content.
    let files = 0;
    let lost = 0;
    let duplicated = 0;
    let misattributed = 0;
    const perFault = new Map<FaultName, { lost: number; duplicated: number; misattributed: number }>(faultNames.map((f) => [f, { lost: 0, duplicated: 0, misattributed: 0 }]));
    for (const e of expected) {
      const results: ImageResult[] = await readResults(c.ctx.store, e.batchId!);
      const byName = new Map<string, ImageResult[]>();
      for (const r of results) byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
      let l = 0;
      let d = 0;
      let m = 0;
      for (const [name, content] of e.entries) {
        files++;
        const lines = byName.get(name) ?? [];
        if (lines.length === 0) l++;
        if (lines.length > 1) d++;
        const line = lines[0];
        if (line && (line.batchId !== e.batchId || (content === undefined ? line.status !== 'failed' : line.status === 'ok' ? line.sha256 !== content : false))) m++;
        if (line && content !== undefined && line.status !== 'ok') say(`item failed: ${e.batchId} ${name}: ${line.status === 'failed' ? line.error : ''}`);
      }
      m += results.filter((r) => !e.entries.has(r.name)).length;
      lost += l;
      duplicated += d;
      misattributed += m;
      for (const [f, times] of faults) {
        if (times.some((t) => t >= e.submittedAt && t <= (e.completedAt ?? Date.now()))) {
          const p = perFault.get(f)!;
          p.lost += l;
          p.duplicated += d;
          p.misattributed += m;
        }
      }
    }
    const summary = await Promise.all(expected.map(async (e) => c.ctx.store.getJson<{ failed: number; failures: Record<string, number> }>(keys.resultsSummary(e.batchId!))));
    const failures: Record<string, number> = {};
    for (const s of summary) for (const [k, v] of Object.entries(s.failures)) failures[k] = (failures[k] ?? 0) + v;
    process.stderr.write('\n| fault | times | lost | duplicated | wrong attribution |\n| --- | --- | --- | --- | --- |\n');
    for (const f of faultNames) {
      const p = perFault.get(f)!;
      process.stderr.write(`| ${f} | ${faults.get(f)!.length} | ${p.lost} | ${p.duplicated} | ${p.misattributed} |\n`);
    }
    process.stderr.write(`\n${expected.length} batches, ${files} files; refusals and failures by reason: ${JSON.stringify(failures)}; ${JSON.stringify(outcomes)}\n`);
    process.stdout.write(`${JSON.stringify({ chaos: { minutes: MINUTES, batches: expected.length, files, lost, duplicated, misattributed, faults: Object.fromEntries([...faults].map(([k, v]) => [k, v.length])), failures, ...outcomes } })}\n`);
    process.exitCode = lost + duplicated + misattributed === 0 ? 0 : 1;
    void chunkWorkers;
  } finally {
    await c.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`chaos failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
