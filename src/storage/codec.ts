/**
 * The persisted-value codec. Every value Reflow stores (workflow inputs, step outputs,
 * event payloads) is encoded here on the way in and decoded on the way out.
 *
 * ## What can be stored
 *
 * `null`, booleans, finite numbers, strings, arrays, plain objects (prototype
 * `Object.prototype` or `null`), valid `Date`s and `undefined`, nested freely. They
 * round-trip exactly, with these documented exceptions:
 *
 * - `-0` comes back as `0` (JSON has no negative zero);
 * - null-prototype objects come back with `Object.prototype`;
 * - sparse-array holes come back as `undefined` elements (the length is kept);
 * - only own enumerable string keys are kept: non-index properties on arrays and any
 *   properties on `Date`s are dropped, and getters are called (possibly twice).
 *
 * Anything else is rejected with a {@linkcode SerializationError} whose `path` says where
 * (`$`, `$.a[2].b`, `$["my key"]`): NaN, ±Infinity, bigints, functions, symbols (values or
 * keys), class instances, `Map`, `Set`, `RegExp`, typed arrays, boxed primitives, Invalid
 * Dates, cycles, and nesting deeper than 1,000 containers. A shared reference that is not a
 * cycle is fine; it is written twice. A value whose encoding exceeds
 * {@linkcode MAX_VALUE_BYTES} (4 MiB of UTF-8) is rejected at path `$`.
 *
 * ## Stored format
 *
 * The text is plain JSON, so it can be read with SQL such as `json_extract`. Values JSON
 * can hold are written as themselves; three rewrites keep the rest exact:
 *
 * - a `Date` becomes `{"$date":"2024-01-01T00:00:00.000Z"}` (its `toISOString()`, which
 *   uses the `+275760-…` form for years outside 0–9999);
 * - `undefined` (at the top level, as a property value, or as an array element or hole)
 *   becomes `{"$undefined":1}`;
 * - an object key that starts with `$` gets one more `$`: `{"$ref":1}` is stored as
 *   `{"$$ref":1}` (in SQLite: `json_extract(col, '$."$$ref"')`).
 *
 * So after encoding, a key starting with a single `$` only ever appears as the sole key
 * of a tag object, and no user value can be mistaken for a tag. Decoding rejects unknown
 * tags rather than guessing, so text written by a newer format fails loudly.
 *
 * @module
 */

import { SerializationError } from "../errors.ts";
import type { EncodedValue } from "./adapter.ts";

type PathKey = string | number;

/** Mutable walk state; allocated per call so that re-entrant encodes (from getters) stay correct. */
interface EncodeState {
  /** The containers from the root to the one being walked, for cycle detection. */
  readonly ancestors: object[];
  /** The keys leading to the container being walked (not including the root). */
  readonly keys: PathKey[];
}

const DOLLAR = 36; // "$"
const QUOTE = 34; // '"'

// Shared: JSON.stringify only reads it, and encoded trees never escape this module.
const UNDEFINED_TAG: Readonly<{ $undefined: 1 }> = Object.freeze({ $undefined: 1 });

/**
 * Containers that may nest inside one another. The walks recurse, so this keeps a deep value a
 * SerializationError rather than a stack overflow on some runtime (Node's stack ends near 3,000).
 */
const MAX_DEPTH = 1000;

/**
 * The largest encoded value Reflow stores, in UTF-8 bytes: 4 MiB. SQLite itself accepts up to 1e9
 * bytes per value, but every stored value is read back whole (a run's input on each claim, its
 * step outputs on each reclaim) inside a single-writer database, so a value this large is almost
 * always a bug or a blob that belongs elsewhere (store a reference to it instead).
 */
export const MAX_VALUE_BYTES = 4 * 1024 * 1024;

const IDENTIFIER = /^[\p{ID_Start}$_][\p{ID_Continue}$\u200C\u200D]*$/u;

/**
 * Encodes a value for storage as JSON text, tagging `Date`s and `undefined` and escaping
 * `$`-prefixed keys (see the module documentation for the format).
 *
 * Values that need no rewriting (no `Date`, no `undefined`, no `$`-key) are validated in
 * one walk and passed to `JSON.stringify` without being copied.
 *
 * @example Encode a step output
 * ```ts
 * import { encodeValue } from "@reflow/core";
 *
 * const text = encodeValue({ at: new Date(0), note: undefined, $ref: 1 });
 * console.log(text); // {"at":{"$date":"1970-01-01T00:00:00.000Z"},"note":{"$undefined":1},"$$ref":1}
 * ```
 *
 * @param value The value to store.
 * @param maxBytes The largest encoding accepted, in UTF-8 bytes; default {@linkcode MAX_VALUE_BYTES}.
 * @returns The JSON text to persist.
 * @throws {SerializationError} If the value, or anything inside it, cannot be stored; `path` says
 *   where (`$` for a value whose encoding exceeds `maxBytes`).
 */
export function encodeValue(value: unknown, maxBytes: number = MAX_VALUE_BYTES): EncodedValue {
  const state: EncodeState = { ancestors: [], keys: [] };
  let text: string;
  try {
    // When nothing needed rewriting, `encoded` is the caller's value itself: no copy was made.
    text = JSON.stringify(encodeAny(value, state, undefined));
  } catch (error) {
    if (error instanceof SerializationError) throw error;
    // User code ran inside the value (a getter, a toJSON, a revoked Proxy's trap) and threw.
    throw new SerializationError(
      `Cannot read the value: ${error instanceof Error ? error.message : String(error)}`,
      formatPath(state.keys, undefined),
      { cause: error },
    );
  }
  // A UTF-16 code unit takes at most 3 UTF-8 bytes, so short texts need no measuring.
  if (text.length * 3 > maxBytes) {
    const bytes = utf8Length(text);
    if (bytes > maxBytes) {
      throw new SerializationError(
        `Cannot store a value of ${bytes} bytes encoded: the limit is ${maxBytes} bytes`,
        "$",
      );
    }
  }
  return text;
}

/**
 * The UTF-8 length of a string, without allocating its encoding. JSON.stringify escapes lone
 * surrogates, so they are counted as 3 bytes (U+FFFD) only for safety.
 */
function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

function encodeAny(value: unknown, state: EncodeState, key: PathKey | undefined): unknown {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (Number.isFinite(value)) return value;
      throw fail(state, key, `Cannot store ${value}`);
    case "undefined":
      return UNDEFINED_TAG;
    case "object":
      if (value === null) return null;
      return encodeObjectLike(value, state, key);
    case "bigint":
      throw fail(state, key, "Cannot store a bigint");
    case "function":
      throw fail(state, key, "Cannot store a function");
    case "symbol":
      throw fail(state, key, "Cannot store a symbol");
    default:
      throw fail(state, key, `Cannot store a value of type ${typeof value}`);
  }
}

function encodeObjectLike(value: object, state: EncodeState, key: PathKey | undefined): unknown {
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) {
    return encodeObject(value as Record<string, unknown>, state, key);
  }
  if (proto === Array.prototype && Array.isArray(value)) return encodeArray(value, state, key);
  if (proto === Date.prototype) return encodeDate(value as Date, state, key);
  throw fail(state, key, describeUnsupported(value, proto));
}

function encodeDate(date: Date, state: EncodeState, key: PathKey | undefined): unknown {
  let time: number;
  try {
    time = date.getTime();
  } catch {
    // Object.create(Date.prototype): has the prototype but no time value.
    throw fail(state, key, "Cannot store an object with a custom prototype");
  }
  if (Number.isNaN(time)) throw fail(state, key, "Cannot store an Invalid Date");
  return { $date: date.toISOString() };
}

function encodeArray(array: readonly unknown[], state: EncodeState, key: PathKey | undefined): unknown {
  enter(array, state, key);
  let out: unknown[] | undefined;
  for (let i = 0; i < array.length; i++) {
    const child = array[i];
    const encoded = encodeAny(child, state, i);
    if (out !== undefined) out.push(encoded);
    else if (encoded !== child) {
      // First rewrite: copy the untouched prefix (it cannot contain holes, they encode as tags).
      out = array.slice(0, i);
      out.push(encoded);
    }
  }
  leave(state, key);
  return out ?? array;
}

function encodeObject(
  object: Record<string, unknown>,
  state: EncodeState,
  key: PathKey | undefined,
): unknown {
  const symbols = Object.getOwnPropertySymbols(object);
  if (symbols.length !== 0) rejectSymbolKeys(object, symbols, state, key);
  enter(object, state, key);
  const keys = Object.keys(object);
  let out: Record<string, unknown> | undefined;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const child = object[k];
    const encoded = encodeAny(child, state, k);
    const escaped = k.charCodeAt(0) === DOLLAR;
    if (out === undefined) {
      if (encoded === child && !escaped) continue;
      out = {};
      for (let j = 0; j < i; j++) setOwn(out, keys[j], object[keys[j]]);
    }
    setOwn(out, escaped ? "$" + k : k, encoded);
  }
  leave(state, key);
  return out ?? object;
}

function rejectSymbolKeys(
  object: object,
  symbols: readonly symbol[],
  state: EncodeState,
  key: PathKey | undefined,
): void {
  // Non-enumerable symbols are ignored like non-enumerable strings: JSON never sees either.
  for (const symbol of symbols) {
    if (Object.prototype.propertyIsEnumerable.call(object, symbol)) {
      throw fail(state, key, `Cannot store a symbol key (${String(symbol)})`);
    }
  }
}

function enter(container: object, state: EncodeState, key: PathKey | undefined): void {
  // A linear scan beats a Set for the shallow trees typical here.
  if (state.ancestors.includes(container)) throw fail(state, key, "Cannot store a cyclic reference");
  if (state.ancestors.length === MAX_DEPTH) {
    throw fail(state, key, `Cannot store a value nested more than ${MAX_DEPTH} levels deep`);
  }
  state.ancestors.push(container);
  if (key !== undefined) state.keys.push(key);
}

function leave(state: EncodeState, key: PathKey | undefined): void {
  state.ancestors.pop();
  if (key !== undefined) state.keys.pop();
}

function describeUnsupported(value: object, proto: unknown): string {
  if (value instanceof Map) return "Cannot store a Map";
  if (value instanceof Set) return "Cannot store a Set";
  if (value instanceof WeakMap) return "Cannot store a WeakMap";
  if (value instanceof WeakSet) return "Cannot store a WeakSet";
  if (value instanceof RegExp) return "Cannot store a RegExp";
  if (value instanceof Promise) return "Cannot store a Promise (was it awaited?)";
  if (value instanceof DataView) return "Cannot store a DataView";
  if (ArrayBuffer.isView(value)) return `Cannot store a typed array (${value.constructor.name})`;
  if (value instanceof ArrayBuffer) return "Cannot store an ArrayBuffer";
  if (typeof SharedArrayBuffer === "function" && value instanceof SharedArrayBuffer) {
    return "Cannot store a SharedArrayBuffer";
  }
  for (const box of [Number, String, Boolean, BigInt, Symbol] as const) {
    if (value instanceof box) return `Cannot store a boxed ${box.name}`;
  }
  const ctor = typeof proto === "object" && proto !== null
    ? (proto as { constructor?: unknown }).constructor
    : undefined;
  if (typeof ctor === "function" && ctor.prototype === proto) {
    return ctor.name === ""
      ? "Cannot store an instance of an anonymous class"
      : `Cannot store an instance of class ${ctor.name}`;
  }
  return "Cannot store an object with a custom prototype";
}

/**
 * Decodes text written by {@linkcode encodeValue}: the exact inverse, restoring `Date`s,
 * `undefined` values and `$`-prefixed keys.
 *
 * Text with no `"$` in it has no tags or escaped keys, so it is returned by `JSON.parse` alone.
 *
 * @example Decode a stored value
 * ```ts
 * import { decodeValue } from "@reflow/core";
 *
 * const value = decodeValue('{"at":{"$date":"1970-01-01T00:00:00.000Z"},"$$ref":1}') as Record<string, unknown>;
 * console.log(value.at instanceof Date, value.$ref); // true 1
 * ```
 *
 * @param text JSON text produced by {@linkcode encodeValue}.
 * @returns The decoded value: fresh objects and arrays, never shared with other calls.
 * @throws {SerializationError} If the text is not JSON, or holds an unknown or malformed tag.
 */
export function decodeValue(text: EncodedValue): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new SerializationError(`Cannot decode invalid JSON (${(error as Error).message})`, "$");
  }
  if (!mayHoldTags(text)) return parsed;
  // A post-walk that skips primitives is faster than a JSON.parse reviver called on every value.
  return decodeAny(parsed, [], undefined);
}

/**
 * Whether the text has a `"$` (a tag or an escaped key always starts so; a `"$` inside a
 * string only costs a needless walk). Scans for the single `$` first: engines search one
 * character far faster than two, and most texts have no `$` at all.
 */
function mayHoldTags(text: string): boolean {
  for (let i = text.indexOf("$"); i !== -1; i = text.indexOf("$", i + 1)) {
    if (text.charCodeAt(i - 1) === QUOTE) return true;
  }
  return false;
}

function decodeAny(value: unknown, keys: PathKey[], key: PathKey | undefined): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (key !== undefined) keys.push(key);
  const decoded = Array.isArray(value)
    ? decodeArray(value, keys)
    : decodeObject(value as Record<string, unknown>, keys);
  if (key !== undefined) keys.pop();
  return decoded;
}

function decodeArray(array: unknown[], keys: PathKey[]): unknown[] {
  for (let i = 0; i < array.length; i++) {
    const child = array[i];
    if (typeof child !== "object" || child === null) continue;
    const decoded = decodeAny(child, keys, i);
    if (decoded !== child) array[i] = decoded;
  }
  return array;
}

function decodeObject(object: Record<string, unknown>, keys: PathKey[]): unknown {
  const own = Object.keys(object);
  let escaped = false;
  for (const k of own) {
    if (k.charCodeAt(0) !== DOLLAR) continue;
    if (k.charCodeAt(1) !== DOLLAR) return decodeTag(object, own, k, keys);
    escaped = true;
  }
  if (!escaped) {
    // JSON.parse made this object; update it in place (an own "__proto__" is a data property here).
    for (const k of own) {
      const child = object[k];
      if (typeof child !== "object" || child === null) continue;
      const decoded = decodeAny(child, keys, k);
      if (decoded !== child) object[k] = decoded;
    }
    return object;
  }
  // Unescaping renames keys; rebuild to keep their order.
  const out: Record<string, unknown> = {};
  for (const k of own) {
    const userKey = k.charCodeAt(0) === DOLLAR ? k.slice(1) : k;
    const decoded = decodeAny(object[k], keys, userKey);
    setOwn(out, userKey, decoded);
  }
  return out;
}

function decodeTag(
  object: Record<string, unknown>,
  own: readonly string[],
  tag: string,
  keys: PathKey[],
): unknown {
  const path = formatPath(keys, undefined);
  if (own.length !== 1) {
    throw new SerializationError(`Cannot decode tag "${tag}" mixed with other keys`, path);
  }
  if (tag === "$undefined") return undefined;
  if (tag === "$date") {
    const iso = object[tag];
    const date = typeof iso === "string" ? new Date(iso) : undefined;
    if (date === undefined || Number.isNaN(date.getTime())) {
      throw new SerializationError(`Cannot decode malformed $date tag ${JSON.stringify(iso)}`, path);
    }
    return date;
  }
  throw new SerializationError(`Cannot decode unknown tag "${tag}"`, path);
}

/**
 * Freezes a value and everything inside it: plain objects, arrays and `Date`s. Other objects
 * (class instances, maps, typed arrays) are left as they are, since freezing them either
 * breaks them or does not protect their contents.
 *
 * A frozen `Date` still changes through `setTime()` and the other setters, which act on an
 * internal slot that freezing does not cover; treat Dates in a snapshot as read-only by
 * convention. Objects that are already frozen are assumed deep-frozen and not descended into,
 * which keeps cycles finite and re-freezing a snapshot cheap.
 *
 * @example Freeze a decoded snapshot
 * ```ts
 * const snapshot = deepFreeze({ user: { tags: ["a"] } });
 * console.log(Object.isFrozen(snapshot.user.tags)); // true
 * ```
 *
 * @param value The value to freeze, in place.
 * @returns The same value, now frozen.
 */
export function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) freezeNode(value);
  return value;
}

function freezeNode(node: object): void {
  const proto: unknown = Object.getPrototypeOf(node);
  if (proto === Array.prototype || proto === Object.prototype || proto === null) {
    // Freeze first so that a cycle back to this node sees it frozen and stops.
    Object.freeze(node);
    const record = node as Record<string, unknown>;
    for (const k of Object.keys(record)) {
      const child = record[k];
      if (typeof child === "object" && child !== null && !Object.isFrozen(child)) freezeNode(child);
    }
  } else if (proto === Date.prototype) {
    Object.freeze(node);
  }
}

/**
 * Deep equality of two decoded values, as the codec sees them: plain objects compare by
 * own enumerable keys in any order (a key holding `undefined` differs from a missing key),
 * arrays element by element, `Date`s by time, primitives with `===` (so `0` equals `-0`).
 * Any other objects are equal only if they are the same object.
 *
 * The values must be acyclic, as decoded values always are.
 *
 * @example Compare two enqueue inputs
 * ```ts
 * console.log(valuesEqual({ a: 1, b: [new Date(0)] }, { b: [new Date(0)], a: 1 })); // true
 * console.log(valuesEqual({ a: undefined }, {})); // false
 * ```
 *
 * @param a The first value.
 * @param b The second value.
 * @returns Whether the two values are equal.
 */
export function valuesEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  const protoA: unknown = Object.getPrototypeOf(a);
  const protoB: unknown = Object.getPrototypeOf(b);
  if (protoA === Array.prototype || protoB === Array.prototype) {
    if (protoA !== protoB) return false;
    const arrayA = a as readonly unknown[];
    const arrayB = b as readonly unknown[];
    if (arrayA.length !== arrayB.length) return false;
    for (let i = 0; i < arrayA.length; i++) if (!valuesEqual(arrayA[i], arrayB[i])) return false;
    return true;
  }
  if (protoA === Date.prototype || protoB === Date.prototype) {
    return protoA === protoB && (a as Date).getTime() === (b as Date).getTime();
  }
  if (!isPlainPrototype(protoA) || !isPlainPrototype(protoB)) return false;
  const recordA = a as Record<string, unknown>;
  const recordB = b as Record<string, unknown>;
  const keysA = Object.keys(recordA);
  if (keysA.length !== Object.keys(recordB).length) return false;
  for (const k of keysA) {
    if (!Object.hasOwn(recordB, k) || !valuesEqual(recordA[k], recordB[k])) return false;
  }
  return true;
}

function isPlainPrototype(proto: unknown): boolean {
  return proto === Object.prototype || proto === null;
}

/** Sets an own data property, even for the key "__proto__" (which `=` would treat as the prototype). */
function setOwn(object: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  } else {
    object[key] = value;
  }
}

function fail(state: EncodeState, key: PathKey | undefined, message: string): SerializationError {
  return new SerializationError(message, formatPath(state.keys, key));
}

function formatPath(keys: readonly PathKey[], last: PathKey | undefined): string {
  let path = "$";
  for (const k of keys) path += segment(k);
  if (last !== undefined) path += segment(last);
  return path;
}

function segment(key: PathKey): string {
  if (typeof key === "number") return `[${key}]`;
  return IDENTIFIER.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}
