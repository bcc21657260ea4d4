import type { StorageAdapter } from "./adapter.ts";

/** What a conformance case may ask of the harness besides its fresh storage. */
export interface ConformanceContext {
  /**
   * Opens a second, independent connection to the same database, initialised, for race cases.
   * Storages with no such notion (MemoryStorage) return the same instance. The harness closes it.
   */
  openPeer(): Promise<StorageAdapter>;
}

/** One rule of the storage contract, checked against a fresh, initialised, empty storage. Throws on failure. */
export interface ConformanceCase {
  /** The rule, phrased as the behaviour it pins: "`claimRuns()` skips a run whose lease is live". */
  readonly name: string;
  /** Checks the rule; rejects with an `Error` naming what differed. */
  run(storage: StorageAdapter, context: ConformanceContext): Promise<void>;
}
