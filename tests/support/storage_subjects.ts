// The storages the conformance suite runs against. Add a driver here to run every case on it.
import type { StorageAdapter } from "../../src/storage/adapter.ts";
import { MemoryStorage } from "../../src/storage/memory.ts";

/** A storage opened for one conformance case. */
export interface OpenedStorage {
  /** The storage under test; the harness initialises and closes it. */
  readonly storage: StorageAdapter;
  /** Opens another connection to the same database (or returns `storage` if there is no such notion). */
  openPeer(): Promise<StorageAdapter>;
  /** Runs after the storage and its peers are closed, e.g. to delete a temporary file. */
  dispose?(): Promise<void>;
}

/** One storage implementation, as the suite sees it. */
export interface StorageSubject {
  /** Shown in test names: `${name} on ${runtime}: ${case}`. */
  readonly name: string;
  /** Why it cannot run in this runtime, or undefined when it can. */
  readonly skip?: string;
  /** Opens a fresh, empty storage. */
  open(): Promise<OpenedStorage>;
}

/** Every subject, in the order their tests are listed. */
export const storageSubjects: readonly StorageSubject[] = [
  {
    name: "MemoryStorage",
    open(): Promise<OpenedStorage> {
      const storage = new MemoryStorage();
      return Promise.resolve({ storage, openPeer: () => Promise.resolve(storage) });
    },
  },
];
