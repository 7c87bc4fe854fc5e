// The run page's outcome (result JSON, or the error with its folded traceback) and params.
// Both are rebuilt only when they changed: an open traceback stays open across refreshes.

import { h, jsonBlock, replace } from "../../dom.js";
import { modelHref, shortId } from "../../format.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// A result that names a registered model (train, tune, test) links to the model's page.
function modelLink(result) {
  const id = result && typeof result === "object" ? result.model_id : null;
  if (typeof id !== "string" || !UUID.test(id)) return null;
  return h(
    "p",
    {},
    "Model: ",
    h("a", { href: modelHref(id), id: "result-model", class: "mono" }, shortId(id)),
  );
}

export function createOutcome() {
  const outcome = h("section", { id: "outcome", "aria-labelledby": "outcome-title", hidden: true });
  const paramsBody = h("div", {});
  const params = h(
    "section",
    { "aria-labelledby": "params-title" },
    h("h2", { id: "params-title" }, "Params"),
    paramsBody,
  );
  let outcomeKey = "";
  let paramsKey = "";

  function renderOutcome(run) {
    const key = JSON.stringify([run.result, run.error]);
    if (key === outcomeKey) return;
    outcomeKey = key;
    if (run.result !== null && run.result !== undefined) {
      outcome.hidden = false;
      replace(
        outcome,
        h("h2", { id: "outcome-title" }, "Result"),
        modelLink(run.result),
        jsonBlock(run.result, "Result JSON"),
      );
    } else if (run.error) {
      outcome.hidden = false;
      replace(
        outcome,
        h("h2", { id: "outcome-title" }, "Error"),
        h("p", { class: "error" }, h("strong", {}, run.error.type), ": ", run.error.message),
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
      outcome.hidden = true;
    }
  }

  function renderParams(run) {
    const key = JSON.stringify(run.params || {});
    if (key === paramsKey) return;
    paramsKey = key;
    replace(paramsBody, jsonBlock(run.params || {}, "Params JSON"));
  }

  function render(run) {
    renderOutcome(run);
    renderParams(run);
  }

  return { outcome, params, render };
}
