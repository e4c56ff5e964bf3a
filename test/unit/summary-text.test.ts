import { test } from 'node:test';
import assert from 'node:assert/strict';
import { summaryText } from '../../packages/cli/src/summary-text.ts';
import { smallFieldWarning } from '@camflow/common/core';

test('a batch summary reads as sentences: entries by class and by reason, the screening split, the pooled fields', () => {
  const text = summaryText({
    batchId: 'b1',
    modelVersion: 'm1',
    items: 6,
    ok: 5,
    failed: 1,
    byClass: { Parasitized: 2, Uninfected: 3 },
    failures: { 'not an image': 1 },
    chunks: { total: 2, failed: 0 },
    screen: { positiveClass: 'Parasitized', positive: 3, negative: 2 },
    fields: { images: 1, positiveClass: 'Parasitized', cells: 120, counted: 100, infected: 4, parasitemia: 0.04, interval: [0.0157, 0.0984] },
    completedAt: '2026-11-28T12:00:00.000Z',
  });
  assert.equal(
    text,
    [
      '6 files: 5 localized (Uninfected 3, Parasitized 2), 1 with a stated reason (not an image 1); model m1; completed 2026-11-28T12:00:00.000Z',
      "screening: 3 screen-positive for Parasitized, 2 negative at the model's operating point",
      '1 field: 4 of 100 counted cells Parasitized, parasitemia 4.0 % [95 % 1.6 % – 9.8 %]',
    ].join('\n'),
  );
  assert.equal(summaryText({ batchId: 'b2', modelVersion: 'm1', items: 1, ok: 0, failed: 1, byClass: {}, failures: { 'image too large': 1 }, chunks: { total: 1, failed: 0 }, completedAt: 't' }), '1 file: 0 localized, 1 with a stated reason (image too large 1); model m1; completed t');
  // A model promoted by hand despite its warning: every summary of its batches says so.
  const warned = summaryText({ batchId: 'b3', modelVersion: 'm2', items: 1, ok: 1, failed: 0, byClass: { Uninfected: 1 }, failures: {}, chunks: { total: 1, failed: 0 }, modelWarnings: ['validation accuracy 0.58 is no better than always answering Uninfected'], completedAt: 't' });
  assert.equal(warned.split('\n')[1], 'warning: model m2 was published with a warning: validation accuracy 0.58 is no better than always answering Uninfected');
});

test('fields of several images: each field on its own line first (a pooled figure over fields of different patients belongs to none), the spread, then all pooled', () => {
  const each = [
    { name: 'NIH-Pf.jpg', counted: 44, infected: 12, parasitemia: 12 / 44 },
    { name: 'uninfected.jpg', counted: 100, infected: 0, parasitemia: 0 },
  ];
  const base = { batchId: 'b3', modelVersion: 'm1', items: 2, ok: 2, failed: 0, byClass: { field: 2 }, failures: {}, chunks: { total: 1, failed: 0 }, completedAt: 't' };
  const fields = { images: 2, positiveClass: 'Parasitized', cells: 150, counted: 144, infected: 12, parasitemia: 12 / 144, interval: [0.048, 0.14] as [number, number], range: [0, 12 / 44] as [number, number], each };
  assert.deepEqual(summaryText({ ...base, fields }).split('\n').slice(1), [
    '2 fields: 12 of 144 counted cells Parasitized; per field 0.0 % – 27.3 %',
    '  NIH-Pf.jpg: 12 of 44, parasitemia 27.3 % [95 % 16.3 % – 41.8 %]',
    '  uninfected.jpg: 0 of 100, parasitemia 0.0 % [95 % 0.0 % – 3.7 %]',
    '  all 2 fields pooled (as one slide): parasitemia 8.3 % [95 % 4.8 % – 14.0 %]',
  ]);
  // More fields than the summary lists (it lists the first 10): the rest are named by the command that lists them.
  const ten = Array.from({ length: 10 }, (_, i) => ({ name: `f${i}.jpg`, counted: 10, infected: 1, parasitemia: 0.1 }));
  const many = summaryText({ ...base, items: 12, ok: 12, fields: { ...fields, images: 12, each: ten } });
  assert.match(many, /^ {2}… 2 more fields: `camflow results b3 --format csv` lists each$/m);
  // A field with no cell counted has no parasitemia (never "0.0 %", which reads as a clean smear); nor has a batch of such.
  const blank = { name: 'blank.jpg', counted: 0, infected: 0, parasitemia: 0 };
  assert.equal(summaryText({ ...base, fields: { ...fields, each: [each[0]!, blank] } }).split('\n')[3], '  blank.jpg: no cell counted (none found, or all cut by the edge): parasitemia not measured');
  const empty = { images: 1, positiveClass: 'Parasitized', cells: 0, counted: 0, infected: 0, parasitemia: 0, interval: [0, 0] as [number, number], each: [blank] };
  assert.equal(summaryText({ ...base, items: 1, ok: 1, fields: empty }).split('\n')[1], '1 field: no cell counted (none found, or all cut by the edge): parasitemia not measured');
  assert.equal(summaryText({ ...base, fields: { ...empty, images: 2, each: [blank, blank] } }).split('\n').pop(), '  all 2 fields pooled (as one slide): no cell counted (none found, or all cut by the edge): parasitemia not measured');
  // A field that may be one large cell says so under its figure.
  const warning = smallFieldWarning('auto', 560, 560, 1)!;
  const oneCell = { name: 'big-cell.png', counted: 1, infected: 0, parasitemia: 0, warning };
  assert.deepEqual(summaryText({ ...base, items: 1, ok: 1, fields: { ...empty, counted: 1, interval: [0, 0.793] as [number, number], each: [oneCell] } }).split('\n').slice(1), ['1 field: 0 of 1 counted cells Parasitized, parasitemia 0.0 % [95 % 0.0 % – 79.3 %]', `warning: ${warning}`]);
  assert.deepEqual(summaryText({ ...base, fields: { ...fields, each: [each[0]!, oneCell] } }).split('\n').slice(3, 5), ['  big-cell.png: 0 of 1, parasitemia 0.0 % [95 % 0.0 % – 79.3 %]', `    warning: ${warning}`]);
});
