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
  /**
   * Checks the rule; rejects with an `Error` naming what differed. Without `context` (as
   * reflow-ts's `case.run(storage)` is called), a case that needs a second connection returns
   * without checking anything: give a context to run it.
   */
  run(storage: StorageAdapter, context?: ConformanceContext): Promise<void>;
}

/** A case as written in the suite: it always gets a context; the exported list adds the skip. */
export interface ContractCase {
  /** As {@linkcode ConformanceCase.name}. */
  readonly name: string;
  /** Checks the rule with a harness that can open a peer. */
  run(storage: StorageAdapter, context: ConformanceContext): Promise<void>;
}
