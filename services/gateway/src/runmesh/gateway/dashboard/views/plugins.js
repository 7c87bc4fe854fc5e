// The plugins list (#/plugins): every announced or published plugin, filtered by category.

import { api } from "../api.js";
import { h, headRow, replace } from "../dom.js";
import { pluginHref } from "../format.js";
import { viewRoot } from "../shell.js";

function pluginRow(plugin) {
  return h(
    "tr",
    { "data-plugin": plugin.code },
    h("td", {}, h("a", { href: pluginHref(plugin.code) }, plugin.code)),
    h("td", {}, plugin.name),
    h("td", {}, plugin.category),
    h(
      "td",
      {},
      plugin.latest_version,
      plugin.builtin ? h("span", { class: "tag" }, "built-in") : null,
    ),
    h("td", {}, (plugin.actions || []).join(", ")),
    h("td", { class: "desc" }, plugin.description || ""),
  );
}

/** Every plugin (of `category`, if given), following GET /v1/plugins's pages. */
async function allPlugins(category, signal) {
  const plugins = [];
  let cursor = null;
  do {
    const params = new URLSearchParams({ limit: "200" });
    if (category) params.set("category", category);
    if (cursor) params.set("cursor", cursor);
    const page = await api(`/v1/plugins?${params}`, { signal });
    plugins.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return plugins;
}

export function renderPlugins(view, query) {
  const signal = view.signal;
  let category = query.get("category") || "";
  const select = h(
    "select",
    { id: "filter-plugin-category" },
    h("option", { value: "" }, "any category"),
  );
  const tbody = h("tbody");
  const empty = h(
    "p",
    { class: "empty", hidden: true },
    "No plugins. Workers announce theirs when they start.",
  );
  replace(
    viewRoot(),
    h("h1", {}, "Plugins"),
    h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter plugins" },
      h("label", { for: "filter-plugin-category" }, "Category"),
      select,
    ),
    h(
      "table",
      { class: "plugins" },
      headRow("Plugin", "Name", "Category", "Latest", "Actions", "Description"),
      tbody,
    ),
    empty,
  );

  async function load() {
    const plugins = await allPlugins(category, signal);
    replace(tbody, plugins.map(pluginRow));
    empty.hidden = plugins.length > 0;
  }

  select.addEventListener("change", () => {
    category = select.value;
    const hash = category ? `#/plugins?category=${encodeURIComponent(category)}` : "#/plugins";
    history.replaceState(null, "", hash);
    load().catch((error) => view.fail(error, "the plugins"));
  });

  (async () => {
    try {
      const all = await allPlugins("", signal);
      const categories = [
        ...new Set([...all.map((p) => p.category), category].filter(Boolean)),
      ].sort();
      for (const name of categories) select.append(h("option", { value: name }, name));
      select.value = category;
      await load();
    } catch (error) {
      view.fail(error, "the plugins");
    }
  })();
}
