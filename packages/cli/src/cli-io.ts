import { createContext, ensureStore, type Context } from './context.js';

// What every command module shares: the parsed options, printing (--json: JSON only on stdout), progress on stderr,
// and a context (Redis probed, S3 checked) that is closed whatever happens.

export type StringOption =
  | 'out' | 'train-images' | 'held-out' | 'epochs' | 'seed' | 'data-dir' | 'size' | 'classes' | 'group-pattern' | 'model' | 'target'
  | 'fraction' | 'outputs' | 'precision' | 'chunk-size' | 'kind' | 'cell-diameter' | 'key' | 'boxes' | 'truth' | 'subset' | 'limit' | 'format'
  | 'dataset' | 'version' | 'preset' | 'lr' | 'batch-size' | 'split' | 'val-fraction' | 'patience' | 'cron' | 'tz' | 'cancel' | 'priority' | 'webhook' | 'batch' | 'only' | 'before';
export type Values = { [K in StringOption]?: string } & { json: boolean; help: boolean; wait: boolean; 'no-promote': boolean; 'no-cell-mask': boolean };

/** What a command gets: its options, its positional arguments after the command name, and a number reader. */
export interface CommandInput {
  v: Values;
  rest: string[];
  /** `--name` as a number (`fallback` when absent); a usage error naming the option when it is not one. */
  num: (name: keyof Values, fallback?: number) => number | undefined;
}

/** A word as a POSIX shell reads it back: bare when it is plain, else single-quoted. */
export const shellWord = (w: string) => (/^[A-Za-z0-9_./:@=+,-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);

/** 75 → "1 min 15 s", 4000 → "1 h 7 min". */
export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

/** Pure: a count with its noun, singular for one: `counted(1, 'page')` → "1 page", `counted(3, 'chunk')` → "3 chunks". */
export const counted = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;

export const print = (json: boolean, value: unknown, human: string) => process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${human}\n`);

/** One progress line: `label [####....] done/total, detail, about 3 min left` (the detail: e.g. a field's cell groups). */
export function progressLine(label: string, done: number, total: number, etaSeconds?: number, detail?: string): string {
  const width = 30;
  const filled = total ? Math.round((done / total) * width) : width;
  const left = etaSeconds !== undefined && done !== total ? `, about ${formatDuration(etaSeconds)} left` : '';
  return `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}${detail && done !== total ? `, ${detail}` : ''}${left}`;
}

export function progressBar(label: string) {
  const tty = process.stderr.isTTY;
  let last = 0;
  // A finished bar is written once: polls that find it finished again (the batch still finalizing) say nothing.
  let finished = '';
  return (done: number, total: number | undefined, etaSeconds?: number, detail?: string) => {
    const now = Date.now();
    if (done !== total && now - last < 200) return;
    if (done === total) {
      if (finished === `${done}/${total}`) return;
      finished = `${done}/${total}`;
    }
    last = now;
    // On a terminal the line is rewritten in place; ESC[K clears what a longer line before it left.
    if (total === undefined) {
      if (tty) process.stderr.write(`\r${label} ${done} entries\x1b[K`);
      return;
    }
    const line = progressLine(label, done, total, etaSeconds, detail);
    if (tty) process.stderr.write(`\r${line}\x1b[K${done === total ? '\n' : ''}`);
    else if (done === total) process.stderr.write(`${line}\n`);
  };
}

export async function withContext<T>(fn: (ctx: Context) => Promise<T>): Promise<T> {
  const ctx = await createContext(process.env, 'cli', false);
  try {
    await ensureStore(ctx.store, ctx.config);
    return await fn(ctx);
  } finally {
    ctx.log.debug({ maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024) }, 'command finished');
    await ctx.close();
  }
}


/**
 * Pure: `--epochs -1` joined as `--epochs=-1` for options that take a value. Node's parser takes "-1" for an option
 * of its own and says so in three lines; joined, the value reaches the option's own check, which names the option
 * and what it expects.
 * @example joinNegativeValues(['train', '--epochs', '-1'], (n) => n === 'epochs') // ['train', '--epochs=-1']
 */
export function joinNegativeValues(argv: string[], takesValue: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = /^--([^=]+)$/.exec(argv[i]!)?.[1];
    const next = argv[i + 1];
    if (name && next !== undefined && /^-(\d|\.\d)/.test(next) && takesValue(name)) {
      out.push(`${argv[i]}=${next}`);
      i++;
    } else out.push(argv[i]!);
  }
  return out;
}
