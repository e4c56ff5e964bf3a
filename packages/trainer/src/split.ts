import { createRng } from '@camflow/common';

/**
 * Seeded train/validation split. By `group` (patient/slide), every group lands wholly on one side, so a patient's
 * cells never leak from training into validation; by `item`, a stratified split per class.
 * @example const { train, validation } = splitIndices(items, 0.15, 42, 'group');
 */
export function splitIndices(items: { label: number; group: string }[], fraction: number, seed: number, by: 'item' | 'group'): { train: number[]; validation: number[] } {
  const rng = createRng(seed);
  const validation: number[] = [];
  const train: number[] = [];
  if (by === 'group') {
    const groups = [...new Set(items.map((i) => i.group))].sort();
    rng.shuffle(groups);
    const target = Math.max(1, Math.round(items.length * fraction));
    const held = new Set<string>();
    let count = 0;
    const sizes = new Map<string, number>();
    for (const i of items) sizes.set(i.group, (sizes.get(i.group) ?? 0) + 1);
    for (const g of groups) {
      if (count >= target || held.size === groups.length - 1) break;
      held.add(g);
      count += sizes.get(g)!;
    }
    items.forEach((item, i) => {
      (held.has(item.group) ? validation : train).push(i);
    });
    return { train, validation };
  }
  const byLabel = new Map<number, number[]>();
  items.forEach((item, i) => {
    byLabel.set(item.label, [...(byLabel.get(item.label) ?? []), i]);
  });
  for (const label of [...byLabel.keys()].sort((a, b) => a - b)) {
    const idx = rng.shuffle(byLabel.get(label)!);
    const n = Math.min(idx.length - 1, Math.max(1, Math.round(idx.length * fraction)));
    validation.push(...idx.slice(0, n));
    train.push(...idx.slice(n));
  }
  return { train: train.sort((a, b) => a - b), validation: validation.sort((a, b) => a - b) };
}

/**
 * The split a `splitBy` of `auto` means for these items: `group` when there are at least two groups and some group
 * holds more than one image (patients, slides), else `item`.
 */
export function resolveSplitBy(items: { group: string }[], splitBy: 'auto' | 'item' | 'group'): 'item' | 'group' {
  if (splitBy !== 'auto') return splitBy;
  const groups = new Set(items.map((i) => i.group)).size;
  return groups >= 2 && groups < items.length ? 'group' : 'item';
}

/** Gather packed images by index. */
export function gather(images: Uint8Array, labels: ArrayLike<number>, indices: number[], size: number): { images: Uint8Array; labels: Int32Array; size: number } {
  const per = size * size * 3;
  const out = new Uint8Array(indices.length * per);
  const outLabels = new Int32Array(indices.length);
  indices.forEach((j, i) => {
    out.set(images.subarray(j * per, (j + 1) * per), i * per);
    outLabels[i] = labels[j]!;
  });
  return { images: out, labels: outLabels, size };
}
