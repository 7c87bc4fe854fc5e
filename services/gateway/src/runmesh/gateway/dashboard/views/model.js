// One trained model's page (#/models/{id}): what it is, the run that trained it (and the model
// it started from), its classes, final metrics, hyperparameters, dataset and weights, from
// GET /v1/models/{id}.

import { api } from "../api.js";
import { h, headRow, jsonBlock, replace } from "../dom.js";
import { modelHref, runHref, shortId, timeEl } from "../format.js";
import { viewRoot } from "../shell.js";

function fact(term, ...value) {
  return [h("dt", {}, term), h("dd", {}, ...value)];
}

function metricsTable(metrics) {
  const names = Object.keys(metrics || {}).sort();
  if (!names.length) return h("p", { class: "muted" }, "No metrics recorded.");
  return h(
    "table",
    { class: "fields", id: "model-metrics" },
    headRow("Metric", "Value"),
    h(
      "tbody",
      {},
      names.map((name) =>
        h(
          "tr",
          {},
          h("th", { scope: "row", class: "mono" }, name),
          h("td", { class: "mono" }, Number(metrics[name]).toPrecision(4)),
        ),
      ),
    ),
  );
}

function baseModel(id) {
  if (!id) return "–";
  return h("a", { href: modelHref(id), class: "mono" }, shortId(id));
}

export function renderModel(view, modelId) {
  const root = viewRoot();
  replace(root, h("p", { class: "muted" }, "Loading…"));
  (async () => {
    let model;
    try {
      model = await api(`/v1/models/${encodeURIComponent(modelId)}`, { signal: view.signal });
    } catch (error) {
      view.fail(error, `Model ${shortId(modelId)}`);
      return;
    }
    if (view.closed) return;
    replace(
      root,
      h("p", { class: "crumbs" }, "Models / ", h("span", { class: "mono" }, shortId(model.id))),
      h(
        "div",
        { class: "title-row" },
        h("h1", {}, model.name),
        h("span", { class: "tag" }, model.action),
      ),
      model.description ? h("p", {}, model.description) : null,
      h(
        "dl",
        { class: "facts" },
        fact("Id", h("span", { class: "mono" }, model.id)),
        fact(
          "Trained by",
          h(
            "a",
            { href: runHref(model.run_id), id: "model-run", class: "mono" },
            `run ${shortId(model.run_id)}`,
          ),
        ),
        fact("Started from", baseModel(model.base_model_id)),
        fact("Plugin", `${model.plugin}@${model.plugin_version}`),
        fact("Created", timeEl(model.created_at)),
        fact("Weights", h("code", { class: "uri", id: "model-weights" }, model.artifact_uri)),
      ),
      h("h2", {}, "Classes"),
      h("p", { id: "model-classes" }, (model.classes || []).join(", ") || "–"),
      h("h2", {}, "Metrics"),
      metricsTable(model.metrics),
      h("h2", {}, "Hyperparameters"),
      jsonBlock(model.params || {}, "Hyperparameters JSON"),
      h("h2", {}, "Dataset"),
      jsonBlock(model.dataset || {}, "Dataset JSON"),
    );
  })();
}
