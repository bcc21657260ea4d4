// createDashboard() as a plain Request -> Response handler, on every storage of the shared table:
// routing under basePath, the CSRF guard and read-only mode, escaping and the security headers.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "../mod.ts";
import { createDashboard, requireToken } from "../dashboard.ts";
import type { StorageAdapter } from "../mod.ts";
import { MemoryStorage } from "../src/storage/memory.ts";
import { storages } from "./support/storages.ts";
import { MISMATCH, seedParkedRun, seedStore, XSS } from "./support/operate_fixture.ts";
import { runtimeName } from "./support/runtime.ts";

const ORIGIN = "http://app.test";
const get = (path: string, headers: Record<string, string> = {}) =>
  new Request(`${ORIGIN}${path}`, { headers });
const post = (path: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
  new Request(`${ORIGIN}${path}`, { method: "POST", body: new URLSearchParams(form), headers });

for (const subject of storages) {
  describe(`createDashboard() on ${subject.name} on ${runtimeName}`, { skip: subject.skip }, () => {
    after(() => subject.cleanup());
    const withStore = (body: (storage: StorageAdapter) => Promise<void>) => async () => {
      const database = await subject.database();
      try {
        const storage = await database.open();
        await seedStore(storage);
        await body(storage);
      } finally {
        await database.close();
      }
    };

    test(
      "serves only under basePath, and answers 404 for other paths and unknown runs",
      withStore(async (storage) => {
        const dashboard = createDashboard({ storage, basePath: "/ops/reflow/" });
        assert.equal((await dashboard(get("/ops/reflow"))).status, 200);
        assert.equal((await dashboard(get("/ops/reflow/"))).status, 200);
        assert.equal((await dashboard(get("/ops/reflow/schedules"))).status, 200);
        assert.equal((await dashboard(get("/ops/reflow/runs/run-done"))).status, 200);
        assert.equal((await dashboard(get("/"))).status, 404);
        assert.equal((await dashboard(get("/ops/reflowx"))).status, 404);
        assert.equal((await dashboard(get("/ops/reflow/runs/nope"))).status, 404);
        assert.equal((await dashboard(get("/ops/reflow/elsewhere"))).status, 404);
        assert.equal((await dashboard(new Request(`${ORIGIN}/ops/reflow/`, { method: "PUT" }))).status, 405);
        const links = await (await dashboard(get("/ops/reflow/"))).text();
        assert.match(links, /href="\/ops\/reflow\/runs\/run-failed"/);
      }),
    );

    test(
      "every page has a nonce CSP that its only style and script carry, and escapes run values",
      withStore(async (storage) => {
        const dashboard = createDashboard({ storage });
        const paths = [
          "/",
          "/runs/run-xss",
          "/runs/run-waiting",
          "/schedules",
          "/?workflow=" + encodeURIComponent(XSS),
        ];
        for (const path of paths) {
          const response = await dashboard(get(path));
          const csp = response.headers.get("content-security-policy") ?? "";
          const nonce = /script-src 'nonce-([0-9a-f]{32})'/.exec(csp)?.[1];
          assert.ok(nonce, `${path}: ${csp}`);
          assert.match(csp, /default-src 'none'/);
          assert.match(csp, /frame-ancestors 'none'/);
          assert.equal(response.headers.get("x-content-type-options"), "nosniff");
          const body = await response.text();
          assert.deepEqual(body.match(/<script[^>]*>/g), [`<script nonce="${nonce}">`], path);
          assert.deepEqual(body.match(/<style[^>]*>/g), [`<style nonce="${nonce}">`], path);
          assert.ok(!body.includes("<img"), path);
          if (path !== "/schedules") {
            assert.ok(body.includes("&lt;script&gt;globalThis.__reflowXss = 1&lt;/script&gt;"), path);
          }
        }
      }),
    );

    test(
      "cancel and resume need the form's token and a same-host Origin, else 403 and nothing changes",
      withStore(async (storage) => {
        const dashboard = createDashboard({ storage, csrfSecret: "s3cret" });
        const page = await (await dashboard(get("/runs/run-waiting"))).text();
        assert.match(page, /<input type="hidden" name="csrf" value="s3cret">/);
        const refused = [
          post("/runs/run-waiting/cancel", {}),
          post("/runs/run-waiting/cancel", { csrf: "wrong" }),
          post("/runs/run-waiting/cancel", { csrf: "s3cret" }, { origin: "http://evil.test" }),
          post("/runs/run-waiting/cancel", { csrf: "s3cret" }, { origin: "null" }),
          post("/runs/run-waiting/cancel", { csrf: "s3cret" }, { "sec-fetch-site": "cross-site" }),
        ];
        for (const request of refused) assert.equal((await dashboard(request)).status, 403);
        assert.equal((await storage.getRun("run-waiting"))?.status, "waiting");

        const done = await dashboard(
          post("/runs/run-waiting/cancel", { csrf: "s3cret" }, { origin: ORIGIN }),
        );
        assert.equal(done.status, 303);
        assert.match(done.headers.get("location") ?? "", /^\/runs\/run-waiting\?notice=/);
        assert.equal((await storage.getRun("run-waiting"))?.status, "cancelled");
        const again = await dashboard(post("/runs/run-waiting/cancel", { csrf: "s3cret" }));
        assert.equal(again.status, 409);
        assert.match(await again.text(), /Cannot cancel run &quot;run-waiting&quot;: it is cancelled/);
        assert.equal((await dashboard(post("/runs/nope/resume", { csrf: "s3cret" }))).status, 404);
        assert.equal((await dashboard(post("/runs/run-failed/resume", { csrf: "s3cret" }))).status, 303);
        assert.equal((await storage.getRun("run-failed"))?.status, "pending");
      }),
    );

    test(
      "the run page lists the events sent and not yet received, and says so when there are none",
      withStore(async (storage) => {
        const dashboard = createDashboard({ storage });
        const waiting = await (await dashboard(get("/runs/run-waiting"))).text();
        const section = waiting.slice(waiting.indexOf("<h2>Pending events</h2>"));
        assert.match(section, /<td class="mono">escalate<\/td>/);
        assert.match(section, /<time data-t="1767225721000"/);
        assert.ok(section.includes("<code>{&quot;note&quot;:&quot;&lt;script&gt;globalThis"), section);
        const done = await (await dashboard(get("/runs/run-done"))).text();
        assert.match(done, /<h2>Pending events<\/h2>[\s\S]*None: an event a wait received is that wait unit/);
      }),
    );

    test(
      "a parked run has its colour and filter, shows its VERSION_MISMATCH and version, and can be resumed",
      withStore(async (storage) => {
        await seedParkedRun(storage);
        const dashboard = createDashboard({ storage, csrfSecret: "s3cret" });
        const list = await (await dashboard(get("/"))).text();
        assert.match(list, /<style[^>]*>[\s\S]*\.s-parked\{background:var\(--parked\)\}/);
        assert.match(list, /<option>parked<\/option>/);
        assert.match(list, /status=parked" class="">\s*parked<span>1<\/span>/);
        assert.match(list, /<span class="badge s-parked">parked<\/span>/);
        const filtered = await (await dashboard(get("/?status=parked"))).text();
        assert.deepEqual([...filtered.matchAll(/<a href="\/runs\/([^"]+)"/g)].map((m) => m[1]), [
          "run-parked",
        ]);

        const page = await (await dashboard(get("/runs/run-parked"))).text();
        assert.match(page, /<b>VERSION_MISMATCH<\/b>\s*VersionMismatchError:/);
        assert.ok(page.includes(MISMATCH.message.replaceAll('"', "&quot;")), "the mismatch message");
        assert.match(page, /<dt>Version<\/dt>\s*<dd><span class="mono">2<\/span><\/dd>/);
        assert.match(page, /action="\/runs\/run-parked\/resume"/);
        assert.match(page, /action="\/runs\/run-parked\/cancel"/);
        const unversioned = await (await dashboard(get("/runs/run-failed"))).text();
        assert.ok(!unversioned.includes("<dt>Version</dt>"), "no version row for a run without one");

        const resumed = await dashboard(
          post("/runs/run-parked/resume", { csrf: "s3cret" }, { origin: ORIGIN }),
        );
        assert.equal(resumed.status, 303);
        const run = await storage.getRun("run-parked");
        assert.deepEqual([run?.status, run?.error], ["pending", null]);
      }),
    );

    test(
      "readOnly shows no action and refuses every POST",
      withStore(async (storage) => {
        const dashboard = createDashboard({ storage, readOnly: true });
        for (const id of ["run-failed", "run-waiting"]) {
          const page = await (await dashboard(get(`/runs/${id}`))).text();
          assert.ok(!page.includes('<form method="post"'), id);
          assert.ok(!page.includes('name="csrf"'), id);
        }
        assert.equal((await dashboard(post("/runs/run-failed/resume", { csrf: "" }))).status, 403);
        assert.equal((await storage.getRun("run-failed"))?.status, "failed");
      }),
    );

    test(
      "lists with filters, counts per status and a next-page link; a bad filter is a 400",
      withStore(async (storage) => {
        const dashboard = createDashboard({ storage });
        const listed = async (query: string) =>
          [...(await (await dashboard(get(`/${query}`))).text()).matchAll(
            /<td class="mono"><a href="\/runs\/([^"]+)"/g,
          )]
            .map((m) => m[1]);
        assert.deepEqual(await listed(""), [
          "run-xss",
          "run-pending",
          "run-waiting",
          "run-failed",
          "run-done",
        ]);
        assert.deepEqual(await listed("?status=failed"), ["run-failed"]);
        assert.deepEqual(await listed("?workflow=orders&status=completed"), ["run-done"]);
        const first = await (await dashboard(get("/"))).text();
        assert.match(first, /status=completed" class="">\s*completed<span>2<\/span>/);
        assert.ok(!first.includes("Older runs"), "one page");
        for (const bad of ["?status=bogus", "?before=yesterday"]) {
          const response = await dashboard(get(`/${bad}`));
          assert.equal(response.status, 400, bad);
        }
        const live = await dashboard(get("/", { "x-reflow-live": "1" }));
        const fragment = await live.text();
        assert.ok(
          fragment.includes('data-live="on"') && !fragment.includes("<style"),
          "a live refresh gets the body only",
        );
      }),
    );
  });
}

test("createDashboard() rejects a missing storage, a relative basePath or an unknown option with a ConfigError", () => {
  assert.throws(() => createDashboard({} as never), ConfigError);
  assert.throws(
    () => createDashboard({ storage: new MemoryStorage(), readonly: true } as never),
    (error) => error instanceof ConfigError && error.field === "readonly",
  );
  assert.throws(
    () => createDashboard({ storage: new MemoryStorage(), basePath: "reflow" }),
    ConfigError,
  );
});

test("requireToken() answers 401 without the token and lets it in by query (once), cookie or bearer", async () => {
  const handler = requireToken(() => Promise.resolve(new Response("in")), "tok");
  assert.equal((await handler(get("/"))).status, 401);
  assert.equal((await handler(get("/", { cookie: "reflow_token=nope" }))).status, 401);
  assert.equal((await handler(get("/", { authorization: "Bearer nope" }))).status, 401);
  const redirect = await handler(get("/runs/x?token=tok&a=1"));
  assert.equal(redirect.status, 303);
  assert.equal(redirect.headers.get("location"), "/runs/x?a=1");
  assert.match(
    redirect.headers.get("set-cookie") ?? "",
    /^reflow_token=tok; Path=\/; HttpOnly; SameSite=Strict$/,
  );
  assert.equal(await (await handler(get("/", { cookie: "a=b; reflow_token=tok" }))).text(), "in");
  assert.equal(await (await handler(get("/", { authorization: "Bearer tok" }))).text(), "in");
});
