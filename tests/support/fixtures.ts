/** Shared pieces for tests: schemas, a crashable storage, waiting. */
import type { StandardSchemaV1, StorageAdapter } from "../../mod.ts";

/** A pass-through Standard Schema typed as `T`, optionally checking values with `check`. */
export function schema<T>(check?: (value: unknown) => string | undefined): StandardSchemaV1<T> {
  return {
    "~standard": {
      version: 1,
      vendor: "reflow-tests",
      validate(value) {
        const problem = check?.(value);
        return problem === undefined
          ? { value: value as T }
          : { issues: [{ message: problem, path: ["value"] }] };
      },
    },
  };
}

/** Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Wraps a storage so that a simulated crash (or network partition) can be switched on: from then
 * on every call from this wrapper hangs forever, as if its process had frozen, and writes nothing.
 * `methods` limits the freeze to some methods (e.g. only heartbeats).
 */
export function crashable(
  storage: StorageAdapter,
): { storage: StorageAdapter; crash(methods?: string[]): void } {
  let frozen: Set<string> | "all" | undefined;
  const proxy = new Proxy(storage, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        const name = String(property);
        if (frozen === "all" || frozen?.has(name)) return new Promise(() => {});
        return value.apply(target, args);
      };
    },
  });
  return {
    storage: proxy,
    crash(methods?: string[]) {
      frozen = methods === undefined ? "all" : new Set(methods);
    },
  };
}

/** A promise and the functions that settle it, for handlers that must wait for the test. */
export function gate<T = void>(): { promise: Promise<T>; open(value: T): void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

/** Runs `fn`, asserting that it throws an instance of `type`, and returns what it threw. */
export function thrownBy<E>(fn: () => unknown, type: abstract new (...args: never[]) => E): E {
  try {
    fn();
  } catch (error) {
    if (error instanceof type) return error;
    throw new Error(`Expected ${type.name}, got ${String(error)}`, { cause: error });
  }
  throw new Error(`Expected ${type.name}, but nothing was thrown`);
}
