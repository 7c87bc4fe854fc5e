// Formatting of times, durations, numbers and sizes, and the page's links.

import { h } from "./dom.js";

export const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];
export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export function ago(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 10) return "just now";
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function timeEl(iso) {
  if (!iso) return "–";
  return h("time", { datetime: iso, title: iso }, new Date(iso).toLocaleString());
}

export function number(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString();
  return Math.abs(value) >= 1000 || Math.abs(value) < 0.001
    ? value.toPrecision(4)
    : String(Math.round(value * 1000) / 1000);
}

export function bytes(size) {
  if (typeof size !== "number") return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

export const pluginCode = (plugin) => (plugin || "").split("@")[0];
export const shortId = (id) => String(id).slice(0, 8);
export const runHref = (id) => `#/runs/${encodeURIComponent(id)}`;
export const pluginHref = (code) => `#/plugins/${encodeURIComponent(code)}`;
export const modelHref = (id) => `#/models/${encodeURIComponent(id)}`;

/** A manifest's categories' names in the order the action declared them (their `order`: the
 * stored manifest keeps no key order); any without one last. */
export function declaredOrder(categories) {
  const rank = (name) => {
    const order = categories?.[name]?.order;
    return Number.isFinite(order) ? order : Number.MAX_SAFE_INTEGER;
  };
  return Object.keys(categories || {}).sort((a, b) => rank(a) - rank(b));
}

/** A link to a run's plugin page, with its version beside it (or a dash). */
export function pluginLink(run) {
  if (!run.plugin) return ["–"];
  const code = pluginCode(run.plugin);
  return [
    h("a", { href: pluginHref(code) }, code),
    run.plugin_version ? h("span", { class: "muted" }, `@${run.plugin_version}`) : null,
  ];
}

export function randomKey() {
  // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
  const buf = new Uint8Array(16);
  crypto.getRandomValues(buf);
  return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
