// One run's page (#/runs/{id}): its header, progress, a pipeline's steps, outcome, logs,
// metrics, artifacts and params, from GET /v1/runs/{id} and the run's event stream (replayed
// from the start, then live until its terminal event).

import { Unauthorized, api } from "../../api.js";
import { h, replace } from "../../dom.js";
import { TERMINAL, pluginCode } from "../../format.js";
import { setLive, viewRoot } from "../../shell.js";
import { followEvents } from "../../sse.js";
import { createArtifacts } from "./artifacts.js";
import { createHeader } from "./header.js";
import { createLogs, logEntry } from "./logs.js";
import { createMetrics } from "./metrics.js";
import { createOutcome } from "./outcome.js";
import { createProgress } from "./progress.js";
import { createSteps } from "./steps.js";

const RUN_REFRESH_MS = 500; // at most one GET /v1/runs/{id} per this interval
const TERMINAL_EVENTS = new Set(["run.succeeded", "run.failed", "run.cancelled"]);

/** The manifest entry of the run's action (its progress categories), or null. */
async function actionOf(run, signal) {
  const code = pluginCode(run.plugin);
  if (!code || !run.action) return null;
  try {
    const plugin = await api(`/v1/plugins/${encodeURIComponent(code)}`, { signal });
    const versions = plugin.versions || [];
    const version =
      versions.find((v) => v.version === run.plugin_version) ||
      versions.find((v) => v.version === plugin.latest_version) ||
      versions[versions.length - 1];
    return version?.actions?.[run.action] || null;
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    return null; // a withdrawn plugin: the run still shows what it reported
  }
}

export function renderRun(view, runId) {
  const signal = view.signal;
  const path = `/v1/runs/${encodeURIComponent(runId)}`;
  let run = null;
  let actionInfo = null;
  let streamDone = false; // the run's stream sent its terminal event (or run.state)

  const refreshRun = view.throttle(RUN_REFRESH_MS, async () => {
    run = await api(path, { signal });
    render();
  });
  const header = createHeader(runId, path, {
    onRun: (answer) => {
      run = answer;
      render();
    },
    refresh: () => refreshRun("r"),
  });
  const progress = createProgress();
  const outcome = createOutcome();
  const logs = createLogs();
  const metrics = createMetrics(view);
  const artifacts = createArtifacts(path);
  const steps = createSteps(view, runId, {
    onRun: (answer) => {
      run = answer;
      render();
    },
  });

  replace(
    viewRoot(),
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
      header.el.title,
      header.el.state,
      h("span", { class: "spacer" }),
      header.el.actions,
    ),
    header.el.facts,
    progress.section,
    steps.section,
    outcome.outcome,
    logs.section,
    metrics.section,
    artifacts.section,
    outcome.params,
  );

  function render() {
    header.render(run);
    progress.render(run, actionInfo);
    outcome.render(run);
    steps.show(run);
  }

  function onEvent(message) {
    switch (message.event) {
      case "run.log":
        logs.add(logEntry(message));
        break;
      case "run.metric":
        metrics.add(message);
        break;
      case "run.artifact":
        artifacts.add(message);
        break;
      case "run.state": // the gateway ended the run without a terminal event
        streamDone = TERMINAL.has(message.data.state);
        break;
      default:
        if (TERMINAL_EVENTS.has(message.event)) streamDone = true;
    }
    // A log line or an artifact changes none of the run's fields, once it started.
    const own = message.event === "run.log" || message.event === "run.artifact";
    if (!own || !run || run.state === "queued") refreshRun("r");
  }

  view.every(1000, header.tick);

  (async () => {
    try {
      run = await api(path, { signal });
    } catch (error) {
      view.fail(error, `Run ${runId}`);
      return;
    }
    render();
    actionOf(run, signal)
      .then((info) => {
        actionInfo = info;
        if (!view.closed) progress.render(run, actionInfo);
      })
      .catch(() => {});
    api(`${path}/logs?limit=1000`, { signal })
      .then((page) => page.items.forEach(logs.add))
      .catch(() => {});
    // Replayed from the start, then live, until the run's terminal event.
    await followEvents(`${path}/events`, {
      signal,
      onEvent,
      onOpen: () => setLive("live"),
      onClose: () => setLive(streamDone ? null : "reconnecting"),
      done: () => streamDone,
    });
    if (!view.closed) {
      setLive(null);
      refreshRun("r");
    }
  })();
}
