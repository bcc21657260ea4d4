// Type-level assertions for tests: `deno check` and `tsc` (npm run check) fail when one stops holding.

/** True when A and B are the same type (not merely assignable either way). */
export type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;
/** True when A and B accept the same values (a union may keep structurally equal members apart). */
export type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** Compiles only when `T` is `true`; does nothing at run time. */
export function expectType<_T extends true>(): void {}
