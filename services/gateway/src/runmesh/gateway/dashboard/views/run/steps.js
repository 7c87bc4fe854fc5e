// A pipeline run's steps (GET /v1/pipelines/{id}) as a graph: one column per depth (a step
// sits one column right of the deepest step it needs), each step a card with its state, its
// progress and a link to its own run; a failed or cancelled pipeline can be resumed from here.
// A pipeline's run has no events of its own, so its steps are read again every second until
// it ends.
import { Unauthorized, api } from "../../api.js";
import { h, progressBar, replace, setBar, stateBadge } from "../../dom.js";
import { TERMINAL, runHref, shortId } from "../../format.js";
import { announce } from "../../shell.js";

const REFRESH_MS = 1000;

/** Column of each step: 0 for one that needs none, else 1 + its deepest need's. */
export function depths(steps) {
  const needs = new Map(steps.map((step) => [step.name, step.needs || []]));
  const depth = new Map();
  const visit = (name) => {
    if (!depth.has(name)) {
      depth.set(name, 0); // a cycle cannot reach here: the gateway refuses one
      depth.set(name, Math.max(-1, ...needs.get(name).map(visit)) + 1);
    }
    return depth.get(name);
  };
  for (const step of steps) visit(step.name);
  return depth;
}

function card(step, needs) {
  const bar = progressBar(`Progress of step ${step.step}`);
  setBar(bar, step.percent, step.state);
  return h(
    "li",
    { class: "step-card", "data-step": step.step, "data-state": step.state },
    h("a", { href: runHref(step.run_id), class: "mono step-name" }, step.step),
    " ",
    stateBadge(step.state),
    needs.length ? h("p", { class: "muted" }, `after ${needs.join(", ")}`) : null,
    h("p", { class: "muted mono" }, `run ${shortId(step.run_id)}`),
    step.percent == null ? null : bar,
    step.error ? h("p", { class: "error" }, step.error) : null,
  );
}

export function createSteps(view, runId, { onRun }) {
  const path = `/v1/pipelines/${encodeURIComponent(runId)}`;
  const graph = h("div", { class: "step-graph", id: "pipeline-steps" });
  const actions = h("div", { class: "buttons" });
  const section = h(
    "section",
    { "aria-labelledby": "steps-title", hidden: true },
    h("div", { class: "title-row" }, h("h2", { id: "steps-title" }, "Steps"), actions),
    graph,
  );
  let key = "";
  let started = false;

  async function resume(event) {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const resumed = await api(`${path}/resume`, { method: "POST", body: {} });
      announce(`Resumed as pipeline run ${shortId(resumed.run.id)}.`);
      location.hash = runHref(resumed.run.id);
    } catch (error) {
      if (error instanceof Unauthorized) return;
      button.disabled = false;
      announce(`Could not resume: ${error.message}`, "error");
    }
  }

  function render(pipeline) {
    const next = JSON.stringify([pipeline.run.state, pipeline.steps]);
    if (next === key) return;
    key = next;
    const defined = pipeline.pipeline.steps || {};
    const names = Object.keys(defined).map((name) => ({ name, needs: defined[name].needs }));
    const depth = depths(names);
    const columns = [];
    for (const step of pipeline.steps) {
      const column = depth.get(step.step) || 0;
      (columns[column] ||= []).push(card(step, defined[step.step]?.needs || []));
    }
    replace(
      graph,
      columns.map((cards, index) =>
        h("ol", { class: "step-column", "aria-label": `Steps at depth ${index + 1}` }, cards),
      ),
    );
    const resumable = pipeline.run.state === "failed" || pipeline.run.state === "cancelled";
    replace(
      actions,
      resumable
        ? h("button", { type: "button", id: "resume-pipeline", onclick: resume }, "Resume")
        : null,
    );
  }

  async function load() {
    const pipeline = await api(path, { signal: view.signal });
    if (!view.closed) {
      render(pipeline);
      onRun(pipeline.run); // its state and progress move with its steps, not with events
    }
    return pipeline;
  }

  /** Show the steps when `run` is a pipeline's run; keep them current until it ends. */
  function show(run) {
    if (run.category !== "pipeline") return;
    section.hidden = false;
    if (started) return;
    started = true;
    const refresh = view.throttle(REFRESH_MS, async () => {
      const pipeline = await load();
      if (!TERMINAL.has(pipeline.run.state)) refresh("steps");
    });
    refresh("steps");
  }

  return { section, show };
}
