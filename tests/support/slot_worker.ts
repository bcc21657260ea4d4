// A child process for tests/sql_storage.test.ts: on a shared SQLite file, claims every slot of every
// schedule it is given with claimScheduleSlot(), in the same order as the other workers, so that
// several processes race for each slot.
//
//   slot_worker.ts '<json SlotWorkerConfig>'
//
// Prints "ready" once its storage is initialised, waits for a line on stdin (so that every worker
// starts at once), claims, then prints "done <json string[]>" (the slots it won, as "key@n") and exits 0.
import process from "node:process";
import { readLine } from "./process_worker.ts";
import { sqliteSubjects } from "./sqlite_subjects.ts";

/** What the parent tells a slot worker. */
export interface SlotWorkerConfig {
  /** A subject name of tests/support/sqlite_subjects.ts, e.g. "better-sqlite3". */
  readonly driver: string;
  /** The database file, with the schedules stored. */
  readonly db: string;
  /** The schedules' keys; each one's first slot is `first`. */
  readonly keys: readonly string[];
  /** How many slots of each schedule to claim. */
  readonly slots: number;
  /** The first slot. */
  readonly first: number;
  /** The time between slots. */
  readonly every: number;
  /** Makes this worker's run ids unique. */
  readonly tag: string;
  /** Which key this worker starts each round of slots with, so that workers collide all over. */
  readonly offset: number;
}

async function main(config: SlotWorkerConfig): Promise<void> {
  const subject = sqliteSubjects.find((s) => s.name === config.driver);
  if (subject === undefined || !subject.available) {
    throw new Error(`driver ${config.driver} is not available`);
  }
  const storage = (await subject.load()).open(config.db);
  const won: string[] = [];
  try {
    await storage.initialize();
    process.stdout.write("ready\n");
    await readLine();
    for (let n = 0; n < config.slots; n++) {
      const slot = config.first + n * config.every;
      for (let i = 0; i < config.keys.length; i++) {
        const key = config.keys[(i + config.offset) % config.keys.length]!;
        const run = {
          id: `${key}@${n}/${config.tag}`,
          workflowName: "wf",
          input: "{}",
          idempotencyKey: null,
        };
        const result = await storage.claimScheduleSlot(key, slot, slot + config.every, {
          ...run,
          createdAt: slot,
        });
        if (result !== null) won.push(`${key}@${n}`);
      }
    }
  } finally {
    await storage.close();
  }
  process.stdout.write(`done ${JSON.stringify(won)}\n`);
}

if (import.meta.main) await main(JSON.parse(process.argv[2] ?? "") as SlotWorkerConfig);
