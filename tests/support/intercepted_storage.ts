// A StorageAdapter wrapper that lets a test run code around any call, to force an interleaving
// deterministically: send an event just before, or just after, the call that commits a wait's
// timeout. It works the same on MemoryStorage and on SqlStorage, whose calls it only forwards.
import type { StorageAdapter } from "../../src/storage/adapter.ts";

/** Runs around one storage call: `forward()` makes the call; the result is what the caller gets. */
export type Interceptor = (
  method: string,
  args: readonly unknown[],
  forward: () => Promise<unknown>,
) => Promise<unknown>;

/** `storage`, with every method call routed through `intercept`. */
export function interceptedStorage(storage: StorageAdapter, intercept: Interceptor): StorageAdapter {
  return new Proxy(storage, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function" || typeof property !== "string") return value;
      return (...args: unknown[]) =>
        intercept(
          property,
          args,
          async () => await (value as (...a: unknown[]) => unknown).apply(target, args),
        );
    },
  });
}
