// The run page's metric charts. They are built from the run's stream alone: it replays every
// stored event from the first, then goes on live, so each `run.metric` event appends its
// points and nothing is fetched again (GET /v1/runs/{id}/metrics stays for other clients).

import { LineChart } from "../../chart.js";
import { h, replace } from "../../dom.js";
import { number } from "../../format.js";
import { MetricCharts } from "./metric-series.js";

function summary(chart) {
  const parts = chart.series.map((series) => {
    const last = series.points[series.points.length - 1];
    return `${series.category} ${series.points.length} points, last ${number(last?.value)}`;
  });
  return `${chart.name} by ${chart.xLabel}: ${parts.join("; ")}`;
}

function caption(chart) {
  return [
    h("strong", {}, chart.name),
    chart.series.map((series) => {
      const last = series.points[series.points.length - 1];
      return h(
        "span",
        {
          class: "series",
          "data-category": series.category,
          "data-points": series.points.length,
        },
        ` ${series.category} latest ${number(last?.value)}`,
        series.attempt > 1 ? ` (attempt ${series.attempt})` : "",
      );
    }),
  ];
}

function scalarValues(chart) {
  return h(
    "p",
    { class: "scalar-values" },
    chart.series.map((series) =>
      h(
        "span",
        { class: "scalar-value", "data-category": series.category },
        h("span", { class: "muted" }, series.category, " "),
        h("strong", {}, number(series.points[series.points.length - 1]?.value)),
      ),
    ),
  );
}

/** The metrics section of a run page; `view` closing destroys its charts. */
export function createMetrics(view) {
  const charts = h(
    "div",
    { class: "charts", id: "charts" },
    h("p", { class: "muted" }, "No metrics reported."),
  );
  const section = h(
    "section",
    { "aria-labelledby": "metrics-title" },
    h("h2", { id: "metrics-title" }, "Metrics"),
    charts,
  );
  const store = new MetricCharts();
  const shown = new Map(); // metric name -> {figure, plot, caption, chart, shape}

  const dirty = new Set();
  let frame = 0;

  view.signal.addEventListener("abort", () => {
    cancelAnimationFrame(frame);
    for (const entry of shown.values()) entry.chart?.destroy();
  });

  function figure(metric) {
    const plot = h("div", { class: "plot", role: "img" });
    const text = h("figcaption", {});
    const entry = { plot, caption: text, chart: null, shape: "" };
    entry.figure = h("figure", { class: "chart", "data-name": metric.name }, plot, text);
    if (!shown.size) replace(charts);
    charts.append(entry.figure);
    shown.set(metric.name, entry);
    return entry;
  }

  function draw(metric) {
    const entry = shown.get(metric.name) || figure(metric);
    entry.plot.setAttribute("aria-label", summary(metric));
    entry.figure.dataset.categories = metric.labels.join(" ");
    replace(entry.caption, caption(metric));
    if (metric.xs.length === 1) {
      // One report so far (an end-of-run score such as a macro F1): a value, not a one-point
      // chart. A second report turns it into a chart.
      entry.chart?.destroy();
      Object.assign(entry, { chart: null, shape: "" });
      entry.figure.classList.add("scalar");
      replace(entry.plot, scalarValues(metric));
      return;
    }
    if (entry.figure.classList.contains("scalar")) {
      entry.figure.classList.remove("scalar");
      replace(entry.plot);
    }
    // A new series or x axis makes a new uPlot; a new point only new data.
    const shape = JSON.stringify([metric.xLabel, metric.labels]);
    if (shape !== entry.shape) {
      entry.chart?.destroy();
      entry.chart = new LineChart(entry.plot, {
        xLabel: metric.xLabel,
        yLabel: metric.name,
        labels: metric.labels,
      });
      entry.shape = shape;
    }
    entry.chart.setData(metric.xs, metric.ys);
  }

  /** Append the values of one `run.metric` stream message (drawn with the next frame). */
  function add(message) {
    for (const metric of store.add(Number(message.id), message.data)) dirty.add(metric);
    if (dirty.size && !frame)
      frame = requestAnimationFrame(() => {
        frame = 0;
        for (const metric of dirty) draw(metric);
        dirty.clear();
      });
  }

  return { section, add };
}
