// The raw claim loop the PostgreSQL benchmark compares the engine with: a jobs table of its own and
// `pg` directly, no engine code. It is the floor a hand-written queue on the same server reaches:
// claim up to 25 due jobs with `FOR UPDATE SKIP LOCKED` in one statement, run each job's steps (the
// same trivial `n + 1` as the engine's benchmark workflows), and record every step's result, either
// with one commit per job and step ("per-job") or with the results of the whole batch's step in one
// commit ("per-batch"). One connection per worker process, jobs of a batch handled one after another.
import type pg from "pg";

/** How a raw worker commits the step results of a claimed batch. */
export type RawMode = "per-job" | "per-batch";

/** The claim batch, the engine's concurrency in the benchmark. */
export const RAW_BATCH = 25;

const TABLE = "bench_jobs";

/** Creates the jobs table in the connection's schema and queues `runs` jobs of `steps` steps. */
export async function fillRawQueue(client: pg.Client, runs: number, steps: number): Promise<void> {
  await client.query(
    `CREATE TABLE ${TABLE} (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      status text NOT NULL DEFAULT 'queued',
      due_at timestamptz NOT NULL DEFAULT now(),
      lease_until timestamptz,
      steps integer NOT NULL,
      step integer NOT NULL DEFAULT 0,
      input jsonb NOT NULL,
      output jsonb
    )`,
  );
  // Only claimable jobs, in claim order, as the engine's claim index.
  await client.query(`CREATE INDEX ${TABLE}_claim ON ${TABLE} (due_at, id) WHERE status = 'queued'`);
  await client.query(
    `INSERT INTO ${TABLE} (steps, input) SELECT $1, jsonb_build_object('n', i) FROM generate_series(0, $2 - 1) i`,
    [steps, runs],
  );
  await client.query(`ANALYZE ${TABLE}`);
}

interface Job {
  readonly id: string;
  readonly steps: number;
  n: number;
}

const CLAIM = `UPDATE ${TABLE} SET status = 'running', lease_until = now() + interval '30 seconds'
  WHERE id IN (
    SELECT id FROM ${TABLE} WHERE status = 'queued' AND due_at <= now()
    ORDER BY due_at, id LIMIT ${RAW_BATCH} FOR UPDATE SKIP LOCKED
  )
  RETURNING id, steps, (input ->> 'n')::integer AS n`;

// The lease check (`status = 'running'`) is the raw loop's fencing; a last step also completes the job.
const STEP_ONE = `UPDATE ${TABLE} SET step = $2, output = $3::jsonb,
  status = CASE WHEN $2 = steps THEN 'done' ELSE status END
  WHERE id = $1 AND status = 'running'`;
const STEP_BATCH = `UPDATE ${TABLE} j SET step = $1, output = v.output,
  status = CASE WHEN $1 = j.steps THEN 'done' ELSE j.status END
  FROM unnest($2::bigint[], $3::jsonb[]) AS v(id, output)
  WHERE j.id = v.id AND j.status = 'running'`;

/** When a raw worker's drain began and ended, on the `now()` clock it was given. */
export interface RawDrain {
  readonly firstClaimAt: number;
  readonly lastCompletionAt: number;
  readonly completed: number;
}

/**
 * Claims and runs jobs until a claim comes back empty (every job was queued before the start, so
 * then the others hold the rest). Calls `onCompleted` with this worker's count after each job ends.
 */
export async function drainRawQueue(
  client: pg.Client,
  mode: RawMode,
  now: () => number,
  onCompleted: (completed: number) => void,
): Promise<RawDrain> {
  const firstClaimAt = now();
  let lastCompletionAt = firstClaimAt;
  let completed = 0;
  const done = (count: number) => {
    lastCompletionAt = now();
    completed += count;
    onCompleted(completed);
  };
  for (;;) {
    const { rows } = await client.query<{ id: string; steps: number; n: number }>(CLAIM);
    if (rows.length === 0) return { firstClaimAt, lastCompletionAt, completed };
    const jobs: Job[] = rows.map((r) => ({ id: r.id, steps: r.steps, n: r.n }));
    const steps = Math.max(...jobs.map((j) => j.steps));
    if (mode === "per-job") {
      for (const job of jobs) {
        for (let step = 1; step <= job.steps; step++) {
          job.n += 1;
          await expectUpdated(client.query(STEP_ONE, [job.id, step, JSON.stringify({ n: job.n })]), 1);
        }
        done(1);
      }
      continue;
    }
    for (let step = 1; step <= steps; step++) {
      for (const job of jobs) job.n += 1;
      const outputs = jobs.map((j) => JSON.stringify({ n: j.n }));
      await expectUpdated(client.query(STEP_BATCH, [step, jobs.map((j) => j.id), outputs]), jobs.length);
    }
    done(jobs.length);
  }
}

async function expectUpdated(result: Promise<pg.QueryResult>, rows: number): Promise<void> {
  const { rowCount } = await result;
  if (rowCount !== rows) throw new Error(`raw queue: a step write changed ${rowCount} row(s), not ${rows}`);
}

/** What is wrong with the queue after a drain of `runs` jobs of `steps` steps; empty when nothing is. */
export async function checkRawQueue(client: pg.Client, runs: number, steps: number): Promise<string[]> {
  const { rows } = await client.query<{ finished: string; total: string }>(
    `SELECT count(*) FILTER (WHERE status = 'done' AND step = steps AND (output ->> 'n')::integer = (input ->> 'n')::integer + $1) AS finished,
      count(*) AS total FROM ${TABLE}`,
    [steps],
  );
  const { finished, total } = rows[0]!;
  return Number(finished) === runs && Number(total) === runs
    ? []
    : [`raw queue: ${finished} of ${total} jobs finished correctly, expected ${runs}`];
}
