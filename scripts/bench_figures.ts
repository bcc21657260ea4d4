// Summaries of repeated measurements and the markdown they are printed as, shared by the benchmark's
// orchestrator (bench.ts, bench_pg.ts) and its workers (bench_worker.ts).

/** Best, median and worst of repeated passes. */
export interface Spread {
  readonly best: number;
  readonly median: number;
  readonly worst: number;
}

/** The spread of `values`, where higher is better. */
export function spread(values: readonly number[]): Spread {
  const sorted = [...values].sort((a, b) => b - a);
  return { best: sorted[0]!, median: sorted[Math.floor(sorted.length / 2)]!, worst: sorted.at(-1)! };
}

/** The `q` quantile (0 < q ≤ 1) of ascending `sorted` values, nearest rank. */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** `n` rounded, with thousands separators. */
export const int = (n: number): string => Math.round(n).toLocaleString("en-US");
/** Milliseconds with 2 decimals below 10, else 1. */
export const ms = (n: number): string => n < 10 ? n.toFixed(2) : n.toFixed(1);
const row = (cols: (string | number)[]) => `| ${cols.join(" | ")} |`;

/** A markdown table. */
export const table = (head: string[], rows: (string | number)[][]): string =>
  [row(head), row(head.map(() => "---")), ...rows.map(row)].join("\n");

/** "worst–best". */
export const rangeText = (s: Spread): string => `${int(s.worst)}–${int(s.best)}`;

/** "worst–best (med median)". */
export const spreadText = (s: Spread): string => `${int(s.worst)}–${int(s.best)} (med ${int(s.median)})`;
