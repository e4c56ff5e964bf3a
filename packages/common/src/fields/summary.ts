import type { FieldCell, FieldSummary } from '../queues/contracts.js';
import { wilsonInterval } from './metrics.js';

/**
 * A field's answer from its cells: cells cut by an edge are listed but not counted; the parasitemia is the share
 * of counted cells predicted (argmax) as the positive class, with its 95 % Wilson interval.
 */
export function summariseField(cells: FieldCell[], positiveClass: string, found: { diameter: number; whiteCells?: number; fov?: { cx: number; cy: number; r: number } }): FieldSummary {
  const counted = cells.filter((c) => !c.clipped);
  const infected = counted.filter((c) => c.predicted.label === positiveClass).length;
  return {
    positiveClass,
    cells: cells.length,
    counted: counted.length,
    infected,
    parasitemia: counted.length === 0 ? 0 : infected / counted.length,
    interval: wilsonInterval(infected, counted.length),
    ...(found.whiteCells !== undefined ? { whiteCells: found.whiteCells } : {}),
    cellDiameter: Math.round(found.diameter * 10) / 10,
    ...(found.fov ? { fov: found.fov } : {}),
  };
}

const colours: Record<string, [number, number, number]> = { Parasitized: [220, 40, 40], Uninfected: [60, 170, 75], Parasite: [255, 200, 0] };
/** A stable colour per class name (QuPath shows the classification in it). */
export function classColour(name: string): [number, number, number] {
  if (colours[name]) return colours[name];
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return [64 + (h % 160), 64 + ((h >> 8) % 160), 64 + ((h >> 16) % 160)];
}

/**
 * The field's cells as a GeoJSON FeatureCollection that QuPath imports (File › Import objects): each cell a polygon
 * `detection` classified by its predicted class with its measurements; each parasite box (the positive class's CAM
 * box, for cells predicted positive) a separate `detection` classified `Parasite`. Coordinates: field pixels.
 */
export function fieldGeoJson(cells: FieldCell[], positiveClass: string): { type: 'FeatureCollection'; features: unknown[] } {
  const features: unknown[] = [];
  for (const c of cells) {
    const ring = c.polygon.length >= 3 ? counterClockwise([...c.polygon, c.polygon[0]!]) : rect(c.box);
    features.push({
      type: 'Feature',
      id: `cell-${c.cell}`,
      geometry: { type: 'Polygon', coordinates: [ring] },
      properties: {
        objectType: 'detection',
        name: `cell ${c.cell}`,
        classification: { name: c.predicted.label, color: classColour(c.predicted.label) },
        isLocked: false,
        measurements: {
          [`P(${positiveClass})`]: round(c.probabilities[positiveClass] ?? 0),
          'CAM peak x': c.peak.x,
          'CAM peak y': c.peak.y,
          clipped: c.clipped ? 1 : 0,
        },
      },
    });
    if (c.parasiteBox && c.predicted.label === positiveClass) {
      features.push({
        type: 'Feature',
        id: `parasite-${c.cell}`,
        geometry: { type: 'Polygon', coordinates: [rect(c.parasiteBox)] },
        properties: { objectType: 'detection', name: `parasite of cell ${c.cell}`, classification: { name: 'Parasite', color: classColour('Parasite') }, isLocked: false, measurements: { cell: c.cell } },
      });
    }
  }
  return { type: 'FeatureCollection', features };
}

/** Pure: twice a closed ring's signed area by the shoelace formula, x and y as written (positive: counterclockwise). */
export function signedArea2(ring: readonly (readonly [number, number])[]): number {
  let sum = 0;
  for (let i = 0; i + 1 < ring.length; i++) sum += ring[i]![0] * ring[i + 1]![1] - ring[i + 1]![0] * ring[i]![1];
  return sum;
}

/**
 * Pure: a closed ring wound as RFC 7946 asks of an exterior ring (counterclockwise, the coordinates read as written),
 * as the parasite boxes' `rect` already is: one winding for every polygon of a file.
 */
export function counterClockwise<T extends readonly [number, number]>(ring: T[]): T[] {
  return signedArea2(ring) < 0 ? [...ring].reverse() : ring;
}

const round = (v: number) => Math.round(v * 10_000) / 10_000;
const rect = (b: { x: number; y: number; width: number; height: number }): [number, number][] => [
  [b.x, b.y],
  [b.x + b.width, b.y],
  [b.x + b.width, b.y + b.height],
  [b.x, b.y + b.height],
  [b.x, b.y],
];
