// The runs list (#/runs): filters kept in the URL, pages of GET /v1/runs, rows kept live by
// the tenant's event stream.

import { ApiError, Unauthorized, api } from "../api.js";
import { h, headRow, progressBar, replace, setBar, stateBadge } from "../dom.js";
import { STATES, ago, pluginCode, pluginLink, runHref, shortId } from "../format.js";
import { announce, setLive, viewRoot } from "../shell.js";
import { followEvents } from "../sse.js";

const RUN_REFRESH_MS = 500; // at most one GET /v1/runs/{id} per run per this interval
const LIST_POLL_MS = 30000; // runs that emit no event (queued) still show up

function filterForm(filters) {
  const state = h(
    "select",
    { id: "filter-state", name: "state" },
    h("option", { value: "" }, "any state"),
    STATES.map((name) => h("option", { value: name }, name)),
  );
  state.value = filters.state;
  const search = (name, placeholder) =>
    h("input", {
      id: `filter-${name}`,
      name,
      type: "search",
      placeholder,
      value: filters[name],
    });
  const name = search("name", "part of a name");
  const category = search("category", "e.g. upload");
  const plugin = search("plugin", "plugin code");
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter runs" },
    h("label", { for: "filter-name" }, "Name"),
    name,
    h("label", { for: "filter-state" }, "State"),
    state,
    h("label", { for: "filter-category" }, "Category"),
    category,
    h("label", { for: "filter-plugin" }, "Plugin"),
    plugin,
    h("button", { type: "submit" }, "Apply"),
  );
  return { form, name, state, category, plugin };
}

function newRow(run) {
  const bar = progressBar(`Progress of run ${shortId(run.id)}`);
  const cells = {
    state: h("td", {}),
    name: h("td", { class: "run-name" }),
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
    h("td", {}, h("a", { href: runHref(run.id), class: "mono" }, shortId(run.id))),
    cells.name,
    h("td", {}, run.category),
    cells.plugin,
    cells.action,
    h("td", {}, h("div", { class: "progress-cell" }, bar, cells.percent)),
    cells.age,
  );
  return { run, tr, cells };
}

function showAge({ run, cells }) {
  replace(
    cells.age,
    h("time", { datetime: run.created_at, title: run.created_at }, ago(run.created_at)),
  );
}

function fill(row) {
  const { run, cells } = row;
  // A queued run's place in its queue, and why it waits on hover (the run page says it too).
  const queue = run.state === "queued" && run.queue;
  replace(
    cells.state,
    stateBadge(run.state),
    queue
      ? h(
          "span",
          { class: "muted small queue-position", title: queue.reason },
          ` #${queue.position}`,
        )
      : null,
  );
  replace(cells.plugin, pluginLink(run));
  cells.action.textContent = run.action || "–";
  cells.name.textContent = run.name || "–";
  setBar(cells.bar, run.percent, run.state);
  cells.percent.textContent = `${Math.round(run.percent || 0)}%`;
  showAge(row);
}

export function renderRuns(view, query) {
  const signal = view.signal;
  const filters = {
    name: query.get("name") || "",
    state: query.get("state") || "",
    category: query.get("category") || "",
    plugin: query.get("plugin") || "",
  };
  const rows = new Map(); // run id -> {run, tr, cells}
  let nextCursor = null;
  let loadedOnce = false;

  const inputs = filterForm(filters);
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true }, "No runs match.");
  const more = h("button", { type: "button", class: "more", hidden: true }, "Load more");
  const count = h("span", { class: "count", "aria-live": "polite" });
  replace(
    viewRoot(),
    h("div", { class: "title-row" }, h("h1", {}, "Runs"), count),
    inputs.form,
    h(
      "table",
      { class: "runs" },
      h("caption", { class: "sr-only" }, "Runs, newest first"),
      headRow("State", "Run", "Name", "Category", "Plugin", "Action", "Progress", "Created"),
      tbody,
    ),
    empty,
    more,
  );

  function listQuery(cursor) {
    const params = new URLSearchParams();
    if (filters.name) params.set("name", filters.name);
    if (filters.state) params.append("state", filters.state);
    if (filters.category) params.set("category", filters.category);
    if (filters.plugin) params.set("plugin", filters.plugin);
    params.set("limit", "50");
    if (cursor) params.set("cursor", cursor);
    return `/v1/runs?${params}`;
  }

  function matches(run) {
    const name = filters.name.toLowerCase();
    if (name && !(run.name || "").toLowerCase().includes(name)) return false;
    if (filters.state && run.state !== filters.state) return false;
    if (filters.category && run.category !== filters.category) return false;
    if (filters.plugin && pluginCode(run.plugin) !== pluginCode(filters.plugin)) return false;
    return true;
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
    if (!fromPage && nextCursor && lastRow && run.created_at < lastRow.run.created_at) return;
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
      view.fail(error, "the runs");
    }
  }

  function apply() {
    filters.name = inputs.name.value.trim();
    filters.state = inputs.state.value;
    filters.category = inputs.category.value.trim();
    filters.plugin = inputs.plugin.value.trim();
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(filters)) if (value) params.set(key, value);
    const search = params.toString();
    const hash = `#/runs${search ? `?${search}` : ""}`;
    history.replaceState(null, "", hash); // keep the filters in the URL, no re-route
    reload();
  }

  let typing = 0;
  inputs.form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  inputs.state.addEventListener("change", apply);
  for (const input of [inputs.name, inputs.category, inputs.plugin]) {
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

  const refreshRun = view.throttle(RUN_REFRESH_MS, async (id) => {
    try {
      upsert(await api(`/v1/runs/${encodeURIComponent(id)}`, { signal }));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return;
      throw error;
    }
  });

  view.every(10000, () => {
    for (const row of rows.values()) showAge(row);
  });
  view.every(LIST_POLL_MS, () => {
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
      // More happened while away than the stream replays: list the runs again.
      if (message.event === "gap") reload();
      else if (message.data?.run_id) refreshRun(message.data.run_id);
    },
  });
}
