// Engine-level suites run once per storage: MemoryStorage and every SQLite driver that loads in
// this runtime. Each cell gets fresh storages that are closed after every test.
import { after, afterEach, describe, test } from "node:test";
import type { StorageAdapter } from "../../mod.ts";
import { MemoryStorage } from "../../testing.ts";
import { runtimeName } from "./runtime.ts";
import { sqliteSubjects } from "./sqlite_subjects.ts";

/** One storage cell, as a suite body sees it. */
export interface StorageCell {
  /** `${storage} on ${runtime}`, the prefix of every test name in the cell. */
  readonly name: string;
  /** Declares a test of this cell, skipped where its driver does not load. */
  it(name: string, body: () => Promise<void>): void;
  /** Opens a fresh storage, closed after the test. */
  open(): Promise<StorageAdapter>;
  /** Opens another connection to the database of the last `open()` (MemoryStorage: the same instance). */
  openPeer(): Promise<StorageAdapter>;
  /** Stops `engine` after the test, before its storages are closed; returns it. */
  stopAfter<E extends { stop(): Promise<void> }>(engine: E): E;
}

interface Subject {
  readonly name: string;
  readonly skip: string | false;
  open(): Promise<StorageAdapter>;
  openPeer(last: StorageAdapter): Promise<StorageAdapter>;
  cleanup(): Promise<void>;
}

const subjects: readonly Subject[] = [
  {
    name: "MemoryStorage",
    skip: false,
    open: () => Promise.resolve(new MemoryStorage()),
    openPeer: (storage) => Promise.resolve(storage),
    cleanup: async () => {},
  },
  ...sqliteSubjects.map((s): Subject => ({
    name: s.name,
    skip: s.skipReason,
    open: () => s.open(),
    openPeer: () => s.openPeer(),
    cleanup: () => s.cleanup(),
  })),
];

/** Declares `body`'s tests once per storage cell. */
export function describeEachStorage(body: (cell: StorageCell) => void): void {
  for (const subject of subjects) {
    const name = `${subject.name} on ${runtimeName}`;
    describe(name, () => {
      after(() => subject.cleanup());
      const opened: StorageAdapter[] = [];
      const engines: { stop(): Promise<void> }[] = [];
      afterEach(async () => {
        for (const engine of engines.splice(0)) await engine.stop();
        for (const storage of new Set(opened.splice(0).reverse())) await storage.close();
      });
      const track = (storage: StorageAdapter) => {
        opened.push(storage);
        return storage;
      };
      body({
        name,
        it: (testName, testBody) => test(`${name}: ${testName}`, { skip: subject.skip }, testBody),
        open: async () => track(await subject.open()),
        openPeer: async () => {
          const last = opened.at(-1);
          if (last === undefined) throw new Error("openPeer() needs an open() first");
          return track(await subject.openPeer(last));
        },
        stopAfter: (engine) => {
          engines.push(engine);
          return engine;
        },
      });
    });
  }
}
