// The CLI's commands, their options and help: one table, read by the parser (which options a command takes), the
// global usage and each command's `--help`. Pure; `main.ts` does the work.
import { suggest } from '@camflow/common/core';

export { suggest };

export interface CommandSpec {
  /** One line per form of the command. */
  usage: string[];
  summary: string;
  /** The most words the command takes after its name (`dataset add NAME FOLDER`: 3); more is a usage error. */
  maxArgs: number;
  /** Long options the command takes (besides --json and --help). */
  options: string[];
  examples: string[];
}

const SUBMIT_OPTIONS = ['model', 'target', 'fraction', 'outputs', 'precision', 'chunk-size', 'no-cell-mask', 'kind', 'cell-diameter', 'key', 'priority', 'webhook', 'wait'];
const TRAIN_OPTIONS = ['dataset', 'version', 'preset', 'epochs', 'lr', 'batch-size', 'split', 'val-fraction', 'patience', 'seed', 'no-promote', 'wait'];

export const COMMANDS: Record<string, CommandSpec> = {
  demo: {
    maxArgs: 0,
    usage: ['camflow demo [--out DIR] [--train-images N] [--held-out N] [--epochs N] [--seed N]'],
    summary: 'the whole pipeline on an embedded default (private redis-server + s3rver, synthetic cells and fields); one JSON line',
    options: ['out', 'train-images', 'held-out', 'epochs', 'seed'],
    examples: ['camflow demo', 'camflow demo --out /tmp/demo --epochs 3'],
  },
  dev: {
    maxArgs: 0,
    usage: ['camflow dev [--data-dir DIR]'],
    summary: 'local redis-server + s3rver + every worker + the API and viewer; data kept in DIR (default ~/.local/share/camflow/dev)',
    options: ['data-dir'],
    examples: ['camflow dev', 'camflow dev --data-dir ./camflow-data'],
  },
  worker: {
    maxArgs: 1,
    usage: ['camflow worker cam|chunks|finalizer|ingest|trainer|all   (cam = chunks + finalizer + ingest)'],
    summary: 'run workers against REDIS_URL / S3_ENDPOINT (one process per core or GPU, as many hosts as you like)',
    options: [],
    examples: ['camflow worker cam', 'METRICS_PORT=9464 camflow worker trainer'],
  },
  serve: {
    maxArgs: 0,
    usage: ['camflow serve'],
    summary: 'the HTTP API, the viewer (/viewer) and the queue dashboard (/admin/queues) on API_HOST:API_PORT, behind API_TOKEN',
    options: [],
    examples: ['API_TOKEN=$(openssl rand -hex 16) camflow serve'],
  },
  dataset: {
    maxArgs: 3,
    usage: ['camflow dataset add NAME FOLDER [--size 128] [--classes A,B] [--group-pattern RE]', 'camflow dataset list', 'camflow dataset remove NAME[@VERSION]   (refused while the production model, the schedule or a training job needs it)'],
    summary: 'snapshot a labelled folder (one sub-folder per class) as a versioned training dataset; list them; remove one or a version',
    options: ['size', 'classes', 'group-pattern'],
    examples: ['camflow dataset add nih ./cell_images --group-pattern "^(C\\d+)"', 'camflow dataset list --json', 'camflow dataset remove nih@d3f2a9c0b1e4d'],
  },
  submit: {
    maxArgs: 1,
    usage: [
      'camflow submit FOLDER|ARCHIVE|s3://BUCKET/PREFIX [--model V] [--target predicted|all|CLASS] [--fraction 0.2]',
      '               [--outputs json,heatmap,overlay|none] [--precision fp32|int8] [--chunk-size N] [--no-cell-mask]',
      '               [--kind auto|cells|fields] [--cell-diameter PX] [--key IDEMPOTENCY_KEY] [--priority high|normal|low]',
      '               [--webhook URL] [--wait]',
    ],
    summary: 'localize a batch: cell crops, smear fields or whole-slide scans, from a folder, a .tar/.tar.gz/.zip or an S3 prefix',
    options: SUBMIT_OPTIONS,
    examples: ['camflow submit ./smears --kind fields --wait', 'camflow submit ./archive.tar.gz --outputs json --precision int8 --priority low',
      'camflow submit ./urgent --priority high --webhook https://lims.example/camflow-done', 'SOURCE_S3_ENDPOINT=https://s3.lab.example camflow submit s3://slides/2026/ --key run-2026'],
  },
  open: {
    maxArgs: 1,
    usage: ['camflow open [BATCH_ID]'],
    summary: "the results viewer's URL (opened in a browser when one is at hand)",
    options: [],
    examples: ['camflow open b20261127T101500-0a1b2c3d4e5f'],
  },
  status: {
    maxArgs: 1,
    usage: ['camflow status BATCH_ID'],
    summary: 'state of a batch: images done with rate and time left, chunks, failures with the repair command',
    options: [],
    examples: ['camflow status b20261127T101500-0a1b2c3d4e5f --json'],
  },
  eval: {
    maxArgs: 1,
    usage: ['camflow eval FOLDER|DATASET[@V] [--model V] [--group-pattern RE] [--boxes F] [--truth auto|boxes|stain|none] [--subset auto|validation|all] [--out DIR] [--batch BATCH_ID]'],
    summary: "score a model on labelled images through the queues: HTML report + one JSON line (the model's own dataset: its validation images unless --subset all)",
    options: ['model', 'group-pattern', 'boxes', 'truth', 'subset', 'out', 'batch'],
    examples: ['camflow eval ./held-out-patients', 'camflow eval nih   # the validation patients of the model trained on dataset nih', 'camflow eval nih --batch b20261127T101500-0a1b2c3d4e5f   # score the batch of an eval stopped with Ctrl-C'],
  },
  batches: {
    maxArgs: 2,
    usage: ['camflow batches list [--limit 50] [--before BATCH_ID]', 'camflow batches cancel BATCH_ID', 'camflow batches repair BATCH_ID'],
    summary: 'the newest batches (state, images done, model; --before pages back to older ones); cancel one (every image still gets its line); re-create lost jobs from S3 and re-run a failed finalization',
    options: ['limit', 'before'],
    examples: ['camflow batches list --limit 10', 'camflow batches cancel b20261127T101500-0a1b2c3d4e5f', 'camflow batches repair b20261127T101500-0a1b2c3d4e5f'],
  },
  results: {
    maxArgs: 1,
    usage: ['camflow results BATCH_ID [--format jsonl|csv|geojson] [--out FILE]'],
    summary: "a finished batch's results, one line per submitted entry (JSON Schema: docs/result-line.schema.json)",
    options: ['format', 'out'],
    examples: ['camflow results b20261127T101500-0a1b2c3d4e5f --format csv --out results.csv'],
  },
  download: {
    maxArgs: 1,
    usage: ['camflow download BATCH_ID [--out DIR] [--only results,json,heatmap,overlay,fields,tiles]'],
    summary: "copy a finished batch's files to DIR (default ./BATCH_ID): the result lines, each cell's JSON, heatmap and overlay, each field's field.json, GeoJSON and Deep Zoom tiles; a second run resumes",
    options: ['out', 'only'],
    examples: ['camflow download b20261127T101500-0a1b2c3d4e5f', 'camflow download b20261127T101500-0a1b2c3d4e5f --out ./smears-results --only results,fields'],
  },
  train: {
    maxArgs: 2,
    usage: [
      'camflow train --dataset NAME [--version V] [--preset fast|seed] [--epochs N] [--lr X] [--batch-size N]',
      '              [--split auto|item|group] [--val-fraction 0.15] [--patience 5] [--seed N] [--no-promote] [--wait]',
      'camflow train list            (recent training jobs: running, waiting, finished, failed)',
      'camflow train show JOB_ID [--wait]',
      'camflow train --cancel JOB_ID',
    ],
    summary: 'train a model (defaults: ≤ 30 epochs with early stopping, lr 0.002 (seed preset: 0.0005) halved on plateaus, augmentation, class weights, best epoch published, screening threshold for recall 0.98)',
    options: [...TRAIN_OPTIONS, 'cancel'],
    examples: ['camflow train --dataset nih --wait', 'camflow train list', 'camflow train show 42 --wait', 'camflow train --cancel 42'],
  },
  schedule: {
    maxArgs: 1,
    usage: [
      'camflow schedule --dataset NAME --cron "0 2 * * *" [--tz Europe/Paris] [--preset fast|seed] [--epochs N] [--lr X]',
      '                 [--batch-size N] [--split auto|item|group] [--val-fraction 0.15] [--patience 5] [--seed N] [--no-promote]',
      'camflow schedule show',
      'camflow schedule remove',
    ],
    summary: 'retrain on a schedule with the training defaults (skipped when the dataset has not changed since the production model); one schedule, replaced by the next `schedule`',
    options: [...TRAIN_OPTIONS.filter((o) => o !== 'version' && o !== 'wait'), 'cron', 'tz'],
    examples: ['camflow schedule --dataset nih --cron "0 2 * * *" --tz Europe/Paris', 'camflow schedule show --json', 'camflow schedule remove'],
  },
  models: {
    maxArgs: 2,
    usage: ['camflow models [list]', 'camflow models promote VERSION'],
    summary: 'published model versions and their scores; make one production',
    options: [],
    examples: ['camflow models', 'camflow models promote m20261127-114107-6b86b2'],
  },
};

/** Every long option any command takes (the parser's table). */
export const ALL_OPTIONS = [...new Set(Object.values(COMMANDS).flatMap((c) => c.options))];

export function globalUsage(): string {
  const lines = Object.values(COMMANDS).map((c) => `  ${c.usage.join('\n  ')}\n      ${c.summary}`);
  return `camflow — Class Activation Mapping as a job-queue pipeline\n\n${lines.join('\n')}\n\n\`camflow COMMAND --help\` shows a command's options and examples. Every command takes --json (stdout then holds only JSON).\nConfiguration: environment variables (see the README).`;
}

export function commandHelp(name: string): string {
  const c = COMMANDS[name]!;
  return `${c.usage.join('\n')}\n\n${c.summary}\n\nExamples:\n${c.examples.map((e) => `  ${e}`).join('\n')}\n\nEvery command takes --json (stdout then holds only JSON). Configuration: environment variables (see the README).`;
}

/** Pure: why the words after the command are more than it takes, or undefined when they are not. */
export function argumentProblem(command: string, rest: readonly string[]): string | undefined {
  const spec = COMMANDS[command];
  if (!spec || rest.length <= spec.maxArgs) return undefined;
  return `camflow ${command} takes at most ${spec.maxArgs} argument${spec.maxArgs === 1 ? '' : 's'}; unexpected ${JSON.stringify(rest[spec.maxArgs])} (see camflow ${command} --help)`;
}

/** Pure: why the options given are not what `command` takes, or undefined when they are. */
export function optionProblem(command: string, given: readonly string[]): string | undefined {
  const spec = COMMANDS[command];
  if (!spec) return undefined;
  for (const name of given) {
    if (name === 'json' || name === 'help' || spec.options.includes(name)) continue;
    const near = suggest(name, spec.options);
    return `camflow ${command} does not take --${name}${near ? `; did you mean --${near}?` : ''} (see camflow ${command} --help)`;
  }
  return undefined;
}
