/**
 * Unknown option keys are refused everywhere: a typo such as `{ timeoutMz: 50 }` or a hook named
 * `onRunStartt` would otherwise be silently ignored. Each options type has one table of its keys,
 * declared next to the type as `const X_KEYS: OptionKeys<X> = { ... }`, so that adding a key to the
 * type without adding it to the table fails to compile.
 *
 * @module
 */

import { describe } from "./describe.ts";
import { ConfigError } from "./errors.ts";

/** Every key of an options type `T`, as a table (`{ key: true, ... }`) that must list them all. */
export type OptionKeys<T> = { readonly [K in keyof Required<T>]: true };

/**
 * Checks that `value` is an options object whose keys are all in `keys`.
 *
 * @param value The options, or undefined when they were left out.
 * @param keys The table of the type's keys.
 * @param field The option holding this object (e.g. `"hooks"`, `"retry"`): it prefixes the field
 *   of an unknown key. Undefined for a method's own options argument (then the field is the key).
 * @param what What the object configures, for the message (e.g. `"engine options"`).
 * @returns The value, typed.
 * @throws {ConfigError} When it is not a plain object (field: `field`, or `"options"`), or has a key
 *   the table lacks (field: the key, prefixed by `field`).
 */
export function checkOptionKeys<T extends object>(
  value: T | undefined,
  keys: OptionKeys<T>,
  field: string | undefined,
  what: string,
): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(`Invalid ${what} ${describe(value)}: expected an object`, {
      field: field ?? "options",
    });
  }
  for (const key of Object.keys(value)) {
    if (!Object.hasOwn(keys, key)) {
      const known = Object.keys(keys).join(", ");
      throw new ConfigError(`Unknown option "${key}" in ${what}: expected one of ${known}`, {
        field: field === undefined ? key : `${field}.${key}`,
      });
    }
  }
  return value;
}
