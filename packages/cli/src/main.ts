import { parseArgs } from 'node:util';
import { CamflowError, ConfigError, InvalidParameterError, errorMessage, parseDecimal, redactLine } from '@camflow/common/core';
import type { CommandInput, Values } from './cli-io.js';
import { joinNegativeValues } from './cli-io.js';
import { ALL_OPTIONS, COMMANDS, argumentProblem, commandHelp, globalUsage, optionProblem, suggest } from './commands.js';

/**
 * One module per command (`commands/<name>.ts`; `commands.ts` holds their usage, options and examples), loaded when
 * the command runs: `serve`, `submit` or `status` never load the model runtimes that `worker` and `train` need.
 */
const HANDLERS: Record<string, () => Promise<{ run(input: CommandInput): Promise<void> }>> = {
  demo: () => import('./commands/demo.js'),
  dev: () => import('./commands/dev.js'),
  serve: () => import('./commands/serve.js'),
  worker: () => import('./commands/worker.js'),
  dataset: () => import('./commands/dataset.js'),
  submit: () => import('./commands/submit.js'),
  open: () => import('./commands/open.js'),
  status: () => import('./commands/status.js'),
  eval: () => import('./commands/eval.js'),
  batches: () => import('./commands/batches.js'),
  results: () => import('./commands/results.js'),
  download: () => import('./commands/download.js'),
  train: () => import('./commands/train.js'),
  schedule: () => import('./commands/schedule.js'),
  models: () => import('./commands/models.js'),
};

// A reader that stops early (`camflow results B | head`) closes the pipe: the rest of the output has nowhere to go,
// which is not an error — exit quietly, as Unix tools do, instead of a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  process.stderr.write(`${redactLine(`error: writing the output failed: ${errorMessage(error)}`)}\n`);
  process.exit(1);
});

// The AWS SDK prints a 7-line notice on every command under Node 20 (its releases after January 2027 need Node 22):
// noise for each CLI call; the README says so once. A user who sets the variable keeps their choice.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const BOOLEAN_OPTIONS = new Set(['json', 'help', 'wait', 'no-promote', 'no-cell-mask']);
const PARSE_OPTIONS = Object.fromEntries(
  ['json', 'help', ...ALL_OPTIONS].map((name) => [name, BOOLEAN_OPTIONS.has(name) ? { type: 'boolean' as const, default: false, ...(name === 'help' ? { short: 'h' } : {}) } : { type: 'string' as const }]),
);

/** Parse argv; an unknown option is a usage error that names it and suggests what was meant. */
function parse(argv: string[]) {
  try {
    return parseArgs({ args: joinNegativeValues(argv, (name) => PARSE_OPTIONS[name]?.type === 'string'), allowPositionals: true, options: PARSE_OPTIONS });
  } catch (error) {
    const unknown = /Unknown option '-{1,2}([^']+)'/.exec((error as Error).message)?.[1];
    const command = argv.find((a) => !a.startsWith('-'));
    if (unknown && command && COMMANDS[command]) throw new CamflowError('USAGE', optionProblem(command, [unknown])!);
    if (unknown) throw new CamflowError('USAGE', `unknown option --${unknown} (see camflow --help)`);
    const missing = /Option '--([^ ']+)[^']*' argument missing/.exec((error as Error).message)?.[1];
    if (missing) throw new CamflowError('USAGE', `--${missing} needs a value (see camflow ${command && COMMANDS[command] ? `${command} ` : ''}--help)`);
    throw new CamflowError('USAGE', `${(error as Error).message.split('. ')[0]} (see camflow --help)`);
  }
}

async function main(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv) as unknown as { values: Values; positionals: string[] };
  const [command, ...rest] = positionals;
  const num = (name: keyof typeof v, fallback?: number) => {
    const raw = v[name];
    if (raw === undefined) return fallback;
    const n = typeof raw === 'string' ? parseDecimal(raw) : undefined;
    if (n === undefined) throw new CamflowError('USAGE', `--${String(name)} expects a number, got ${JSON.stringify(raw)}`);
    return n;
  };
  // Help under --json is JSON too (the command table), so that stdout holds only JSON.
  if (!command || (command === 'help' && !rest[0])) {
    process.stdout.write(v.json ? `${JSON.stringify({ commands: COMMANDS })}\n` : `${globalUsage()}\n`);
    return;
  }
  const named = command === 'help' ? rest[0]! : command;
  if (!COMMANDS[named]) {
    const near = suggest(named, Object.keys(COMMANDS));
    throw new CamflowError('USAGE', `unknown command "${named}"${near ? `; did you mean "${near}"?` : ''} (camflow --help lists the commands)`);
  }
  if (v.help || command === 'help') {
    process.stdout.write(v.json ? `${JSON.stringify({ command: named, ...COMMANDS[named] })}\n` : `${commandHelp(named)}\n`);
    return;
  }
  const given = Object.entries(v as Record<string, unknown>).filter(([, value]) => value !== undefined && value !== false).map(([k]) => k);
  const problem = optionProblem(command, given) ?? argumentProblem(command, rest);
  if (problem) throw new CamflowError('USAGE', problem);

  const handler = HANDLERS[command];
  if (!handler) throw new CamflowError('USAGE', `unknown command "${command}" (camflow --help lists the commands)`);
  await (await handler()).run({ v, rest, num });
}

main(process.argv.slice(2)).catch((error: unknown) => {
  // One line naming what is wrong; config errors name the variable. Exit codes: 78 configuration, 2 usage or
  // bad input, 1 anything else.
  const message = error instanceof CamflowError ? error.message : `error: ${errorMessage(error)}`;
  // Whatever the message quotes (an endpoint, a library's error), no credential reaches the terminal.
  process.stderr.write(`${redactLine(message)}\n`);
  const code = error instanceof ConfigError || (error as CamflowError).code === 'CONFIG' ? 78 : error instanceof InvalidParameterError || (error as CamflowError).code === 'USAGE' || (error as CamflowError).code === 'KEY_CONFLICT' ? 2 : 1;
  process.exit(code);
});
