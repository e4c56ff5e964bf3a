import { test } from 'node:test';
import assert from 'node:assert/strict';
import { COMMANDS, commandHelp, globalUsage, optionProblem, suggest } from '../../packages/cli/src/commands.ts';

test('a mistyped command or option gets the closest real one suggested; nonsense gets none', () => {
  assert.equal(suggest('sumbit', Object.keys(COMMANDS)), 'submit');
  assert.equal(suggest('stauts', Object.keys(COMMANDS)), 'status');
  assert.equal(suggest('fracton', COMMANDS.submit!.options), 'fraction');
  assert.equal(suggest('xyzzy', Object.keys(COMMANDS)), undefined);
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
