// A database on a disk too small for it: a 3 MB tmpfs mounted by the test (it needs root on Linux;
// elsewhere the tests are skipped, saying why). The disk is filled with runs until a write fails as
// full; once space frees, the same engine carries on without a restart, every accepted run
// completes, and a checkpoint truncates the write-ahead log so that the space is the disk's again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { createEngine, createWorkflow, type SqlStorageOptions, StorageError } from "../mod.ts";
import { schema } from "./support/fixtures.ts";
import { runtimeName } from "./support/runtime.ts";
import { type DriverModule, sqliteSubjects } from "./support/sqlite_subjects.ts";

const DISK = "3m";
const LEASE_MS = 1_000;
/** About 1 KB per run: each enqueue then writes a few WAL pages. */
const PAD = "x".repeat(1_000);

interface SmallDisk {
  readonly dir: string;
  unmount(): void;
}

/** Mounts a tmpfs of `DISK` on a new directory, or says why it cannot. */
function mountSmallDisk(): SmallDisk | string {
  if (process.platform !== "linux") return `a tmpfs needs Linux (this is ${process.platform})`;
  const dir = mkdtempSync(join(tmpdir(), "reflow-small-disk-"));
  const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${DISK}`, "tmpfs", dir], {
    encoding: "utf8",
  });
  if (mounted.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return `cannot mount a ${DISK} tmpfs (it needs root): ${
      (mounted.stderr || String(mounted.error)).trim()
    }`;
  }
  return {
    dir,
    unmount() {
      // Lazily: bun:sqlite may keep the file open after close() until its statements are collected.
      spawnSync("umount", ["--lazy", dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const probe = mountSmallDisk();
if (typeof probe !== "string") probe.unmount();
const noDisk = typeof probe === "string" ? probe : false;

/** An engine over a SQLite file on a fresh small disk, on a clock the test moves. */
function onSmallDisk(module: DriverModule, options: SqlStorageOptions) {
  const disk = mountSmallDisk();
  if (typeof disk === "string") throw new Error(disk);
  const path = join(disk.dir, "reflow.db");
  const storage = module.open(path, { idleCheckpointMs: null, ...options });
  let clock = 1_700_000_000_000;
  const workflow = createWorkflow({ name: "fill", input: schema<{ n: number; pad: string }>() })
    .step("double", ({ input }) => input.n * 2);
  const engine = createEngine({
    storage,
    workflows: [workflow],
    concurrency: 25,
    runLeaseDurationMs: LEASE_MS,
    now: () => clock,
    hooks: { onError: () => {} },
  });
  return {
    disk,
    path,
    storage,
    engine,
    /** Enqueues runs until the disk is full; returns those accepted, by their `n`. */
    async fill(from = 0): Promise<Map<string, number>> {
      const accepted = new Map<string, number>();
      for (let n = from; n < from + 100_000; n++) {
        try {
          accepted.set((await engine.enqueue("fill", { n, pad: PAD })).runId, n);
        } catch (error) {
          assert.ok(
            error instanceof StorageError && error.kind === "full",
            `expected a full disk, got ${error}`,
          );
          return accepted;
        }
      }
      throw new Error("the disk never filled");
    },
    /** Runs rounds of tick() (passing the lease of a run whose commit failed) until none is left. */
    async drain(rounds: number): Promise<void> {
      for (let round = 0; round < rounds; round++) {
        const left = await engine.listRuns({ status: ["pending", "running"], limit: 1 });
        if (left.length === 0) return;
        try {
          await engine.tick();
        } catch {
          // The claim failed (the disk is full); the next round tries again.
        }
        clock += LEASE_MS + 1;
      }
    },
    async close(): Promise<void> {
      await engine.stop();
      await storage.close();
      disk.unmount();
    },
  };
}

for (const subject of sqliteSubjects) {
  test(
    `${subject.name} on ${runtimeName}: a full ${DISK} disk recovers once space frees; no accepted run is lost`,
    { skip: subject.skipReason || noDisk },
    async () => {
      const setup = onSmallDisk(await subject.load(), {});
      const { disk, path, storage, engine } = setup;
      try {
        const ballast = join(disk.dir, "ballast");
        writeFileSync(ballast, new Uint8Array(1024 * 1024));
        const accepted = await setup.fill();
        assert.ok(accepted.size > 0);
        await setup.drain(5);
        const stuck = await engine.listRuns({ status: ["pending", "running"], limit: 1000 });
        assert.ok(stuck.length > 0, "with the disk full, runs cannot finish");

        unlinkSync(ballast);
        await setup.drain(100);
        for (const [runId, n] of accepted) {
          const details = await engine.getRunStatus(runId);
          assert.equal(details?.run.status, "completed", `run ${n}`);
          assert.equal(details?.run.output, n * 2, `output of run ${n}`);
        }
        assert.equal(await storage.checkpoint(), true);
        assert.equal(statSync(`${path}-wal`).size, 0, "the WAL was truncated");
        const more = await setup.fill(accepted.size);
        assert.ok(
          more.size > accepted.size,
          `the WAL's space is usable again (${more.size} > ${accepted.size})`,
        );
        const handle = await (await subject.load()).openHandle(path);
        const integrity = handle.prepare("PRAGMA integrity_check").all() as Record<string, unknown>[];
        handle.close();
        assert.deepEqual(integrity.map((row) => row.integrity_check), ["ok"]);
      } finally {
        await setup.close();
      }
    },
  );

  test(
    `${subject.name} on ${runtimeName}: with walAutocheckpointPages 64 the WAL stays small as a ${DISK} disk fills`,
    { skip: subject.skipReason || noDisk },
    async () => {
      const setup = onSmallDisk(await subject.load(), { walAutocheckpointPages: 64 });
      try {
        const accepted = await setup.fill();
        const wal = statSync(`${setup.path}-wal`).size;
        assert.ok(wal < 1024 * 1024, `WAL of ${wal} bytes`);
        assert.ok(statSync(setup.path).size > 2 * wal, "the runs are in the database, not in the WAL");
        assert.ok(accepted.size > 500, `${accepted.size} runs accepted`);
      } finally {
        await setup.close();
      }
    },
  );
}
