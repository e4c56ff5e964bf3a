import { runDemo } from '../demo.js';
import type { CommandInput } from '../cli-io.js';

/** `camflow demo`: see `camflow demo --help` (the command table in `commands.ts`). */
export async function run({ v, num }: CommandInput): Promise<void> {
  const line = await runDemo({
    out: v.out ?? 'camflow-demo',
    trainImages: num('train-images', 2000)!,
    heldOut: num('held-out', 300)!,
    epochs: num('epochs', 5)!,
    seed: num('seed', 7)!,
  });
  process.stdout.write(`${JSON.stringify(line)}\n`);
}
