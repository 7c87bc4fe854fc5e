// The run page's progress: the overall bar and a row per progress category (declared by the
// action's manifest, in its order, or reported by the run), with counts, percent, elapsed
// time and ETA.

import { h, headRow, progressBar, replace, setBar } from "../../dom.js";
import { TERMINAL, declaredOrder, duration, number } from "../../format.js";

const percentText = (value) => `${number(Math.round(value * 10) / 10)}%`;

const known = (value) => value !== null && value !== undefined;

function categoryRow(name, reported, declared, state) {
  const bar = progressBar(`Progress of ${name}`);
  setBar(bar, reported ? reported.percent : 0, state);
  const total = known(reported?.total) ? number(reported.total) : "?";
  const counts = reported ? `${number(reported.current)} / ${total}` : "–";
  const percent = reported?.percent;
  const about = declared.description ? String(declared.description) : null;
  return h(
    "tr",
    { "data-category": name },
    h("th", { scope: "row" }, name, about ? h("div", { class: "muted small" }, about) : null),
    h("td", {}, h("div", { class: "progress-cell" }, bar)),
    h("td", { class: "num" }, counts),
    h("td", { class: "num" }, known(percent) ? percentText(percent) : "–"),
    h("td", { class: "num" }, reported ? duration(reported.elapsed_s) : "–"),
    h(
      "td",
      { class: "num" },
      reported ? (reported.eta_s === 0 ? "done" : duration(reported.eta_s)) : "–",
    ),
  );
}

export function createProgress() {
  const overall = Object.assign(progressBar("Overall progress"), { id: "overall-progress" });
  const overallText = h("span", { class: "pct", id: "overall-percent" });
  const categories = h("div", { class: "categories" });
  const section = h(
    "section",
    { "aria-labelledby": "progress-title" },
    h("h2", { id: "progress-title" }, "Progress"),
    h("div", { class: "overall" }, overall, overallText),
    categories,
  );

  /** Show `run`'s progress; `actionInfo` is its action's manifest entry (or null). */
  function render(run, actionInfo) {
    setBar(overall, run.percent, run.state);
    overallText.textContent = percentText(run.percent || 0);
    const declared = actionInfo?.progress_categories || {};
    const reported = run.progress || {};
    const names = [...new Set([...declaredOrder(declared), ...Object.keys(reported)])];
    if (!names.length) {
      const text = TERMINAL.has(run.state) ? "No progress reported." : "No progress reported yet.";
      replace(categories, h("p", { class: "muted" }, text));
      return;
    }
    replace(
      categories,
      h(
        "table",
        { class: "progress" },
        headRow("Category", "Progress", "Current / total", "Percent", "Elapsed", "ETA"),
        h(
          "tbody",
          {},
          names.map((name) =>
            categoryRow(name, reported[name] || null, declared[name] || {}, run.state),
          ),
        ),
      ),
    );
  }

  return { section, render };
}
