/**
 * The storage conformance suite: one framework-free case per rule of the `StorageAdapter`
 * contract. Run every case against a fresh, initialised storage to check a custom adapter.
 *
 * @example Check a storage with node:test
 * ```ts ignore
 * import { test } from "node:test";
 * import { conformanceCases } from "@reflow/core/conformance";
 * import { MemoryStorage } from "@reflow/core/test";
 *
 * for (const c of conformanceCases) {
 *   test(c.name, async () => {
 *     const storage = new MemoryStorage();
 *     await storage.initialize();
 *     await c.run(storage, { openPeer: () => Promise.resolve(storage) });
 *   });
 * }
 * ```
 *
 * @module
 */

export { conformanceCases } from "./src/storage/conformance.ts";
import { conformanceCases } from "./src/storage/conformance.ts";
/** reflow-ts's name for {@linkcode conformanceCases}: the same list. */
export const storageConformanceCases: typeof conformanceCases = conformanceCases;
export type { ConformanceCase, ConformanceContext } from "./src/storage/conformance_types.ts";
