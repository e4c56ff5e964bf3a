import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { COMMANDS, commandHelp, globalUsage, optionProblem, suggest } from '../../packages/cli/src/commands.ts';
import { joinNegativeValues } from '../../packages/cli/src/cli-io.ts';

test('a mistyped command or option gets the closest real one suggested; nonsense gets none', () => {
  assert.equal(suggest('sumbit', Object.keys(COMMANDS)), 'submit');
  assert.equal(suggest('stauts', Object.keys(COMMANDS)), 'status');
  assert.equal(suggest('fracton', COMMANDS.submit!.options), 'fraction');
  assert.equal(suggest('xyzzy', Object.keys(COMMANDS)), undefined);
  // Swapped letters are one slip; other letter case and a longer or shorter form of the word are the word.
  assert.equal(suggest('wiat', ['wait', 'json', 'help']), 'wait');
  assert.equal(suggest('parasitized', ['predicted', 'all', 'Parasitized', 'Uninfected']), 'Parasitized');
  assert.equal(suggest('fastest', ['seed', 'fast']), 'fast');
  assert.equal(suggest('stat', Object.keys(COMMANDS)), 'status');
  assert.equal(suggest('se', ['seed', 'fast']), undefined, 'two letters are no word');
});

test('each command takes only its own options (plus --json and --help), and says which it does not', () => {
  assert.equal(optionProblem('submit', ['kind', 'wait', 'json']), undefined);
  assert.equal(optionProblem('status', ['epochs']), 'camflow status does not take --epochs (see camflow status --help)');
  assert.equal(optionProblem('train', ['epoch']), 'camflow train does not take --epoch; did you mean --epochs? (see camflow train --help)');
});

test('every command has usage, a summary and examples; the global usage lists them all', () => {
  const usage = globalUsage();
  for (const [name, spec] of Object.entries(COMMANDS)) {
    assert.ok(spec.usage.length > 0 && spec.summary.length > 10 && spec.examples.length > 0, name);
    assert.ok(usage.includes(`camflow ${name}`), name);
    assert.match(commandHelp(name), /Examples:/);
    for (const option of spec.options) assert.ok(spec.usage.join(' ').includes(`--${option}`), `${name}'s usage mentions --${option}`);
  }
});

test('commands that run no model (serve, submit, status, results) load neither tfjs nor the worker packages', () => {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const probe = 'await import(process.argv[1]); console.log(JSON.stringify({ tfjs: globalThis._tfengine !== undefined }));';
  const loads = (command: string) => JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe, `${root}packages/cli/src/commands/${command}.ts`], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').pop()!) as { tfjs: boolean };
  for (const command of ['serve', 'submit', 'status', 'results']) assert.equal(loads(command).tfjs, false, `camflow ${command} loaded tfjs`);
  assert.equal(loads('worker').tfjs, true, 'the probe sees tfjs where it is loaded');
});

test("camflow dev claims its data folder: a second one on the same folder is refused naming the holder; a dead holder's claim is taken over", async () => {
  const { claimDataDir } = await import('../../packages/cli/src/dev-lock.ts');
  const { mkdtemp, readFile, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { spawnSync } = await import('node:child_process');
  const dir = await mkdtemp(join(tmpdir(), 'camflow-devlock-'));
  const release = claimDataDir(dir);
  assert.equal(await readFile(join(dir, 'dev.lock'), 'utf8'), String(process.pid));
  assert.throws(() => claimDataDir(dir, 12345), (e: Error) => /--data-dir/.test(e.message) && new RegExp(`in use by pid ${process.pid}`).test(e.message));
  release();
  // A claim left by a process that has exited: taken over.
  const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  await writeFile(join(dir, 'dev.lock'), gone);
  const again = claimDataDir(dir);
  assert.equal(await readFile(join(dir, 'dev.lock'), 'utf8'), String(process.pid));
  again();
});

test('dataset add finds a folder one level too high (class folders holding class folders; refused unless --classes names them) and classes far apart in size', async () => {
  const { layoutWarnings } = await import('../../packages/ingest/src/datasets.ts');
  const files = (cls: string, sub: string[], n: number) => sub.flatMap((s) => Array.from({ length: n }, (_, i) => ({ name: `${cls}/${s ? `${s}/` : ''}${i}.png` })));
  // `dataset add x ./data` where ./data holds nih-cells-dev/{Parasitized,Uninfected} and smears/.
  const tooHigh = new Map([['nih-cells-dev', files('nih-cells-dev', ['Parasitized', 'Uninfected'], 50)], ['smears', files('smears', [''], 3)]]);
  const w = layoutWarnings(tooHigh, ['nih-cells-dev', 'smears']);
  assert.equal(w.length, 2, w.join('\n'));
  assert.match(w[0]!, /class "nih-cells-dev": all its 100 images sit in sub-folders \(Parasitized, Uninfected\)/);
  assert.match(w[1]!, /"nih-cells-dev" has 100 images, "smears" 3/);
  // A plain layout, and patients as sub-folders of every class (class/patient/image): quiet.
  assert.deepEqual(layoutWarnings(new Map([['P', files('P', [''], 20)], ['U', files('U', [''], 25)]]), ['P', 'U']), []);
  assert.deepEqual(layoutWarnings(new Map([['P', files('P', ['C1', 'C2'], 20)], ['U', files('U', ['C2', 'C3'], 25)]]), ['P', 'U']), []);
});

test('words beyond what a command takes are a usage error naming the first extra one; within it, none', async () => {
  const { argumentProblem } = await import('../../packages/cli/src/commands.ts');
  assert.equal(argumentProblem('status', ['b1', 'extra']), 'camflow status takes at most 1 argument; unexpected "extra" (see camflow status --help)');
  assert.match(argumentProblem('open', ['a', 'b'])!, /unexpected "b"/);
  assert.match(argumentProblem('train', ['show', '42', 'cells'])!, /takes at most 2 arguments; unexpected "cells"/);
  for (const [command, rest] of [['dataset', ['add', 'nih', './cells']], ['models', ['promote', 'm1']], ['batches', ['repair', 'b1']], ['worker', ['cam']], ['open', []], ['schedule', ['show']], ['train', ['show', '42']], ['train', ['list']]] as const) {
    assert.equal(argumentProblem(command, rest), undefined, `${command} ${rest.join(' ')}`);
  }
});

test('a negative number after an option is its value (`--epochs -1` reaches the epochs check), never an option', () => {
  const takesValue = (name: string) => ['epochs', 'lr'].includes(name);
  assert.deepEqual(joinNegativeValues(['train', '--epochs', '-1', '--lr', '-.5', '--wait'], takesValue), ['train', '--epochs=-1', '--lr=-.5', '--wait']);
  // Not for flags, not for a following option, not for an option already written with "=".
  assert.deepEqual(joinNegativeValues(['submit', '--wait', '-1', '--epochs', '--json', '--lr=-2'], takesValue), ['submit', '--wait', '-1', '--epochs', '--json', '--lr=-2']);
});

test('a reader that closes the pipe early (`camflow … | head`) ends the command quietly, exit 0, no stack trace', async () => {
  const main = fileURLToPath(new URL('../../packages/cli/src/main.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', main, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy(); // closed before the command writes a byte: every write meets EPIPE
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.deepEqual([code, stderr], [0, '']);
});

test('a number option given empty or in hex is a usage error naming it, never silently the default or another number', async () => {
  const main = fileURLToPath(new URL('../../packages/cli/src/main.ts', import.meta.url));
  // No Redis answers on port 1: the options are read (and refused) before anything is reached.
  const env = { ...process.env, REDIS_URL: 'redis://127.0.0.1:1' };
  for (const [args, said] of [
    [['submit', '.', '--fraction', ''], '--fraction expects a number, got ""'],
    [['submit', '.', '--fraction', '0x1'], '--fraction expects a number, got "0x1"'],
    [['train', '--dataset', 'x', '--epochs', ''], '--epochs expects a number, got ""'],
  ] as const) {
    const child = spawn(process.execPath, ['--import', 'tsx', main, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.deepEqual([code, stderr.trim()], [2, said], args.join(' '));
  }
});

test("schedule show gives the next run in the schedule's own zone (and UTC) and what each run trains", async () => {
  const { nextRunText, scheduledTrainingText } = await import('../../packages/cli/src/commands/schedule.ts');
  assert.equal(nextRunText(Date.parse('2026-11-30T01:00:00Z'), 'Europe/Paris'), '2026-11-30 02:00 Europe/Paris (2026-11-30T01:00:00.000Z)');
  assert.equal(nextRunText(Date.parse('2026-11-30T01:00:00Z'), 'UTC'), '2026-11-30T01:00:00.000Z');
  assert.equal(nextRunText(undefined, 'UTC'), 'unknown');
  assert.equal(scheduledTrainingText({ dataset: 'cells', preset: 'fast', epochs: 2, promote: false }), 'dataset cells (its latest version), preset fast, up to 2 epochs, models published, not promoted');
});

test('train says when it stopped early and which epoch it published', async () => {
  const { epochsText } = await import('../../packages/cli/src/commands/train.ts');
  assert.equal(epochsText({ epochs: 9, epochsAsked: 20, bestEpoch: 6 }), '9 of 20 epochs (stopped early: the validation loss stopped improving; the best, epoch 6, is published)');
  assert.equal(epochsText({ epochs: 20, epochsAsked: 20, bestEpoch: 20 }), '20 epochs');
  assert.equal(epochsText({ epochs: 20, epochsAsked: 20, bestEpoch: 17 }), '20 epochs (the best, epoch 17, is published)');
  assert.equal(epochsText({ epochs: 1 }), '1 epoch', 'an outcome stored before epochsAsked was kept');
});

test('the backend ladder says an optional package is not installed, not a resolver error with the paths of this machine', () => {
  const out = execFileSync(process.execPath, ['--import', 'tsx', '-e', "import('@camflow/common').then(async (m) => console.log(JSON.stringify((await m.initBackend('auto')).skipped)))"], { cwd: fileURLToPath(new URL('../..', import.meta.url)), encoding: 'utf8', env: { ...process.env, TF_BACKEND: '' } });
  const skipped = JSON.parse(out.trim().split('\n').pop()!) as string[];
  assert.ok(skipped.includes('@tensorflow/tfjs-node: not installed'), skipped.join('; '));
  assert.ok(!skipped.some((s) => /Cannot find package|imported from/.test(s)), skipped.join('; '));
});
