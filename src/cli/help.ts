/**
 * The `reflow` help text.
 *
 * @module
 */

/** The usage of every command, and what working without the workflows' code means. */
export const HELP: string = `reflow: see and operate Reflow runs, straight from the store

Usage: reflow <command> [arguments] --db <file> [--json]

Commands:
  runs [--status s] [--workflow w] [--limit n] [--before cursor]
                         Runs, newest first, one page (default 100, at most 1000); prints the
                         cursor of the next page. --status takes one status or a comma list.
  run <id>               A run and its timeline: each unit's status, attempts, time, error, output;
                         then the events sent to it that no wait has received yet.
  cancel <id>            Cancels an unfinished run.
  resume <id>            Re-queues a failed, cancelled or parked run; its completed steps are kept.
  purge --older-than 30d [--status completed,failed,cancelled]
                         Deletes finished runs (with their steps and events) older than that.
  schedules              The stored schedules and their next slots.
  dashboard [--port 8787] [--host 127.0.0.1]
                         Serves the web dashboard; every request needs the token it prints.

Store:
  --db <file>            A SQLite file that Reflow engines use (it must exist).
  --postgres <url>       A PostgreSQL database that Reflow engines use (needs the pg package);
                         another schema than public: add ?options=-c search_path=<schema>

Output: tables for people, --json for scripts. Exit status: 0 done, 1 run not found or action
refused (or the store failed), 2 usage error; nothing is changed when the exit status is not 0.

Working without the workflows' code: the CLI needs only the store. "resume" puts the run back in
the queue; it runs when an engine that has its workflow picks it up (at once if one is running).
"cancel" takes effect in the engine holding the run at its next heartbeat. Events cannot be sent
from here: a payload is validated by the workflow's schema, so use engine.sendEvent() in the app.
`;
