/**
 * Quoting values in error messages.
 *
 * @module
 */

/**
 * Quotes a value for an error message.
 *
 * @param value Any value.
 * @returns Strings as JSON, anything else as `String(value)` (or its tag, when that throws).
 */
export function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}
