/**
 * The one rule for every name and key Reflow stores (workflow, step, branch, wait and event
 * names, idempotency keys, schedule keys): well-formed Unicode without NUL. SQLite stores a lone
 * UTF-16 surrogate as U+FFFD (so two keys would collide) and `node:sqlite` cuts text at a NUL, so
 * such names cannot round-trip on every driver; they are refused where they enter instead.
 *
 * @module
 */

import { describe } from "./describe.ts";
import { ConfigError, MalformedNameError } from "./errors.ts";

// Without the `u` flag a regex sees code units: a NUL, a high surrogate not followed by a low one,
// or a low surrogate not preceded by a high one.
const BAD_UNIT = /\0|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** `String.prototype.isWellFormed` (ES2024; on every runtime Reflow supports, not in our TS lib). */
interface WellFormedCheck {
  isWellFormed(): boolean;
}

/**
 * The error for a name that breaks the rule, naming its first offending code unit.
 *
 * @param field The option or argument holding the name.
 * @param name The name or key.
 * @returns The error, or undefined when the name can be stored exactly.
 */
export function malformedName(field: string, name: string): MalformedNameError | undefined {
  // The native checks are ~20x faster than the regex, and names are checked on every step commit.
  if (name.indexOf("\0") === -1 && (name as unknown as WellFormedCheck).isWellFormed()) return undefined;
  const match = BAD_UNIT.exec(name);
  if (match === null) return undefined;
  const unit = name.charCodeAt(match.index);
  const hex = `0x${unit.toString(16).toUpperCase().padStart(4, "0")}`;
  return new MalformedNameError(field, name, match.index, hex, unit === 0 ? "NUL" : "a lone surrogate");
}

/**
 * Checks a name or key given to the builder or the engine.
 *
 * @param value The value.
 * @param field The option or argument, for the error.
 * @param where What it names, for the message (e.g. `in workflow "signup"`); may be empty.
 * @returns The name.
 * @throws {ConfigError} When it is not a non-empty string (a `MalformedNameError` when it breaks
 *   the naming rule).
 */
export function checkName(value: unknown, field: string, where = ""): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new ConfigError(`Invalid ${field} ${describe(value)}${where}: expected a non-empty string`, {
      field,
    });
  }
  const error = malformedName(field, value);
  if (error !== undefined) throw error;
  return value;
}
