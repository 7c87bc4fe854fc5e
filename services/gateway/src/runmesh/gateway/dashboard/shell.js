// The page around the views (index.html): the status line, the live badge, the sign-in form.

import { $ } from "./dom.js";

let statusTimer = 0;

/** Tell the user (and screen readers: the region is aria-live) what just happened. */
export function announce(text, kind = "info") {
  const el = $("#status");
  el.textContent = text;
  el.dataset.kind = kind;
  clearTimeout(statusTimer);
  if (text) statusTimer = setTimeout(() => announce(""), 8000);
}

/** The live badge: "live", "reconnecting" (shown as such) or null (hidden). */
export function setLive(state) {
  const el = $("#live");
  el.hidden = state === null;
  el.dataset.state = state || "";
  el.textContent = state === "live" ? "live" : "reconnecting…";
}

export function showLogin(message) {
  $("#login").hidden = false;
  $("#nav").hidden = true;
  $("#sign-out").hidden = true;
  setLive(null);
  $("#login-error").textContent = message;
  const input = $("#token-input");
  input.value = "";
  input.setAttribute("aria-invalid", message ? "true" : "false");
  input.focus();
}

export function hideLogin() {
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#sign-out").hidden = false;
  $("#login-error").textContent = "";
}

/** The message the sign-in form shows now (kept when the page routes back to it). */
export const loginMessage = () => $("#login-error").textContent;

/** The element every view renders into. */
export const viewRoot = () => $("#view");
