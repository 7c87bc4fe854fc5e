// A run's metrics as charts, built point by point from its `run.metric` events: one chart per
// metric name, one series per metrics category (train and validation `loss` overlay). Each
// series keeps its latest attempt only. A chart's data is kept aligned for uPlot (one sorted
// x array, a y array per series with null where a series has no value), and a new point is
// appended in place; only a point out of order, a new attempt or a switch of x axis rebuilds.

const hasStep = (point) => point.step !== null && point.step !== undefined;

export class MetricChart {
  constructor(name) {
    this.name = name;
    this.series = []; // [{category, attempt, points: [{step, value}]}]
    this.byStep = true; // x is the step while every point has one, else the report number
    this.xs = [];
    this.ys = [];
    this.slot = new Map(); // x -> index in xs
  }

  get xLabel() {
    return this.byStep ? "step" : "report";
  }

  get labels() {
    return this.series.map((series) => series.category);
  }

  /** Add one value; false when it belongs to an earlier attempt than the series shows. */
  add(category, attempt, step, value) {
    let index = this.series.findIndex((series) => series.category === category);
    if (index < 0) {
      index = this.series.push({ category, attempt, points: [] }) - 1;
      this.ys.push(new Array(this.xs.length).fill(null));
    }
    const series = this.series[index];
    if (attempt < series.attempt) return false;
    const point = { step, value };
    if (attempt > series.attempt) {
      series.attempt = attempt; // a retried run starts its series again
      series.points = [point];
      this.rebuild();
      return true;
    }
    series.points.push(point);
    if (this.byStep && !hasStep(point)) this.rebuild();
    else this.put(index, this.byStep ? step : series.points.length, value);
    return true;
  }

  put(index, x, value) {
    let at = this.slot.get(x);
    if (at === undefined) {
      if (this.xs.length && x < this.xs[this.xs.length - 1]) {
        this.rebuild(); // out of order: rare, the point is already in its series
        return;
      }
      at = this.xs.push(x) - 1;
      this.slot.set(x, at);
      for (const ys of this.ys) ys.push(null);
    }
    this.ys[index][at] = value; // a second value at the same step replaces the first
  }

  rebuild() {
    this.byStep = this.series.every((series) => series.points.every(hasStep));
    const xOf = (point, i) => (this.byStep ? point.step : i + 1);
    const xs = new Set(this.series.flatMap((series) => series.points.map(xOf)));
    this.xs = [...xs].sort((a, b) => a - b);
    this.slot = new Map(this.xs.map((x, i) => [x, i]));
    this.ys = this.series.map((series) => {
      const ys = new Array(this.xs.length).fill(null);
      series.points.forEach((point, i) => {
        ys[this.slot.get(xOf(point, i))] = point.value;
      });
      return ys;
    });
  }
}

/** Every chart of one run, in the order their metric names were first reported. */
export class MetricCharts {
  constructor() {
    this.charts = new Map(); // name -> MetricChart
    this.lastId = 0;
  }

  /**
   * Add a `run.metric` event (`id`: its event id; an id seen before is skipped, the run's
   * stream sends ids in ascending order). Returns the charts it changed.
   */
  add(id, event) {
    const changed = new Set();
    if (id <= this.lastId) return changed;
    this.lastId = id;
    const payload = event.payload || {};
    const category = String(payload.category ?? "default");
    for (const [name, value] of Object.entries(payload.values || {})) {
      if (typeof value !== "number" || !Number.isFinite(value)) continue;
      let chart = this.charts.get(name);
      if (!chart) {
        chart = new MetricChart(name);
        this.charts.set(name, chart);
      }
      if (chart.add(category, event.attempt, payload.step ?? null, value)) changed.add(chart);
    }
    return changed;
  }
}
