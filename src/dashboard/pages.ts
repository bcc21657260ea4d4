/**
 * The dashboard's pages, rendered on the server from what the store holds. Every value from a run
 * goes through {@linkcode html}, which escapes it.
 *
 * @module
 */

import type { RunCounts } from "../storage/adapter.ts";
import type { RunInfo } from "../engine/run_info.ts";
import type { ScheduleInfo } from "../engine/scheduler.ts";
import { FINISHED_RUN_STATUSES, RUN_STATUSES } from "../storage/statuses.ts";
import {
  formatCount,
  formatDuration,
  formatError,
  formatRelative,
  formatTime,
  formatValue,
} from "../operate/format.ts";
import { COUNT_CAP, formatCursor, type OperatedRun, type RunListing } from "../operate/store_actions.ts";
import { Html, html } from "./html.ts";
import { SCRIPT, STYLE } from "./assets.ts";

/** What every page needs: where the dashboard is mounted, the clock, and whether actions are shown. */
export interface PageContext {
  /** The mount path, without a trailing slash ("" at the root). */
  readonly base: string;
  /** The current time. */
  readonly now: number;
  /** The CSP nonce of this response. */
  readonly nonce: string;
  /** The CSRF token forms carry, or null when the dashboard is read-only. */
  readonly csrf: string | null;
  /** A live refresh from the page's script: only the body is sent. */
  readonly live: boolean;
}

/** The filters of the runs page, as read from its URL. */
export interface RunFilters {
  readonly status?: string;
  readonly workflow?: string;
  readonly before?: string;
}

/** The whole page around `body`. */
export function layout(c: PageContext, title: string, tab: "runs" | "schedules", body: Html): Html {
  if (c.live) return body;
  const nav = (name: typeof tab, href: string, label: string) =>
    html`<a href="${c.base}${href}" class="${tab === name ? "on" : ""}">${label}</a>`;
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width,initial-scale=1">
        <link rel="icon" href="data:,">
        <title>${title} · Reflow</title>
        <style nonce="${c.nonce}">${raw(STYLE)}</style>
      </head>
      <body>
        <header><b>Reflow</b><nav>${nav("runs", "/", "Runs")}${nav(
          "schedules",
          "/schedules",
          "Schedules",
        )}</nav></header>
        <main>${body}</main>
        <script nonce="${c.nonce}">${raw(SCRIPT)}</script>
      </body>
    </html>
  `;
}

/** The runs page: counts per status, filters, one page of runs and the link to the next. */
export function runsPage(c: PageContext, filters: RunFilters, counts: RunCounts, page: RunListing): Html {
  const link = (change: RunFilters) => {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries({ ...filters, before: undefined, ...change })) {
      if (value !== undefined && value !== "") params.set(key, value);
    }
    const query = params.toString();
    return `${c.base}/${query === "" ? "" : `?${query}`}`;
  };
  const tab = (status: string | undefined, label: string, count?: number) =>
    html`<a href="${link({ status })}" class="${filters.status === status ? "on" : ""}">${label}${
      count === undefined ? "" : html`<span>${formatCount(count, COUNT_CAP)}</span>`
    }</a>`;
  const rows = page.runs.map((run) =>
    html`
      <tr>
        <td class="mono"><a href="${runHref(c, run.id)}">${run.id}</a></td>
        <td>${run.workflow}</td>
        <td>${badge(run.status)}</td>
        <td>${time(run.createdAt, c.now)}</td>
        <td>${time(run.updatedAt, c.now)}</td>
        <td class="err" title="${run.error === null ? "" : formatError(run.error)}">${run.error === null
          ? ""
          : formatError(run.error)}</td>
      </tr>
    `
  );
  const table = cardTable(["Run", "Workflow", "Status", "Created", "Updated", "Error"], rows, "No runs.");

  const next = page.next === null
    ? ""
    : html`<a href="${link({ before: formatCursor(page.next) })}">Older runs →</a>`;
  const first = filters.before === undefined ? html`<span></span>` : html`<a href="${link({})}">← Newest</a>`;
  const live = filters.before === undefined;
  return html`<h1>Runs</h1>
<form class="filters" method="get" action="${c.base}/">
<select name="status" aria-label="Status"><option value="">any status</option>${
    RUN_STATUSES.map((s) => html`<option${filters.status === s ? " selected" : ""}>${s}</option>`)
  }</select>
<input name="workflow" placeholder="workflow" aria-label="Workflow" value="${filters.workflow ?? ""}">
<button type="submit">Filter</button></form>
<div data-live="${live ? "on" : "off"}"><nav class="tabs">${tab(undefined, "All")}${
    RUN_STATUSES.map((s) => tab(s, s, counts[s]))
  }</nav>${table}</div>
<div class="pager">${first}${next}</div>`;
}

/** The statuses a run can be resumed from, as `requeueRun` takes them. */
const RESUMABLE: ReadonlySet<string> = new Set(["failed", "cancelled", "parked"]);

/** A run: its fields, error, actions, input and output, the timeline of its units and its pending events. */
export function runPage(c: PageContext, details: OperatedRun, notice: string | null): Html {
  const { run, steps, pendingEvents } = details;
  const finished = (FINISHED_RUN_STATUSES as readonly string[]).includes(run.status);
  const actions = c.csrf === null
    ? ""
    : html`<div class="actions">${!finished ? action(c, run, "cancel", "Cancel run", "danger") : ""}${
      RESUMABLE.has(run.status) ? action(c, run, "resume", "Resume", "primary") : ""
    }</div>`;
  const events = pendingEvents.map((event) =>
    html`
      <tr>
        <td class="mono">${event.name}</td>
        <td>${time(event.createdAt, c.now)}</td>
        <td><code>${formatValue(event.payload, { max: 160 })}</code></td>
      </tr>
    `
  );
  let previous = run.createdAt;
  const span = Math.max(1, ...steps.map((s) => s.updatedAt - run.createdAt));
  const timeline = steps.map((step) => {
    const start = previous - run.createdAt;
    const took = Math.max(0, step.updatedAt - previous);
    previous = Math.max(previous, step.updatedAt);
    const x = (100 * start) / span;
    const w = Math.max(0.5, (100 * took) / span);
    return html`
      <tr>
        <td class="mono">${step.name}</td>
        <td>${badge(step.status)}</td>
        <td>${step.attempts}</td>
        <td>+${formatDuration(step.updatedAt - run.createdAt)}</td>
        <td>${formatDuration(took)}
      <svg class="bar" width="140" height="6" viewBox="0 0 100 6" preserveAspectRatio="none"><rect x="${x
        .toFixed(2)}" y="0" width="${w.toFixed(2)}" height="6" rx="1"/></svg></td>
        <td>${step.error === null
          ? html`<code>${formatValue(step.output, { max: 160 })}</code>`
          : html`<span class="err">${formatError(step.error)}</span>`}${step.dueAt === null ? "" : html`
          <span class="muted">due ${time(step.dueAt, c.now)}</span>
        `}</td>
      </tr>
    `;
  });
  const field = (label: string, value: unknown) =>
    html`
      <dt>${label}</dt>
      <dd>${value}</dd>
    `;
  return html`<div data-live="${finished ? "off" : "on"}">
<h1>Run <span class="mono">${run.id}</span> ${badge(run.status)}${actions}</h1>
${notice === null ? "" : html`<div class="notice">${notice}</div>`}
${
    run.error === null ? "" : html`<div class="error">${
      run.error.code === null ? "" : html`
        <b>${run.error.code}</b>
      `
    }${run.error.name}: <span class="mono">${run.error.message}</span>${
      run.error.stepName === undefined ? "" : html`
        <span class="muted">in unit ${run.error.stepName}</span>
      `
    }</div>`
  }
<div class="card"><dl>${field("Workflow", run.workflow)}${
    run.version === null ? "" : field("Version", html`<span class="mono">${run.version}</span>`)
  }${field("Created", html`${formatTime(run.createdAt)} · ${time(run.createdAt, c.now)}`)}${
    field("Updated", html`${formatTime(run.updatedAt)} · ${time(run.updatedAt, c.now)}`)
  }${
    run.dueAt === null ? "" : field(run.status === "running" ? "Lease until" : "Due", time(run.dueAt, c.now))
  }${field("Claims", run.claimCount)}${
    run.idempotencyKey === null
      ? ""
      : field("Idempotency key", html`<span class="mono">${run.idempotencyKey}</span>`)
  }</dl></div>
<div class="grid2"><div><h2>Input</h2><div class="card"><pre>${
    formatValue(run.input, { indent: 2 })
  }</pre></div></div>
<div><h2>Output</h2><div class="card"><pre>${
    run.status === "completed"
      ? formatValue(run.output, { indent: 2 })
      : html`<span class="muted">none yet</span>`
  }</pre></div></div></div>
<h2>Timeline</h2>${
    cardTable(
      ["Unit", "Status", "Attempts", "At", "Took", "Output / error"],
      timeline,
      "No unit has run yet.",
    )
  }
<h2>Pending events</h2>${
    cardTable(
      ["Event", "Sent", "Payload"],
      events,
      "None: an event a wait received is that wait unit's output above.",
    )
  }</div>`;
}

/** The schedules page. */
export function schedulesPage(c: PageContext, schedules: readonly ScheduleInfo[]): Html {
  const rows = schedules.map((s) =>
    html`
      <tr>
        <td class="mono">${s.key}</td>
        <td>${s.workflow}</td>
        <td>${"cron" in s.recurrence
          ? html`<code>${s.recurrence.cron}</code>`
          : `every ${formatDuration(s.recurrence.every)}`}</td>
        <td>${time(s.nextRunAt, c.now)}</td>
        <td>${s.lastRunId === null
          ? html`<span class="muted">none</span>`
          : html`<a class="mono" href="${runHref(c, s.lastRunId)}">${s.lastRunId}</a>`}</td>
        <td><code>${formatValue(s.input, { max: 120 })}</code></td>
      </tr>
    `
  );
  return html`
    <h1>Schedules</h1>
    ${cardTable(["Key", "Workflow", "Recurrence", "Next slot", "Last run", "Input"], rows, "No schedules.")}
  `;
}

/** A page saying what went wrong. */
export function messagePage(title: string, message: string): Html {
  return html`
    <h1>${title}</h1>
    <div class="error">${message}</div>
  `;
}

function action(c: PageContext, run: RunInfo, name: string, label: string, kind: string): Html {
  return html`<form method="post" action="${
    runHref(c, run.id)
  }/${name}"><input type="hidden" name="csrf" value="${c.csrf}">
<button type="submit" class="${kind}">${label}</button></form>`;
}

/** A table in a card, with a row saying `empty` when there are no rows. */
function cardTable(header: readonly string[], rows: readonly Html[], empty: string): Html {
  return html`
    <div class="card">
      <table>
        <thead>
          <tr>${header.map((name) => html`<th>${name}</th>`)}</tr>
        </thead>
        <tbody>${rows.length === 0
          ? html`
            <tr>
              <td colspan="${header.length}" class="muted">${empty}</td>
            </tr>
          `
          : rows}</tbody>
      </table>
    </div>
  `;
}

function runHref(c: PageContext, runId: string): string {
  return `${c.base}/runs/${encodeURIComponent(runId)}`;
}

function badge(status: string): Html {
  return html`<span class="badge s-${status}">${status}</span>`;
}

function time(at: number, now: number): Html {
  return html`<time data-t="${at}" datetime="${new Date(at).toISOString()}" title="${formatTime(at)}">${
    formatRelative(at, now)
  }</time>`;
}

/** Markup written in this file (the stylesheet, the script). */
function raw(text: string): Html {
  return new Html(text);
}
