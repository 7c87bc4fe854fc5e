// DOM helpers. Every API string reaches the page as text (text nodes, textContent), never as
// HTML: `h` turns strings into text nodes and sets attributes one by one.

/** An element with attributes and children; strings become text nodes (never HTML). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Replace an element's children (strings as text). */
export function replace(el, ...children) {
  el.replaceChildren();
  appendAll(el, children);
}

/** A table header row of column names. */
export function headRow(...names) {
  return h("thead", {}, h("tr", {}, names.map((t) => h("th", { scope: "col" }, t))));
}

export function stateBadge(state, id) {
  return h("span", { class: "badge", "data-state": state, id }, state);
}

export function progressBar(label) {
  const fill = h("span", { class: "fill" });
  return h(
    "span",
    {
      class: "bar",
      role: "progressbar",
      "aria-label": label,
      "aria-valuemin": 0,
      "aria-valuemax": 100,
      "aria-valuenow": 0,
    },
    fill,
  );
}

export function setBar(bar, percent, state) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  bar.setAttribute("aria-valuenow", value.toFixed(1));
  bar.setAttribute("aria-valuetext", `${value.toFixed(0)}%`);
  bar.dataset.state = state || "";
  bar.firstChild.style.width = `${value}%`; // CSSOM, allowed by the style-src policy
}

export function jsonBlock(value, label) {
  return h(
    "pre",
    { class: "json", tabindex: 0, "aria-label": label },
    JSON.stringify(value, null, 2),
  );
}
