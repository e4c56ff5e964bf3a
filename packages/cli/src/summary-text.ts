import { wilsonInterval, type BatchSummary } from '@camflow/common/core';
import { counted } from './cli-io.js';

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
const counts = (r: Record<string, number>) =>
  Object.entries(r)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');

/**
 * A finished batch's summary in sentences (what `submit --wait` and `status` print without `--json`):
 * how many entries ended how, by class and by reason, the screening split, and the fields' parasitemia — each field's
 * (the first ten), the spread, and all pooled (meaningful for the fields of one slide).
 * @example summaryText(summary) // "6 files: 5 localized (Uninfected 3, Parasitized 2), 1 refused (not an image 1)…"
 */
export function summaryText(s: BatchSummary): string {
  const lines = [
    // Every submitted file is counted (a README.txt beside the images too: its line says why it was refused).
    `${counted(s.items, 'file')}: ${s.ok} localized${s.ok ? ` (${counts(s.byClass)})` : ''}${s.failed ? `, ${s.failed} with a stated reason (${counts(s.failures)})` : ''}; model ${s.modelVersion}; completed ${s.completedAt}`,
  ];
  if (s.screen) lines.push(`screening: ${s.screen.positive} screen-positive for ${s.screen.positiveClass}, ${s.screen.negative} negative at the model's operating point`);
  const f = s.fields;
  // No counted cell is no measurement: never "0.0 %", which reads as a smear found clean.
  const none = 'no cell counted (none found, or all cut by the edge): parasitemia not measured';
  const figure = (p: { parasitemia: number; interval: [number, number] }) => `parasitemia ${pct(p.parasitemia)} [95 % ${pct(p.interval[0])} – ${pct(p.interval[1])}]`;
  if (f && f.images === 1) {
    lines.push(f.counted ? `1 field: ${f.infected} of ${f.counted} counted cells ${f.positiveClass}, ${figure(f)}` : `1 field: ${none}`);
    if (f.each?.[0]?.warning) lines.push(`warning: ${f.each[0].warning}`);
  } else if (f) {
    // Pooled cells mean something only for fields of one slide: each field's own comes first.
    lines.push(`${f.images} fields: ${f.infected} of ${f.counted} counted cells ${f.positiveClass}${f.range ? `; per field ${pct(f.range[0])} – ${pct(f.range[1])}` : ''}`);
    for (const e of f.each ?? []) lines.push(`  ${e.name}: ${e.counted ? `${e.infected} of ${e.counted}, ${figure({ parasitemia: e.parasitemia, interval: wilsonInterval(e.infected, e.counted) })}` : none}${e.warning ? `\n    warning: ${e.warning}` : ''}`);
    if (f.each && f.images > f.each.length) lines.push(`  … ${f.images - f.each.length} more fields: \`camflow results ${s.batchId} --format csv\` lists each`);
    lines.push(`  all ${f.images} fields pooled (as one slide): ${f.counted ? figure(f) : none}`);
  }
  for (const w of s.modelWarnings ?? []) lines.push(`warning: model ${s.modelVersion} was published with a warning: ${w}`);
  if (s.listing) lines.push(`listing of ${s.listing.source}: ${s.listing.state} (${counted(s.listing.pages, 'page')})${s.listing.reason ? `: ${s.listing.reason}` : ''}`);
  return lines.join('\n');
}
