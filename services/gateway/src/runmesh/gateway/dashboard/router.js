// Routes in the URL's fragment (#/runs, #/runs/{id}, #/plugins, #/plugins/{code},
// #/models/{id}, #/schedules): each
// hash change closes the page on screen and opens the one it names, or the sign-in form
// when there is no token.

import { getToken } from "./api.js";
import { replace } from "./dom.js";
import { hideLogin, loginMessage, showLogin, viewRoot } from "./shell.js";
import { View } from "./view.js";
import { renderModel } from "./views/model.js";
import { renderPlugin } from "./views/plugin.js";
import { renderPlugins } from "./views/plugins.js";
import { renderRun } from "./views/run/page.js";
import { renderRuns } from "./views/runs.js";
import { renderSchedules } from "./views/schedules.js";

let current = null; // the View on screen

/** Close the page on screen (its requests, streams and timers). */
export function closeView() {
  current?.close();
  current = null;
}

/** `#/section/id?query` as {section: "runs" | "plugins" | "models" | "schedules", id, query}. */
export function parseHash(hash) {
  const [path, search] = (hash.replace(/^#/, "") || "/runs").split("?");
  const parts = path
    .split("/")
    .filter(Boolean)
    .map((part) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return part;
      }
    });
  const section = ["plugins", "models", "schedules"].includes(parts[0]) ? parts[0] : "runs";
  return { section, id: parts[1] || null, query: new URLSearchParams(search || "") };
}

export function route() {
  closeView();
  if (!getToken()) {
    replace(viewRoot());
    showLogin(loginMessage());
    return;
  }
  hideLogin();
  const { section, id, query } = parseHash(location.hash);
  current = new View();
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (section === "models" && id) renderModel(current, id);
  else if (section === "plugins" && id) renderPlugin(current, id);
  else if (section === "plugins") renderPlugins(current, query);
  else if (section === "schedules") renderSchedules(current);
  else if (id) renderRun(current, id);
  else renderRuns(current, query);
  document.title = `runmesh – ${id ? `${section} / ${id}` : section}`;
}
