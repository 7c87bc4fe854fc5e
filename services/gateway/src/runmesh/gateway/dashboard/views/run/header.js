// The run page's title row and facts: state badge, plugin, attempt, times, parent run, and the
// Cancel and Rerun buttons.

import { Unauthorized, api } from "../../api.js";
import { h, replace, stateBadge } from "../../dom.js";
import {
  TERMINAL,
  duration,
  pluginLink,
  randomKey,
  runHref,
  shortId,
  timeEl,
} from "../../format.js";
import { announce } from "../../shell.js";

function fact(term, ...value) {
  return [h("dt", {}, term), h("dd", {}, ...value)];
}

// "2 after worker lost": a later attempt says why it started.
function attemptText(run) {
  const attempt = String(run.attempt);
  return run.attempt > 1 && run.retry_reason ? `${attempt} after ${run.retry_reason}` : attempt;
}

function runDuration(run) {
  const started = run.started_at ? Date.parse(run.started_at) : null;
  const ended = run.finished_at
    ? Date.parse(run.finished_at)
    : TERMINAL.has(run.state)
      ? null
      : Date.now();
  return started && ended ? duration((ended - started) / 1000) : "–";
}

/**
 * The header of run `runId` (API path `path`). `onRun(run)` takes the run a cancel answered
 * with; `refresh()` asks for the run again.
 */
export function createHeader(runId, path, { onRun, refresh }) {
  const el = {
    state: h("span", { id: "run-state-slot" }),
    title: h("h1", { class: "mono" }, `Run ${shortId(runId)}`),
    facts: h("dl", { class: "facts" }),
    actions: h("div", { class: "buttons" }),
    duration: null,
  };
  let headerKey = "";
  let buttonsKey = "";
  let current = null;

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
      onRun(answer);
    } catch (error) {
      if (error instanceof Unauthorized) return;
      button.disabled = false;
      announce(`Could not cancel: ${error.message}`, "error");
      refresh();
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

  function renderButtons(run) {
    const cancellable = run.state === "queued" || run.state === "running";
    if (buttonsKey === String(cancellable)) return;
    buttonsKey = String(cancellable);
    replace(
      el.actions,
      cancellable
        ? h(
            "button",
            { type: "button", class: "danger", id: "cancel-run", onclick: cancel },
            "Cancel run",
          )
        : null,
      h("button", { type: "button", id: "rerun-run", onclick: rerun }, "Rerun"),
    );
  }

  /** Show `run`; rebuilt only when it changed: a refresh must not replace what is clicked. */
  function render(run) {
    current = run;
    renderButtons(run);
    const key = JSON.stringify([
      run.state,
      run.plugin,
      run.plugin_version,
      run.action,
      run.attempt,
      run.retry_reason,
      run.started_at,
      run.finished_at,
      run.queue?.reason,
      run.pool,
      run.priority,
    ]);
    if (key === headerKey) return;
    headerKey = key;
    replace(el.state, stateBadge(run.state, "run-state"));
    el.duration = h("span", { id: "run-duration" }, runDuration(run));
    replace(
      el.facts,
      fact("Plugin", ...pluginLink(run)),
      fact("Action", run.action || "–"),
      fact("Category", run.category),
      // 5 is everyone's: only a run that asked for another says so.
      run.priority && run.priority !== 5
        ? fact("Priority", h("span", { id: "run-priority" }, String(run.priority)))
        : null,
      run.resources?.lock_all ? fact("Worker", "alone on it (lock_all)") : null,
      // A run that asked for a placement: the pool it went to, or that it is still held.
      run.placement ? fact("Pool", h("span", { id: "run-pool" }, run.pool ?? "none yet")) : null,
      // Why a queued run waits: no worker of its category, or its place behind busy slots.
      run.queue ? fact("Queue", h("span", { id: "run-queue" }, run.queue.reason)) : null,
      fact("Attempt", attemptText(run)),
      fact("Created", timeEl(run.created_at)),
      fact("Started", timeEl(run.started_at)),
      fact("Finished", timeEl(run.finished_at)),
      fact("Duration", el.duration),
      run.parent_run_id
        ? fact(
            // A rerun's original, or the run that requested this child run.
            "Parent run",
            h(
              "a",
              { href: runHref(run.parent_run_id), class: "mono", id: "parent-link" },
              shortId(run.parent_run_id),
            ),
          )
        : null,
    );
  }

  /** Tick the duration of a running run (called every second). */
  function tick() {
    const run = current;
    if (run?.started_at && !run.finished_at && !TERMINAL.has(run.state) && el.duration)
      el.duration.textContent = duration((Date.now() - Date.parse(run.started_at)) / 1000);
  }

  return { el, render, tick };
}
