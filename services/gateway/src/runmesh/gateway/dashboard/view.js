// The life of one page on screen: its abort signal, its timers, throttled refreshes and its
// failure message. The router closes a view when the user goes elsewhere.

import { ApiError, quiet } from "./api.js";
import { h, replace } from "./dom.js";
import { viewRoot } from "./shell.js";

export class View {
  constructor() {
    this.controller = new AbortController();
    this.signal = this.controller.signal;
    this.timers = [];
  }

  get closed() {
    return this.signal.aborted;
  }

  close() {
    this.controller.abort();
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
  }

  /** Run `fn` every `ms` while the view is open. */
  every(ms, fn) {
    this.timers.push(setInterval(fn, ms));
  }

  /**
   * A per-key throttle: `schedule(key)` runs `fn(key)` soon, at most once per `ms` per key,
   * and always once more after the last call (so the latest state is never missed).
   */
  throttle(ms, fn) {
    const pending = new Set();
    const last = new Map();
    return (key) => {
      if (pending.has(key)) return;
      pending.add(key);
      const wait = Math.max(0, ms - (Date.now() - (last.get(key) || 0)));
      setTimeout(async () => {
        pending.delete(key);
        last.set(key, Date.now());
        if (this.closed) return;
        try {
          await fn(key);
        } catch (error) {
          if (!quiet(error)) console.warn("refresh failed", error);
        }
      }, wait);
    };
  }

  /** Replace the page with what could not be loaded (unless signed out or left). */
  fail(error, what) {
    if (quiet(error) || this.closed) return;
    const message =
      error instanceof ApiError && error.status === 404
        ? `${what} not found (or it belongs to another tenant).`
        : `Could not load ${what}: ${error.message}`;
    replace(viewRoot(), h("p", { class: "error", role: "alert" }, message));
  }
}
