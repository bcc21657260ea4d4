/**
 * Whether a value is a promise or another thenable. A value whose `then` cannot be read (a
 * throwing getter, a revoked Proxy) is not one: it fails later, where it is stored, with its path.
 */
export function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  try {
    return typeof (value as PromiseLike<unknown> | null)?.then === "function";
  } catch {
    return false;
  }
}
