// The schedules (#/schedules): each with its cron and zone, its next tick, how often it fired
// and skipped, its last run and what went wrong last, with Pause and Resume.

import { Unauthorized, api } from "../api.js";
import { h, headRow, replace } from "../dom.js";
import { runHref, shortId, timeEl } from "../format.js";
import { announce, viewRoot } from "../shell.js";

function scheduleRow(schedule, toggle) {
  const paused = schedule.paused;
  return h(
    "tr",
    { "data-schedule": schedule.name },
    h("td", {}, schedule.name),
    h("td", { class: "mono" }, schedule.cron),
    h("td", {}, schedule.timezone),
    h("td", {}, schedule.overlap),
    h(
      "td",
      { class: "next" },
      paused ? h("span", { class: "tag" }, "paused") : timeEl(schedule.next_at),
    ),
    h("td", { class: "num" }, `${schedule.fired} / ${schedule.skipped}`),
    h(
      "td",
      {},
      schedule.last_run_id
        ? h(
            "a",
            { href: runHref(schedule.last_run_id), class: "mono" },
            shortId(schedule.last_run_id),
          )
        : "–",
    ),
    h("td", { class: "error" }, schedule.last_error || ""),
    h(
      "td",
      {},
      h(
        "button",
        { type: "button", class: "toggle", onclick: (event) => toggle(schedule, event) },
        paused ? "Resume" : "Pause",
      ),
    ),
  );
}

export function renderSchedules(view) {
  const tbody = h("tbody");
  const empty = h(
    "p",
    { class: "empty", hidden: true },
    "No schedules. Create one with `runmesh schedules create` or POST /v1/schedules.",
  );
  replace(
    viewRoot(),
    h("h1", {}, "Schedules"),
    h(
      "table",
      { class: "schedules" },
      headRow(
        "Name",
        "Cron",
        "Zone",
        "Overlap",
        "Next tick",
        "Fired / skipped",
        "Last run",
        "Last error",
        "",
      ),
      tbody,
    ),
    empty,
  );

  async function toggle(schedule, event) {
    event.currentTarget.disabled = true;
    const action = schedule.paused ? "resume" : "pause";
    try {
      await api(`/v1/schedules/${schedule.id}/${action}`, { method: "POST" });
      announce(`Schedule ${schedule.name} ${schedule.paused ? "resumed" : "paused"}.`);
    } catch (error) {
      if (error instanceof Unauthorized) return;
      announce(`Could not ${action} ${schedule.name}: ${error.message}`, "error");
    }
    await load();
  }

  async function load() {
    const schedules = await api("/v1/schedules", { signal: view.signal });
    if (view.closed) return;
    replace(tbody, schedules.map((schedule) => scheduleRow(schedule, toggle)));
    empty.hidden = schedules.length > 0;
  }

  // Ticks move `next_at` and the counts: read them again now and then.
  view.every(5000, () => load().catch(() => {}));
  load().catch((error) => view.fail(error, "the schedules"));
}
