// runmesh dashboard: a small single-page app over the gateway's /v1 API. No build step, no
// dependencies. Every API string reaches the page as text (textContent / text nodes), never
// as HTML. Streams are read with fetch() because EventSource cannot send the Authorization
// header the gateway requires; reconnects resume with Last-Event-ID.
"use strict";

(() => {
  const TOKEN_KEY = "runmesh.token";
  const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const TERMINAL_EVENTS = new Set([
    "run.succeeded",
    "run.failed",
    "run.cancelled",
  ]);
  const LEVELS = ["debug", "info", "warning", "error", "success"];
  const RUN_REFRESH_MS = 500; // at most one GET /v1/runs/{id} per run per this interval
  const METRICS_REFRESH_MS = 1000; // at most one GET /v1/runs/{id}/metrics per this interval
  const LIST_POLL_MS = 30000; // runs that emit no event (queued) still show up
  const MAX_LOG_LINES = 5000;
  const MAX_CHART_POINTS = 1000;

  // -- DOM helpers ---------------------------------------------------------------------------

  /** An element with attributes and children; strings become text nodes (never HTML). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    appendAll(el, children);
    return el;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    appendAll(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.setAttribute("class", value);
      else if (key.startsWith("on") && typeof value === "function") {
        el.addEventListener(key.slice(2), value);
      } else if (value === true) el.setAttribute(key, "");
      else el.setAttribute(key, String(value));
    }
  }

  function appendAll(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
  }

  const $ = (selector, root = document) => root.querySelector(selector);

  function replace(el, ...children) {
    el.replaceChildren();
    appendAll(el, children);
  }

  // -- formatting ----------------------------------------------------------------------------

  function ago(iso) {
    if (!iso) return "";
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 10) return "just now";
    if (seconds < 60) return `${Math.floor(seconds)} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds))
      return "–";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function timeEl(iso) {
    if (!iso) return "–";
    return h(
      "time",
      { datetime: iso, title: iso },
      new Date(iso).toLocaleString(),
    );
  }

  function number(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return value.toLocaleString();
    return Math.abs(value) >= 1000 || Math.abs(value) < 0.001
      ? value.toPrecision(4)
      : String(Math.round(value * 1000) / 1000);
  }

  function bytes(size) {
    if (typeof size !== "number") return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = size;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
  }

  const pluginCode = (plugin) => (plugin || "").split("@")[0];
  const shortId = (id) => String(id).slice(0, 8);
  const runHref = (id) => `#/runs/${encodeURIComponent(id)}`;
  const pluginHref = (code) => `#/plugins/${encodeURIComponent(code)}`;

  function randomKey() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
    const buf = new Uint8Array(16);
    crypto.getRandomValues(buf);
    return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  // -- status line, token, sign-in -----------------------------------------------------------

  let statusTimer = 0;

  /** Tell the user (and screen readers: the region is aria-live) what just happened. */
  function announce(text, kind = "info") {
    const el = $("#status");
    el.textContent = text;
    el.dataset.kind = kind;
    clearTimeout(statusTimer);
    if (text) statusTimer = setTimeout(() => announce(""), 8000);
  }

  const getToken = () => localStorage.getItem(TOKEN_KEY);

  function signOut(message) {
    localStorage.removeItem(TOKEN_KEY);
    closeView();
    replace($("#view"));
    showLogin(message || "");
  }

  function showLogin(message) {
    $("#login").hidden = false;
    $("#nav").hidden = true;
    $("#sign-out").hidden = true;
    setLive(null);
    $("#login-error").textContent = message;
    const input = $("#token-input");
    input.value = "";
    input.setAttribute("aria-invalid", message ? "true" : "false");
    input.focus();
  }

  function hideLogin() {
    $("#login").hidden = true;
    $("#nav").hidden = false;
    $("#sign-out").hidden = false;
    $("#login-error").textContent = "";
  }

  function setLive(state) {
    const el = $("#live");
    el.hidden = state === null;
    el.dataset.state = state || "";
    el.textContent = state === "live" ? "live" : "reconnecting…";
  }

  // -- API -----------------------------------------------------------------------------------

  class Unauthorized extends Error {}

  class ApiError extends Error {
    constructor(status, problem) {
      const detail =
        problem && typeof problem === "object" ? problem.detail : problem;
      super(detail ? String(detail) : `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }

  async function refused(response) {
    let detail = "";
    try {
      detail = (await response.json()).detail || "";
    } catch {
      // not problem+json: keep the generic message
    }
    signOut(
      `The gateway refused the token: ${detail || "401 Unauthorized"}. Sign in again.`,
    );
    return new Unauthorized(detail);
  }

  function authHeaders(extra) {
    return { Authorization: `Bearer ${getToken() || ""}`, ...extra };
  }

  /** A JSON call to the gateway; a 401 signs out, other errors throw ApiError. */
  async function api(
    path,
    { method = "GET", body, headers = {}, signal } = {},
  ) {
    const init = {
      method,
      headers: authHeaders({ Accept: "application/json", ...headers }),
    };
    if (signal) init.signal = signal;
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const response = await fetch(path, init);
    if (response.status === 401) throw await refused(response);
    const type = response.headers.get("content-type") || "";
    const data = type.includes("json")
      ? await response.json()
      : await response.text();
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  /**
   * Follow an SSE stream with fetch(): parse `id:`/`event:`/`data:` lines, call onEvent for
   * each message, reconnect with Last-Event-ID after the server's `retry:` delay. `done()`
   * says whether a stream that the server ended is finished for good (a run's terminal
   * event); otherwise, and after network errors, it reconnects until `signal` aborts.
   */
  async function followEvents(
    path,
    { signal, onEvent, onOpen, onClose, done = () => false },
  ) {
    let lastId = null;
    let retryMs = 2000;
    while (!signal.aborted) {
      try {
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const response = await fetch(path, {
          headers,
          signal,
          cache: "no-store",
        });
        if (response.status === 401) throw await refused(response);
        if (!response.ok) {
          let problem = null;
          try {
            problem = await response.json();
          } catch {
            // keep null
          }
          throw new ApiError(response.status, problem);
        }
        onOpen?.();
        const reader = response.body
          .pipeThrough(new TextDecoderStream())
          .getReader();
        let buffer = "";
        let data = [];
        let id = null;
        let event = "message";
        for (;;) {
          const { value, done: finished } = await reader.read();
          if (finished) break;
          buffer += value;
          const lines = buffer.split("\n");
          buffer = lines.pop();
          for (const raw of lines) {
            const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
            if (line === "") {
              if (id !== null) lastId = id;
              if (data.length) {
                let parsed = null;
                try {
                  parsed = JSON.parse(data.join("\n"));
                } catch {
                  parsed = null;
                }
                if (parsed !== null) {
                  try {
                    onEvent({ id, event, data: parsed });
                  } catch (error) {
                    console.error("could not show an event", error);
                  }
                }
              }
              data = [];
              id = null;
              event = "message";
              continue;
            }
            if (line.startsWith(":")) continue; // heartbeat comment
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const text =
              colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "data") data.push(text);
            else if (field === "id") id = text;
            else if (field === "event") event = text;
            else if (field === "retry" && /^\d+$/.test(text))
              retryMs = Number(text);
          }
        }
        onClose?.();
        if (done()) return;
      } catch (error) {
        if (signal.aborted || error instanceof Unauthorized) return;
        onClose?.(error);
        if (
          error instanceof ApiError &&
          error.status !== 503 &&
          error.status < 500
        ) {
          announce(`Live updates stopped: ${error.message}`, "error");
          return;
        }
      }
      await sleep(retryMs, signal);
    }
  }

  // -- views ---------------------------------------------------------------------------------

  let current = null; // {controller, timers}

  function closeView() {
    if (!current) return;
    current.controller.abort();
    for (const timer of current.timers) clearTimeout(timer);
    current = null;
  }

  function openView() {
    closeView();
    current = { controller: new AbortController(), timers: [] };
    return current;
  }

  function every(view, ms, fn) {
    view.timers.push(setInterval(fn, ms));
  }

  /**
   * A per-key throttle: `schedule(key)` runs `fn(key)` soon, at most once per `ms` per key,
   * and always once more after the last call (so the latest state is never missed).
   */
  function throttle(view, ms, fn) {
    const pending = new Set();
    const last = new Map();
    return (key) => {
      if (pending.has(key)) return;
      pending.add(key);
      const wait = Math.max(0, ms - (Date.now() - (last.get(key) || 0)));
      setTimeout(async () => {
        pending.delete(key);
        last.set(key, Date.now());
        if (view.controller.signal.aborted) return;
        try {
          await fn(key);
        } catch (error) {
          if (!(error instanceof Unauthorized) && error.name !== "AbortError") {
            console.warn("refresh failed", error);
          }
        }
      }, wait);
    };
  }

  function failView(view, error, what) {
    if (error instanceof Unauthorized || view.controller.signal.aborted) return;
    const message =
      error instanceof ApiError && error.status === 404
        ? `${what} not found (or it belongs to another tenant).`
        : `Could not load ${what}: ${error.message}`;
    replace($("#view"), h("p", { class: "error", role: "alert" }, message));
  }

  function stateBadge(state, id) {
    return h("span", { class: "badge", "data-state": state, id }, state);
  }

  function progressBar(label) {
    const fill = h("span", { class: "fill" });
    return h(
      "span",
      {
        class: "bar",
        role: "progressbar",
        "aria-label": label,
        "aria-valuemin": 0,
        "aria-valuemax": 100,
        "aria-valuenow": 0,
      },
      fill,
    );
  }

  function setBar(bar, percent, state) {
    const value = Math.max(0, Math.min(100, Number(percent) || 0));
    bar.setAttribute("aria-valuenow", value.toFixed(1));
    bar.setAttribute("aria-valuetext", `${value.toFixed(0)}%`);
    bar.dataset.state = state || "";
    bar.firstChild.style.width = `${value}%`; // CSSOM, allowed by the style-src policy
  }

  function jsonBlock(value, label) {
    return h(
      "pre",
      { class: "json", tabindex: 0, "aria-label": label },
      JSON.stringify(value, null, 2),
    );
  }

  // -- runs list -----------------------------------------------------------------------------

  function renderRuns(view, query) {
    const signal = view.controller.signal;
    const filters = {
      state: query.get("state") || "",
      category: query.get("category") || "",
      plugin: query.get("plugin") || "",
    };
    const rows = new Map(); // run id -> {run, tr, cells}
    let nextCursor = null;
    let loadedOnce = false;

    const stateSelect = h(
      "select",
      { id: "filter-state", name: "state" },
      h("option", { value: "" }, "any state"),
      STATES.map((state) => h("option", { value: state }, state)),
    );
    stateSelect.value = filters.state;
    const categoryInput = h("input", {
      id: "filter-category",
      name: "category",
      type: "search",
      placeholder: "e.g. upload",
      value: filters.category,
    });
    const pluginInput = h("input", {
      id: "filter-plugin",
      name: "plugin",
      type: "search",
      placeholder: "plugin code",
      value: filters.plugin,
    });
    const form = h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter runs" },
      h("label", { for: "filter-state" }, "State"),
      stateSelect,
      h("label", { for: "filter-category" }, "Category"),
      categoryInput,
      h("label", { for: "filter-plugin" }, "Plugin"),
      pluginInput,
      h("button", { type: "submit" }, "Apply"),
    );
    const tbody = h("tbody");
    const empty = h("p", { class: "empty", hidden: true }, "No runs match.");
    const more = h(
      "button",
      { type: "button", class: "more", hidden: true },
      "Load more",
    );
    const count = h("span", { class: "count", "aria-live": "polite" });
    replace(
      $("#view"),
      h("div", { class: "title-row" }, h("h1", {}, "Runs"), count),
      form,
      h(
        "table",
        { class: "runs" },
        h("caption", { class: "sr-only" }, "Runs, newest first"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            [
              "State",
              "Run",
              "Category",
              "Plugin",
              "Action",
              "Progress",
              "Created",
            ].map((t) => h("th", { scope: "col" }, t)),
          ),
        ),
        tbody,
      ),
      empty,
      more,
    );

    function listQuery(cursor) {
      const params = new URLSearchParams();
      if (filters.state) params.append("state", filters.state);
      if (filters.category) params.set("category", filters.category);
      if (filters.plugin) params.set("plugin", filters.plugin);
      params.set("limit", "50");
      if (cursor) params.set("cursor", cursor);
      return `/v1/runs?${params}`;
    }

    function matches(run) {
      if (filters.state && run.state !== filters.state) return false;
      if (filters.category && run.category !== filters.category) return false;
      if (
        filters.plugin &&
        pluginCode(run.plugin) !== pluginCode(filters.plugin)
      )
        return false;
      return true;
    }

    function newRow(run) {
      const bar = progressBar(`Progress of run ${shortId(run.id)}`);
      const cells = {
        state: h("td", {}),
        plugin: h("td", {}),
        action: h("td", {}),
        percent: h("span", { class: "pct" }),
        bar,
        age: h("td", { class: "age" }),
      };
      const tr = h(
        "tr",
        { "data-run-id": run.id },
        cells.state,
        h(
          "td",
          {},
          h("a", { href: runHref(run.id), class: "mono" }, shortId(run.id)),
        ),
        h("td", {}, run.category),
        cells.plugin,
        cells.action,
        h("td", {}, h("div", { class: "progress-cell" }, bar, cells.percent)),
        cells.age,
      );
      return { run, tr, cells };
    }

    function fill(row) {
      const { run, cells } = row;
      replace(cells.state, stateBadge(run.state));
      replace(
        cells.plugin,
        run.plugin
          ? h(
              "a",
              { href: pluginHref(pluginCode(run.plugin)) },
              pluginCode(run.plugin),
            )
          : "–",
        run.plugin_version
          ? h("span", { class: "muted" }, `@${run.plugin_version}`)
          : null,
      );
      cells.action.textContent = run.action || "–";
      setBar(cells.bar, run.percent, run.state);
      cells.percent.textContent = `${Math.round(run.percent || 0)}%`;
      showAge(row);
    }

    function showAge({ run, cells }) {
      replace(
        cells.age,
        h(
          "time",
          { datetime: run.created_at, title: run.created_at },
          ago(run.created_at),
        ),
      );
    }

    function place(row) {
      // newest first, as the API orders them: (created_at, id) descending
      const key = (run) => `${run.created_at}|${run.id}`;
      const mine = key(row.run);
      for (const other of tbody.children) {
        const otherRow = rows.get(other.dataset.runId);
        if (otherRow && otherRow !== row && key(otherRow.run) < mine) {
          tbody.insertBefore(row.tr, other);
          return;
        }
      }
      tbody.append(row.tr);
    }

    function upsert(run, { fromPage = false } = {}) {
      const row = rows.get(run.id);
      if (!matches(run)) {
        if (row) {
          row.tr.remove();
          rows.delete(run.id);
        }
        return updateCount();
      }
      if (row) {
        row.run = run;
        fill(row);
        return updateCount();
      }
      // A run older than the last loaded one arrives with "Load more", not here.
      const lastRow = rows.get(tbody.lastElementChild?.dataset.runId);
      if (
        !fromPage &&
        nextCursor &&
        lastRow &&
        run.created_at < lastRow.run.created_at
      )
        return;
      const created = newRow(run);
      rows.set(run.id, created);
      fill(created);
      place(created);
      updateCount();
    }

    function updateCount() {
      count.textContent = rows.size ? `${rows.size} shown` : "";
      empty.hidden = rows.size > 0 || !loadedOnce;
      more.hidden = !nextCursor;
    }

    let generation = 0; // bumped by each reload: answers to older queries are dropped

    async function loadPage(cursor) {
      const asked = generation;
      const page = await api(listQuery(cursor), { signal });
      if (asked !== generation) return;
      if (!cursor && !loadedOnce) nextCursor = page.next_cursor;
      if (cursor) nextCursor = page.next_cursor;
      loadedOnce = true;
      for (const run of page.items) upsert(run, { fromPage: true });
      updateCount();
    }

    async function reload() {
      generation += 1;
      rows.clear();
      tbody.replaceChildren();
      nextCursor = null;
      loadedOnce = false;
      try {
        await loadPage(null);
      } catch (error) {
        failView(view, error, "the runs");
      }
    }

    function apply() {
      filters.state = stateSelect.value;
      filters.category = categoryInput.value.trim();
      filters.plugin = pluginInput.value.trim();
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(filters))
        if (value) params.set(key, value);
      const search = params.toString();
      const hash = `#/runs${search ? `?${search}` : ""}`;
      history.replaceState(null, "", hash); // keep the filters in the URL, no re-route
      reload();
    }

    let typing = 0;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      apply();
    });
    stateSelect.addEventListener("change", apply);
    for (const input of [categoryInput, pluginInput]) {
      input.addEventListener("input", () => {
        clearTimeout(typing);
        typing = setTimeout(() => {
          if (!signal.aborted) apply();
        }, 400);
      });
    }
    more.addEventListener("click", async () => {
      more.disabled = true;
      try {
        await loadPage(nextCursor);
      } catch (error) {
        if (!(error instanceof Unauthorized))
          announce(`Could not load more runs: ${error.message}`, "error");
      } finally {
        more.disabled = false;
      }
    });

    const refreshRun = throttle(view, RUN_REFRESH_MS, async (id) => {
      try {
        upsert(await api(`/v1/runs/${encodeURIComponent(id)}`, { signal }));
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) return;
        throw error;
      }
    });

    every(view, 10000, () => {
      for (const row of rows.values()) showAge(row);
    });
    every(view, LIST_POLL_MS, () => {
      loadPage(null).catch(() => {}); // queued runs emit no event until they start
    });

    // The tenant stream: every event names its run; the run is refetched (throttled), which
    // makes new runs appear and progress bars move. On every (re)connect the first page is
    // read again, so nothing that happened while disconnected is missed.
    let firstOpen = true;
    followEvents("/v1/events", {
      signal,
      onOpen: () => {
        setLive("live");
        if (firstOpen) reload();
        else loadPage(null).catch(() => {});
        firstOpen = false;
      },
      onClose: () => setLive("reconnecting"),
      onEvent: (message) => {
        if (message.data && message.data.run_id)
          refreshRun(message.data.run_id);
      },
    });
  }

  // -- one run -------------------------------------------------------------------------------

  function renderRun(view, runId) {
    const signal = view.controller.signal;
    const path = `/v1/runs/${encodeURIComponent(runId)}`;
    let run = null;
    let actionInfo = null; // the action's manifest entry (progress category descriptions)
    let streamDone = false; // the run's stream sent its terminal event (or run.state)
    let headerKey = "";
    let buttonsKey = "";
    let outcomeKey = "";
    let paramsKey = "";

    const el = {
      state: h("span", { id: "run-state-slot" }),
      title: h("h1", { class: "mono" }, `Run ${shortId(runId)}`),
      facts: h("dl", { class: "facts" }),
      actions: h("div", { class: "buttons" }),
      overall: Object.assign(progressBar("Overall progress"), {
        id: "overall-progress",
      }),
      overallText: h("span", { class: "pct", id: "overall-percent" }),
      categories: h("div", { class: "categories" }),
      outcome: h("section", {
        id: "outcome",
        "aria-labelledby": "outcome-title",
        hidden: true,
      }),
      levels: h("fieldset", { class: "levels" }),
      logs: h("div", {
        class: "logs",
        id: "logs",
        role: "log",
        "aria-label": "Log lines",
      }),
      logNote: h("p", { class: "muted", hidden: true }),
      charts: h("div", { class: "charts", id: "charts" }),
      artifacts: h("ul", { class: "artifacts collapsed", id: "artifacts" }),
      allArtifacts: h("button", {
        type: "button",
        class: "small",
        id: "all-artifacts",
        hidden: true,
      }),
      params: h("div", {}),
    };
    const shownLevels = new Set(LEVELS);
    el.levels.append(h("legend", {}, "Levels"));
    for (const level of LEVELS) {
      const id = `level-${level}`;
      const box = h("input", {
        type: "checkbox",
        id,
        checked: true,
        value: level,
      });
      box.addEventListener("change", () => {
        if (box.checked) shownLevels.add(level);
        else shownLevels.delete(level);
        for (const line of el.logs.children)
          line.hidden = !shownLevels.has(line.dataset.level);
      });
      el.levels.append(
        h("label", { for: id, class: `lvl lvl-${level}` }, box, level),
      );
    }

    replace(
      $("#view"),
      h(
        "p",
        { class: "crumbs" },
        h("a", { href: "#/runs" }, "Runs"),
        " / ",
        h("span", { class: "mono" }, runId),
      ),
      h(
        "div",
        { class: "title-row" },
        el.title,
        el.state,
        h("span", { class: "spacer" }),
        el.actions,
      ),
      el.facts,
      h(
        "section",
        { "aria-labelledby": "progress-title" },
        h("h2", { id: "progress-title" }, "Progress"),
        h("div", { class: "overall" }, el.overall, el.overallText),
        el.categories,
      ),
      el.outcome,
      h(
        "section",
        { "aria-labelledby": "logs-title" },
        h(
          "div",
          { class: "title-row" },
          h("h2", { id: "logs-title" }, "Logs"),
          el.levels,
        ),
        el.logNote,
        el.logs,
      ),
      h(
        "section",
        { "aria-labelledby": "metrics-title" },
        h("h2", { id: "metrics-title" }, "Metrics"),
        el.charts,
      ),
      h(
        "section",
        { "aria-labelledby": "artifacts-title" },
        h("h2", { id: "artifacts-title" }, "Artifacts"),
        el.artifacts,
        el.allArtifacts,
      ),
      h(
        "section",
        { "aria-labelledby": "params-title" },
        h("h2", { id: "params-title" }, "Params"),
        el.params,
      ),
    );
    el.charts.append(h("p", { class: "muted" }, "No metrics reported."));
    el.artifacts.append(
      h("li", { class: "muted empty-item" }, "No artifacts."),
    );
    // A training run reports a checkpoint per epoch: show the latest few, the rest on demand.
    const SHOWN_ARTIFACTS = 8;
    el.allArtifacts.addEventListener("click", () => {
      el.artifacts.classList.toggle("collapsed");
      updateArtifactToggle();
    });

    function updateArtifactToggle() {
      const count = el.artifacts.querySelectorAll("li:not(.empty-item)").length;
      el.allArtifacts.hidden = count <= SHOWN_ARTIFACTS;
      el.allArtifacts.textContent = el.artifacts.classList.contains("collapsed")
        ? `Show all ${count} artifacts`
        : `Show the latest ${SHOWN_ARTIFACTS}`;
    }

    // -- header, progress, outcome --

    function fact(term, ...value) {
      return [h("dt", {}, term), h("dd", {}, ...value)];
    }

    // "2 after worker lost": a later attempt says why it started.
    function attemptText(run) {
      const attempt = String(run.attempt);
      return run.attempt > 1 && run.retry_reason
        ? `${attempt} after ${run.retry_reason}`
        : attempt;
    }

    function renderHeader() {
      // Rebuilt only when it changed: a refresh must not replace what the user is clicking.
      const key = JSON.stringify([
        run.state,
        run.plugin,
        run.plugin_version,
        run.action,
        run.attempt,
        run.retry_reason,
        run.started_at,
        run.finished_at,
      ]);
      renderButtons();
      if (key === headerKey) return;
      headerKey = key;
      replace(el.state, stateBadge(run.state, "run-state"));
      const started = run.started_at ? Date.parse(run.started_at) : null;
      const ended = run.finished_at
        ? Date.parse(run.finished_at)
        : TERMINAL.has(run.state)
          ? null
          : Date.now();
      const plugin = run.plugin
        ? [
            h(
              "a",
              { href: pluginHref(pluginCode(run.plugin)) },
              pluginCode(run.plugin),
            ),
            run.plugin_version ? `@${run.plugin_version}` : "",
          ]
        : ["–"];
      replace(
        el.facts,
        fact("Plugin", ...plugin),
        fact("Action", run.action || "–"),
        fact("Category", run.category),
        fact("Attempt", attemptText(run)),
        fact("Created", timeEl(run.created_at)),
        fact("Started", timeEl(run.started_at)),
        fact("Finished", timeEl(run.finished_at)),
        fact(
          "Duration",
          h(
            "span",
            { id: "run-duration" },
            started && ended ? duration((ended - started) / 1000) : "–",
          ),
        ),
        run.parent_run_id
          ? fact(
              // A rerun's original, or the run that requested this child run.
              "Parent run",
              h(
                "a",
                {
                  href: runHref(run.parent_run_id),
                  class: "mono",
                  id: "parent-link",
                },
                shortId(run.parent_run_id),
              ),
            )
          : null,
      );
    }

    function renderButtons() {
      const cancellable = run.state === "queued" || run.state === "running";
      if (buttonsKey === String(cancellable)) return;
      buttonsKey = String(cancellable);
      const buttons = [];
      if (cancellable) {
        buttons.push(
          h(
            "button",
            {
              type: "button",
              class: "danger",
              id: "cancel-run",
              onclick: cancel,
            },
            "Cancel run",
          ),
        );
      }
      buttons.push(
        h(
          "button",
          { type: "button", id: "rerun-run", onclick: rerun },
          "Rerun",
        ),
      );
      replace(el.actions, buttons);
    }

    async function cancel(event) {
      const button = event.currentTarget;
      button.disabled = true;
      try {
        const answer = await api(`${path}/cancel`, {
          method: "POST",
          body: { reason: "cancelled from the dashboard" },
        });
        announce(
          answer.state === "cancelled"
            ? "Run cancelled."
            : "Cancel requested; waiting for the worker to stop the run.",
        );
        run = answer;
        render();
      } catch (error) {
        if (error instanceof Unauthorized) return;
        button.disabled = false;
        announce(`Could not cancel: ${error.message}`, "error");
        refreshRun("r");
      }
    }

    async function rerun(event) {
      const button = event.currentTarget;
      button.disabled = true;
      try {
        const created = await api(`${path}/rerun`, {
          method: "POST",
          headers: { "Idempotency-Key": `dashboard-${randomKey()}` },
        });
        announce(`Rerun submitted as run ${shortId(created.id)}.`);
        location.hash = runHref(created.id);
      } catch (error) {
        if (error instanceof Unauthorized) return;
        button.disabled = false;
        announce(`Could not rerun: ${error.message}`, "error");
      }
    }

    function declaredCategories() {
      const declared = actionInfo?.progress_categories || {};
      return Object.keys(declared);
    }

    function renderProgress() {
      setBar(el.overall, run.percent, run.state);
      el.overallText.textContent = `${number(Math.round((run.percent || 0) * 10) / 10)}%`;
      const names = [
        ...new Set([
          ...declaredCategories(),
          ...Object.keys(run.progress || {}),
        ]),
      ];
      if (!names.length) {
        const text = TERMINAL.has(run.state)
          ? "No progress reported."
          : "No progress reported yet.";
        replace(el.categories, h("p", { class: "muted" }, text));
        return;
      }
      const rows = names.map((name) => {
        const p = (run.progress || {})[name] || null;
        const declared = (actionInfo?.progress_categories || {})[name] || {};
        const bar = progressBar(`Progress of ${name}`);
        setBar(bar, p ? p.percent : 0, run.state);
        const counts = p
          ? `${number(p.current)} / ${p.total === null || p.total === undefined ? "?" : number(p.total)}`
          : "–";
        return h(
          "tr",
          { "data-category": name },
          h(
            "th",
            { scope: "row" },
            name,
            declared.description
              ? h("div", { class: "muted small" }, String(declared.description))
              : null,
          ),
          h("td", {}, h("div", { class: "progress-cell" }, bar)),
          h("td", { class: "num" }, counts),
          h(
            "td",
            { class: "num" },
            p && p.percent !== null && p.percent !== undefined
              ? `${number(Math.round(p.percent * 10) / 10)}%`
              : "–",
          ),
          h("td", { class: "num" }, p ? duration(p.elapsed_s) : "–"),
          h(
            "td",
            { class: "num" },
            p ? (p.eta_s === 0 ? "done" : duration(p.eta_s)) : "–",
          ),
        );
      });
      replace(
        el.categories,
        h(
          "table",
          { class: "progress" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              [
                "Category",
                "Progress",
                "Current / total",
                "Percent",
                "Elapsed",
                "ETA",
              ].map((t) => h("th", { scope: "col" }, t)),
            ),
          ),
          h("tbody", {}, rows),
        ),
      );
    }

    function renderOutcome() {
      // Only when it changed: an open traceback stays open across refreshes.
      const key = JSON.stringify([run.result, run.error]);
      if (key === outcomeKey) return;
      outcomeKey = key;
      if (run.result !== null && run.result !== undefined) {
        el.outcome.hidden = false;
        replace(
          el.outcome,
          h("h2", { id: "outcome-title" }, "Result"),
          jsonBlock(run.result, "Result JSON"),
        );
      } else if (run.error) {
        el.outcome.hidden = false;
        replace(
          el.outcome,
          h("h2", { id: "outcome-title" }, "Error"),
          h(
            "p",
            { class: "error" },
            h("strong", {}, run.error.type),
            ": ",
            run.error.message,
          ),
          run.error.traceback
            ? h(
                "details",
                {},
                h("summary", {}, "Traceback"),
                h("pre", { class: "traceback" }, run.error.traceback),
              )
            : null,
        );
      } else {
        el.outcome.hidden = true;
      }
    }

    function renderParams() {
      const key = JSON.stringify(run.params || {});
      if (key === paramsKey) return;
      paramsKey = key;
      replace(el.params, jsonBlock(run.params || {}, "Params JSON"));
    }

    function render() {
      renderHeader();
      renderProgress();
      renderOutcome();
      renderParams();
    }

    async function loadActionInfo() {
      const code = pluginCode(run.plugin);
      if (!code || !run.action) return;
      try {
        const plugin = await api(`/v1/plugins/${encodeURIComponent(code)}`, {
          signal,
        });
        const versions = plugin.versions || [];
        const version =
          versions.find((v) => v.version === run.plugin_version) ||
          versions.find((v) => v.version === plugin.latest_version) ||
          versions[versions.length - 1];
        actionInfo = version?.actions?.[run.action] || null;
        renderProgress();
      } catch (error) {
        if (error instanceof Unauthorized) throw error;
        // a withdrawn plugin: the run still shows what it reported
      }
    }

    const refreshRun = throttle(view, RUN_REFRESH_MS, async () => {
      run = await api(path, { signal });
      render();
    });

    // -- logs --

    const logIds = new Set();

    function addLog(entry) {
      if (logIds.has(entry.id)) return;
      logIds.add(entry.id);
      const level = LEVELS.includes(entry.level) ? entry.level : "info";
      const line = h(
        "div",
        { class: "line", "data-level": level, "data-id": entry.id },
        h(
          "time",
          { datetime: entry.ts, title: entry.ts },
          new Date(entry.ts).toLocaleTimeString(),
        ),
        h("span", { class: `lvl lvl-${level}` }, level),
        entry.code ? h("span", { class: "code" }, entry.code) : null,
        entry.attempt > 1
          ? h("span", { class: "muted" }, `#${entry.attempt}`)
          : null,
        h("span", { class: "msg" }, entry.message),
      );
      line.hidden = !shownLevels.has(level);
      // keep event order (the stream and the first page may interleave)
      let before = null;
      for (
        let node = el.logs.lastElementChild;
        node;
        node = node.previousElementSibling
      ) {
        if (Number(node.dataset.id) < entry.id) break;
        before = node;
      }
      const atBottom =
        el.logs.scrollTop + el.logs.clientHeight >= el.logs.scrollHeight - 8;
      el.logs.insertBefore(line, before);
      while (el.logs.childElementCount > MAX_LOG_LINES) {
        el.logs.firstElementChild.remove();
        el.logNote.hidden = false;
        el.logNote.textContent = `Showing the latest ${MAX_LOG_LINES} lines.`;
      }
      if (atBottom) el.logs.scrollTop = el.logs.scrollHeight;
    }

    // -- metrics --

    async function loadMetrics() {
      const metrics = await api(`${path}/metrics`, { signal });
      renderCharts(metrics);
    }

    const refreshMetrics = throttle(view, METRICS_REFRESH_MS, loadMetrics);

    function renderCharts(metrics) {
      const charts = [];
      for (const [category, byName] of Object.entries(metrics.series || {})) {
        for (const [name, points] of Object.entries(byName)) {
          const attempt = points.reduce(
            (most, p) => Math.max(most, p.attempt),
            0,
          );
          const latest = points.filter((p) => p.attempt === attempt);
          const useSteps = latest.every(
            (p) => p.step !== null && p.step !== undefined,
          );
          const xy = latest.map((p, i) => ({
            x: useSteps ? p.step : i + 1,
            y: p.value,
          }));
          charts.push(
            h(
              "figure",
              { class: "chart", "data-category": category, "data-name": name },
              lineChart(
                xy,
                `${category} / ${name}`,
                useSteps ? "step" : "report",
              ),
              h(
                "figcaption",
                {},
                h("strong", {}, `${category} / ${name}`),
                ` latest ${number(xy[xy.length - 1].y)}`,
                attempt > 1 ? ` (attempt ${attempt})` : "",
              ),
            ),
          );
        }
      }
      if (metrics.truncated)
        charts.push(
          h(
            "p",
            { class: "muted" },
            "Only the first 100,000 metric events are shown.",
          ),
        );
      replace(
        el.charts,
        charts.length
          ? charts
          : h("p", { class: "muted" }, "No metrics reported."),
      );
    }

    // -- artifacts --

    async function downloadArtifact(url, fileName) {
      try {
        const response = await fetch(url, { headers: authHeaders() });
        if (response.status === 401) throw await refused(response);
        if (!response.ok) {
          let detail = `${response.status}`;
          try {
            detail = (await response.json()).detail || detail;
          } catch {
            // not problem+json
          }
          announce(`Cannot download: ${detail}`, "error");
          return;
        }
        const blob = URL.createObjectURL(await response.blob());
        const anchor = h("a", { href: blob, download: fileName });
        document.body.append(anchor);
        anchor.click();
        anchor.remove();
        setTimeout(() => URL.revokeObjectURL(blob), 60_000);
        announce(`Downloaded ${fileName}.`);
      } catch (error) {
        if (!(error instanceof Unauthorized))
          announce(`Cannot download: ${error}`, "error");
      }
    }

    const artifactIds = new Set();

    function addArtifact(message) {
      if (artifactIds.has(message.id)) return;
      artifactIds.add(message.id);
      const payload = message.data.payload || {};
      const uri = String(payload.uri || "");
      let link = null;
      try {
        const url = new URL(uri);
        if (url.protocol === "https:" || url.protocol === "http:") {
          link = h(
            "a",
            { href: url.href, download: "", rel: "noopener noreferrer" },
            "Download",
          );
        } else if (
          url.protocol === "s3:" &&
          payload.media_type !== "inode/directory"
        ) {
          // Through the gateway, which streams files of its platform bucket (a 409 otherwise).
          link = h(
            "button",
            { type: "button", class: "small download" },
            "Download",
          );
          link.addEventListener("click", () =>
            downloadArtifact(
              `${path}/artifacts/${encodeURIComponent(message.id)}`,
              uri.split("/").pop() || "artifact",
            ),
          );
        }
      } catch {
        link = null;
      }
      const field = h("input", {
        type: "text",
        readonly: true,
        value: uri,
        class: "uri mono",
        "aria-label": `URI of ${payload.name || "artifact"}`,
      });
      const copy = h("button", { type: "button", class: "small" }, "Copy URI");
      copy.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(uri);
        } catch {
          field.select(); // no clipboard API (plain http): leave it selected for Ctrl-C
          document.execCommand?.("copy");
        }
        announce("URI copied.");
      });
      $(".empty-item", el.artifacts)?.remove();
      el.artifacts.append(
        h(
          "li",
          { "data-name": payload.name || "" },
          h("strong", {}, payload.name || "(unnamed)"),
          h(
            "span",
            { class: "muted" },
            [
              bytes(payload.size),
              payload.media_type,
              message.data.attempt > 1
                ? `attempt ${message.data.attempt}`
                : null,
            ]
              .filter(Boolean)
              .join(" · "),
          ),
          field,
          copy,
          link,
          payload.checksum
            ? h(
                "span",
                { class: "muted small mono", title: "checksum" },
                String(payload.checksum),
              )
            : null,
        ),
      );
      updateArtifactToggle();
    }

    // -- stream --

    function onEvent(message) {
      const event = message.data;
      const id = Number(message.id);
      switch (message.event) {
        case "run.log": {
          const p = event.payload || {};
          addLog({
            id,
            attempt: event.attempt,
            ts: event.ts,
            level: p.level || "info",
            message: String(p.message ?? ""),
            code: p.code || null,
          });
          break;
        }
        case "run.metric":
          refreshMetrics("m");
          break;
        case "run.artifact":
          addArtifact(message);
          break;
        case "run.state": // the gateway ended the run without a terminal event
          streamDone = TERMINAL.has(event.state);
          break;
        default:
          if (TERMINAL_EVENTS.has(message.event)) streamDone = true;
      }
      if (message.event !== "run.log" && message.event !== "run.artifact")
        refreshRun("r");
      else if (!run || run.state === "queued") refreshRun("r");
    }

    every(view, 1000, () => {
      // tick the duration of a running run
      if (
        run &&
        run.started_at &&
        !run.finished_at &&
        !TERMINAL.has(run.state)
      ) {
        const node = $("#run-duration");
        if (node)
          node.textContent = duration(
            (Date.now() - Date.parse(run.started_at)) / 1000,
          );
      }
    });

    (async () => {
      try {
        run = await api(path, { signal });
      } catch (error) {
        failView(view, error, `Run ${runId}`);
        return;
      }
      render();
      loadActionInfo().catch(() => {});
      loadMetrics().catch(() => {});
      api(`${path}/logs?limit=1000`, { signal })
        .then((page) => page.items.forEach(addLog))
        .catch(() => {});
      // Replayed from the start, then live, until the run's terminal event.
      followEvents(`${path}/events`, {
        signal,
        onEvent,
        onOpen: () => setLive("live"),
        onClose: () => setLive(streamDone ? null : "reconnecting"),
        done: () => streamDone,
      }).then(() => {
        if (current === view) {
          setLive(null);
          refreshRun("r");
          refreshMetrics("m");
        }
      });
    })();
  }

  // -- SVG line chart ------------------------------------------------------------------------

  /** A small line chart of [{x, y}] as inline SVG (no library). */
  function lineChart(all, label, xLabel) {
    // At most ~MAX_CHART_POINTS vertices (a long run reports many thousands), always the last.
    const stride = Math.ceil(all.length / MAX_CHART_POINTS);
    const points = all.filter(
      (_, i) => i % stride === 0 || i === all.length - 1,
    );
    const width = 320;
    const height = 150;
    const pad = { left: 52, right: 12, top: 12, bottom: 28 };
    const xs = points.map((p) => p.x);
    const ys = points.map((p) => p.y);
    const low = (values) => values.reduce((a, b) => Math.min(a, b), Infinity);
    const high = (values) => values.reduce((a, b) => Math.max(a, b), -Infinity);
    let [x0, x1] = [low(xs), high(xs)];
    let [y0, y1] = [low(ys), high(ys)];
    if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
    if (y0 === y1) {
      const spread = Math.abs(y0) * 0.1 || 1;
      [y0, y1] = [y0 - spread, y1 + spread];
    }
    const sx = (x) =>
      pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
    const sy = (y) =>
      height -
      pad.bottom -
      ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
    const d = points
      .map(
        (p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`,
      )
      .join(" ");
    const last = points[points.length - 1];
    const bottom = height - pad.bottom;
    return svg(
      "svg",
      {
        class: "chart-svg",
        viewBox: `0 0 ${width} ${height}`,
        role: "img",
        "aria-label": `${label}: ${all.length} points, last ${number(last.y)}`,
      },
      svg("title", {}, label),
      svg("line", {
        class: "axis",
        x1: pad.left,
        y1: pad.top,
        x2: pad.left,
        y2: bottom,
      }),
      svg("line", {
        class: "axis",
        x1: pad.left,
        y1: bottom,
        x2: width - pad.right,
        y2: bottom,
      }),
      svg(
        "text",
        {
          class: "tick",
          x: pad.left - 6,
          y: pad.top + 4,
          "text-anchor": "end",
        },
        number(y1),
      ),
      svg(
        "text",
        { class: "tick", x: pad.left - 6, y: bottom, "text-anchor": "end" },
        number(y0),
      ),
      svg(
        "text",
        { class: "tick", x: pad.left, y: height - 8, "text-anchor": "start" },
        number(x0),
      ),
      svg(
        "text",
        {
          class: "tick",
          x: width - pad.right,
          y: height - 8,
          "text-anchor": "end",
        },
        number(x1),
      ),
      svg(
        "text",
        {
          class: "tick",
          x: (pad.left + width - pad.right) / 2,
          y: height - 8,
          "text-anchor": "middle",
        },
        xLabel,
      ),
      svg("path", { class: "line", d }),
      svg("circle", { class: "dot", cx: sx(last.x), cy: sy(last.y), r: 3 }),
    );
  }

  // -- plugins -------------------------------------------------------------------------------

  function renderPlugins(view, query) {
    const signal = view.controller.signal;
    let category = query.get("category") || "";
    const select = h(
      "select",
      { id: "filter-plugin-category" },
      h("option", { value: "" }, "any category"),
    );
    const tbody = h("tbody");
    const empty = h(
      "p",
      { class: "empty", hidden: true },
      "No plugins. Workers announce theirs when they start.",
    );
    replace(
      $("#view"),
      h("h1", {}, "Plugins"),
      h(
        "form",
        { class: "filters", role: "search", "aria-label": "Filter plugins" },
        h("label", { for: "filter-plugin-category" }, "Category"),
        select,
      ),
      h(
        "table",
        { class: "plugins" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            [
              "Plugin",
              "Name",
              "Category",
              "Latest",
              "Actions",
              "Description",
            ].map((t) => h("th", { scope: "col" }, t)),
          ),
        ),
        tbody,
      ),
      empty,
    );

    async function load() {
      const suffix = category
        ? `?category=${encodeURIComponent(category)}`
        : "";
      const plugins = await api(`/v1/plugins${suffix}`, { signal });
      replace(
        tbody,
        plugins.map((plugin) =>
          h(
            "tr",
            { "data-plugin": plugin.code },
            h("td", {}, h("a", { href: pluginHref(plugin.code) }, plugin.code)),
            h("td", {}, plugin.name),
            h("td", {}, plugin.category),
            h(
              "td",
              {},
              plugin.latest_version,
              plugin.builtin ? h("span", { class: "tag" }, "built-in") : null,
            ),
            h("td", {}, (plugin.actions || []).join(", ")),
            h("td", { class: "desc" }, plugin.description || ""),
          ),
        ),
      );
      empty.hidden = plugins.length > 0;
      return plugins;
    }

    select.addEventListener("change", () => {
      category = select.value;
      history.replaceState(
        null,
        "",
        category
          ? `#/plugins?category=${encodeURIComponent(category)}`
          : "#/plugins",
      );
      load().catch((error) => failView(view, error, "the plugins"));
    });

    (async () => {
      try {
        const all = await api("/v1/plugins", { signal });
        const categories = [
          ...new Set([...all.map((p) => p.category), category].filter(Boolean)),
        ].sort();
        for (const name of categories)
          select.append(h("option", { value: name }, name));
        select.value = category;
        await load();
      } catch (error) {
        failView(view, error, "the plugins");
      }
    })();
  }

  function schemaFields(schema) {
    const properties =
      schema && typeof schema === "object" ? schema.properties || {} : {};
    const required = new Set(schema?.required || []);
    const names = Object.keys(properties);
    if (!names.length) return null;
    const typeOf = (prop) => {
      if (prop.type)
        return Array.isArray(prop.type) ? prop.type.join(" | ") : prop.type;
      const options = prop.anyOf || prop.oneOf;
      if (options)
        return options
          .map((o) => o.type || (o.$ref ? o.$ref.split("/").pop() : "?"))
          .join(" | ");
      if (prop.$ref) return prop.$ref.split("/").pop();
      return "any";
    };
    return h(
      "table",
      { class: "fields params" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Param", "Type", "Required", "Default", "Description"].map((t) =>
            h("th", { scope: "col" }, t),
          ),
        ),
      ),
      h(
        "tbody",
        {},
        names.map((name) => {
          const prop = properties[name] || {};
          return h(
            "tr",
            {},
            h("th", { scope: "row", class: "mono" }, name),
            h("td", {}, typeOf(prop), prop.format ? ` (${prop.format})` : ""),
            h("td", {}, required.has(name) ? "yes" : "no"),
            h(
              "td",
              { class: "mono" },
              "default" in prop ? JSON.stringify(prop.default) : "–",
            ),
            h("td", {}, prop.description || prop.title || ""),
          );
        }),
      ),
    );
  }

  function renderPlugin(view, code) {
    const signal = view.controller.signal;
    replace($("#view"), h("p", { class: "muted" }, "Loading…"));
    (async () => {
      let plugin;
      try {
        plugin = await api(`/v1/plugins/${encodeURIComponent(code)}`, {
          signal,
        });
      } catch (error) {
        failView(view, error, `Plugin ${code}`);
        return;
      }
      const versions = [...(plugin.versions || [])].reverse(); // newest first
      replace(
        $("#view"),
        h(
          "p",
          { class: "crumbs" },
          h("a", { href: "#/plugins" }, "Plugins"),
          " / ",
          plugin.code,
        ),
        h(
          "div",
          { class: "title-row" },
          h("h1", {}, plugin.name),
          h("span", { class: "tag" }, plugin.category),
          plugin.builtin ? h("span", { class: "tag" }, "built-in") : null,
        ),
        h("p", {}, plugin.description || ""),
        h(
          "p",
          {},
          h(
            "a",
            { href: `#/runs?plugin=${encodeURIComponent(plugin.code)}` },
            `Runs of ${plugin.code}`,
          ),
        ),
        versions.map((version) =>
          h(
            "details",
            {
              class: "version",
              open: version.version === plugin.latest_version,
              "data-version": version.version,
            },
            h(
              "summary",
              {},
              h("strong", {}, `${plugin.code}@${version.version}`),
              version.version === plugin.latest_version
                ? h("span", { class: "tag" }, "latest")
                : null,
              version.published
                ? h("span", { class: "tag" }, "published")
                : null,
              version.announced_at
                ? h(
                    "span",
                    { class: "muted" },
                    ` announced ${ago(version.announced_at)}`,
                  )
                : null,
            ),
            version.data_types?.length
              ? h("p", {}, "Data types: ", version.data_types.join(", "))
              : null,
            version.annotation_types?.length
              ? h(
                  "p",
                  {},
                  "Annotation types: ",
                  version.annotation_types.join(", "),
                )
              : null,
            Object.entries(version.actions || {}).map(([name, action]) =>
              h(
                "article",
                { class: "action", "data-action": name },
                h("h2", {}, name, h("span", { class: "tag" }, action.method)),
                action.description ? h("p", {}, action.description) : null,
                progressCategories(action.progress_categories),
                metricsCategories(action.metrics_categories),
                h("h3", {}, "Params"),
                schemaFields(action.params_schema),
                h(
                  "details",
                  { class: "schema" },
                  h("summary", {}, "JSON schema"),
                  jsonBlock(
                    action.params_schema,
                    `Params JSON schema of ${name}`,
                  ),
                ),
              ),
            ),
          ),
        ),
      );
      // Open the latest version's schemas: submissions are checked against them.
      for (const details of document.querySelectorAll(
        "details.version[open] details.schema",
      ))
        details.open = true;
    })();
  }

  function progressCategories(categories) {
    const entries = Object.entries(categories || {});
    if (!entries.length) return null;
    return [
      h("h3", {}, "Progress categories"),
      h(
        "table",
        { class: "fields progress-categories" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Category", "Description", "Proportion"].map((t) =>
              h("th", { scope: "col" }, t),
            ),
          ),
        ),
        h(
          "tbody",
          {},
          entries.map(([name, info]) =>
            h(
              "tr",
              {},
              h("th", { scope: "row", class: "mono" }, name),
              h("td", {}, info?.description || ""),
              h("td", { class: "num" }, info?.proportion ?? "–"),
            ),
          ),
        ),
      ),
    ];
  }

  function metricsCategories(categories) {
    const entries = Object.entries(categories || {});
    if (!entries.length) return null;
    return [
      h("h3", {}, "Metrics categories"),
      h(
        "ul",
        {},
        entries.map(([name, info]) =>
          h(
            "li",
            {},
            h("span", { class: "mono" }, name),
            info?.description ? ` – ${info.description}` : "",
          ),
        ),
      ),
    ];
  }

  // -- routing -------------------------------------------------------------------------------

  function route() {
    if (!getToken()) {
      closeView();
      replace($("#view"));
      showLogin($("#login-error").textContent);
      return;
    }
    hideLogin();
    const hash = location.hash.replace(/^#/, "") || "/runs";
    const [path, search] = hash.split("?");
    const parts = path
      .split("/")
      .filter(Boolean)
      .map((part) => {
        try {
          return decodeURIComponent(part);
        } catch {
          return part;
        }
      });
    const query = new URLSearchParams(search || "");
    const view = openView();
    const section = parts[0] === "plugins" ? "plugins" : "runs";
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === section)
        link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (section === "plugins" && parts[1]) renderPlugin(view, parts[1]);
    else if (section === "plugins") renderPlugins(view, query);
    else if (parts[1]) renderRun(view, parts[1]);
    else renderRuns(view, query);
    document.title = `runmesh – ${parts.length > 1 ? `${section} / ${parts[1]}` : section}`;
  }

  function start() {
    $("#login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("#token-input").value.trim();
      if (!token) return;
      localStorage.setItem(TOKEN_KEY, token);
      $("#login-error").textContent = "";
      route();
    });
    $("#sign-out").addEventListener("click", () => {
      signOut("");
      announce("Signed out: the token was removed from this browser.");
    });
    window.addEventListener("hashchange", route);
    route();
  }

  if (document.readyState === "loading")
    document.addEventListener("DOMContentLoaded", start);
  else start();
})();
