// Line charts over the vendored uPlot (canvas): several series on one x axis, values under
// the cursor in the legend, sized to their container.

import uPlot from "./vendor/uPlot.esm.js";
import { number } from "./format.js";

const HEIGHT = 180;
const FALLBACK_COLORS = ["#2f6fde", "#d97706", "#1f9d55", "#9333ea", "#d23b3b", "#0891b2"];

// Colors come from style.css (`--series-1`…, `--muted`, `--line`): canvas needs real values.
function cssColor(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

function seriesColor(index) {
  const fallback = FALLBACK_COLORS[index % FALLBACK_COLORS.length];
  return cssColor(`--series-${(index % FALLBACK_COLORS.length) + 1}`, fallback);
}

const show = (value) => (value === null || value === undefined ? "–" : number(value));

// Steps and report numbers are whole: tick the x axis at whole numbers only.
const WHOLE_STEPS = [1, 10, 100, 1e3, 1e4, 1e5, 1e6].flatMap((power) =>
  [1, 2, 5].map((base) => base * power),
);

const DARK = matchMedia("(prefers-color-scheme: dark)");

// The y axis as wide as its widest tick label (uPlot's fixed width clipped long numbers such
// as 12,345.6): uPlot asks again while it lays out, and the text is measured on its canvas.
function fittedSize(u, values, axisIndex, cycle) {
  const axis = u.axes[axisIndex];
  if (cycle > 1) return axis._size;
  let size = axis.ticks.size + axis.gap + (axis.label ? axis.labelSize : 0);
  const longest = (values ?? []).reduce(
    (wide, text) => (text.length > wide.length ? text : wide),
    "",
  );
  if (longest) {
    u.ctx.font = axis.font[0];
    size += u.ctx.measureText(longest).width / devicePixelRatio;
  }
  return Math.ceil(size);
}

function options(width, { xLabel, yLabel, labels }) {
  const muted = cssColor("--muted", "#5d6675");
  const grid = { stroke: cssColor("--line", "#dde1e7"), width: 1 };
  const axis = { stroke: muted, grid, ticks: grid, font: "11px system-ui, sans-serif" };
  return {
    width,
    height: HEIGHT,
    scales: { x: { time: false } },
    series: [
      { label: xLabel, value: (_, value) => show(value) },
      ...labels.map((label, index) => ({
        label,
        stroke: seriesColor(index),
        width: 2,
        spanGaps: true, // a series without a value at some x (validation every n epochs)
        points: { size: 5 },
        value: (_, value) => show(value),
      })),
    ],
    axes: [
      { ...axis, label: xLabel, labelSize: 20, labelFont: axis.font, incrs: WHOLE_STEPS },
      {
        ...axis,
        label: yLabel,
        labelSize: 18,
        labelFont: axis.font,
        size: fittedSize,
        values: (_, ticks) => ticks.map(show),
      },
    ],
    legend: { live: true },
  };
}

/**
 * A chart in `container` of series `labels` over an x axis named `xLabel`, values named
 * `yLabel` (the metric). `setData(xs, ys)` takes the x values (ascending) and one array of y
 * values (or null) per series.
 */
export class LineChart {
  constructor(container, { xLabel, yLabel = "", labels }) {
    this.container = container;
    this.spec = { xLabel, yLabel, labels };
    this.data = [[], ...labels.map(() => [])];
    this.plot = this.draw();
    this.resize = new ResizeObserver(() => {
      const width = this.width();
      if (width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
    });
    this.resize.observe(container);
    // Light or dark: the canvas takes the colors again.
    this.recolor = () => {
      this.plot.destroy();
      this.plot = this.draw();
    };
    DARK.addEventListener("change", this.recolor);
  }

  draw() {
    return new uPlot(options(this.width(), this.spec), this.data, this.container);
  }

  width() {
    return Math.max(200, Math.floor(this.container.clientWidth || 320));
  }

  setData(xs, ys) {
    this.data = [xs, ...ys];
    this.plot.setData(this.data);
  }

  destroy() {
    DARK.removeEventListener("change", this.recolor);
    this.resize.disconnect();
    this.plot.destroy();
  }
}
