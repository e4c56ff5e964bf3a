/** Pure: edit distance with adjacent transpositions counted as one edit (optimal string alignment; small strings). */
export function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  return d[a.length]![b.length]!;
}

/**
 * Pure: the closest candidate to a mistyped word, when it is close enough to be what was meant (the CLI's commands
 * and options, a schema's allowed values).
 * @example suggest('sumbit', ['submit', 'status']) // 'submit'
 */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  // The same word in other letter case (`parasitized` for `Parasitized`), then one that the word extends or
  // shortens (`fastest` for `fast`, 3 letters at least), then the nearest by a few edits (`wiat` for `wait`).
  const sameCase = candidates.find((c) => c.toLowerCase() === w);
  if (sameCase) return sameCase;
  const prefixed = candidates.filter((c) => Math.min(c.length, w.length) >= 3 && (w.startsWith(c.toLowerCase()) || c.toLowerCase().startsWith(w)));
  if (prefixed.length === 1) return prefixed[0];
  let best: { c: string; d: number } | undefined;
  for (const c of candidates) {
    const d = distance(w, c.toLowerCase());
    if (!best || d < best.d) best = { c, d };
  }
  return best && best.d <= Math.max(1, Math.floor(best.c.length / 3)) ? best.c : undefined;
}
