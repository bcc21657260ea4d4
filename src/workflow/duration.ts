import { ConfigError } from "../errors.ts";

/** A span of time: milliseconds as a number, or a string such as `"500ms"`, `"30s"`, `"5m"`, `"24h"`, `"7d"`. */
export type Duration = number | `${number}${"ms" | "s" | "m" | "h" | "d"}`;

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * Converts a {@linkcode Duration} to milliseconds.
 *
 * @param duration The duration.
 * @param field The option it came from, for the error.
 * @param where What it configures, for the error message.
 * @returns Whole milliseconds, 0 or more.
 * @throws {ConfigError} For a negative, non-finite or unparseable duration.
 */
export function durationMs(duration: Duration, field: string, where: string): number {
  let ms: number | undefined;
  if (typeof duration === "number") ms = duration;
  else if (typeof duration === "string") {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(duration.trim());
    if (match) ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  }
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) {
    throw new ConfigError(
      `Invalid ${field} ${
        typeof duration === "string" ? JSON.stringify(duration) : String(duration)
      } for ${where}: expected ms (a number ≥ 0) or a string like "30s", "5m", "24h", "7d"`,
      { field },
    );
  }
  return Math.round(ms);
}
