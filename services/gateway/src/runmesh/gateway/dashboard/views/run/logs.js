// The run page's log: lines in event order (the first page of GET /logs and the stream may
// interleave), filtered by level, at most MAX_LOG_LINES kept, following the bottom.

import { h } from "../../dom.js";

export const LEVELS = ["debug", "info", "warning", "error", "success"];
const MAX_LOG_LINES = 5000;

/** A log entry of a `run.log` stream message. */
export function logEntry(message) {
  const event = message.data;
  const payload = event.payload || {};
  return {
    id: Number(message.id),
    attempt: event.attempt,
    ts: event.ts,
    level: payload.level || "info",
    message: String(payload.message ?? ""),
    code: payload.code || null,
  };
}

export function createLogs() {
  const shown = new Set(LEVELS);
  const ids = new Set();
  const levels = h("fieldset", { class: "levels" }, h("legend", {}, "Levels"));
  const lines = h("div", { class: "logs", id: "logs", role: "log", "aria-label": "Log lines" });
  const note = h("p", { class: "muted", hidden: true });
  const section = h(
    "section",
    { "aria-labelledby": "logs-title" },
    h("div", { class: "title-row" }, h("h2", { id: "logs-title" }, "Logs"), levels),
    note,
    lines,
  );

  for (const level of LEVELS) {
    const id = `level-${level}`;
    const box = h("input", { type: "checkbox", id, checked: true, value: level });
    box.addEventListener("change", () => {
      if (box.checked) shown.add(level);
      else shown.delete(level);
      for (const line of lines.children) line.hidden = !shown.has(line.dataset.level);
    });
    levels.append(h("label", { for: id, class: `lvl lvl-${level}` }, box, level));
  }

  /** Add one entry `{id, attempt, ts, level, message, code}` (once per id). */
  function add(entry) {
    if (ids.has(entry.id)) return;
    ids.add(entry.id);
    const level = LEVELS.includes(entry.level) ? entry.level : "info";
    const line = h(
      "div",
      { class: "line", "data-level": level, "data-id": entry.id },
      h("time", { datetime: entry.ts, title: entry.ts }, new Date(entry.ts).toLocaleTimeString()),
      h("span", { class: `lvl lvl-${level}` }, level),
      entry.code ? h("span", { class: "code" }, entry.code) : null,
      entry.attempt > 1 ? h("span", { class: "muted" }, `#${entry.attempt}`) : null,
      h("span", { class: "msg" }, entry.message),
    );
    line.hidden = !shown.has(level);
    // keep event order (the stream and the first page may interleave)
    let before = null;
    for (let node = lines.lastElementChild; node; node = node.previousElementSibling) {
      if (Number(node.dataset.id) < entry.id) break;
      before = node;
    }
    const atBottom = lines.scrollTop + lines.clientHeight >= lines.scrollHeight - 8;
    lines.insertBefore(line, before);
    while (lines.childElementCount > MAX_LOG_LINES) {
      lines.firstElementChild.remove();
      note.hidden = false;
      note.textContent = `Showing the latest ${MAX_LOG_LINES} lines.`;
    }
    if (atBottom) lines.scrollTop = lines.scrollHeight;
  }

  return { section, add };
}
