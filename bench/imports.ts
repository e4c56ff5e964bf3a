// `node --import tsx bench/imports.ts`: what each command's module costs to load (a fresh process per module):
// milliseconds, resident memory, and whether tfjs was loaded. `serve`, `submit`, `status` should not load it.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const probe = `const t0 = performance.now(); await import(process.argv[1]); console.log(JSON.stringify({ ms: Math.round(performance.now() - t0), rssMB: Math.round(process.memoryUsage().rss / 1048576), tfjs: globalThis._tfengine !== undefined }));`;
const out: Record<string, unknown> = {};
for (const command of ['serve', 'submit', 'status', 'results', 'worker', 'train']) {
  const path = `${root}packages/cli/src/commands/${command}.ts`;
  const line = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe, path], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').pop()!;
  out[command] = JSON.parse(line);
}
process.stdout.write(`${JSON.stringify({ bench_imports: out })}\n`);
