// One plugin's page (#/plugins/{code}): its versions, newest first, each with its actions'
// params (a table and the JSON Schema), progress and metrics categories.

import { api } from "../api.js";
import { h, headRow, jsonBlock, replace } from "../dom.js";
import { ago, declaredOrder } from "../format.js";
import { viewRoot } from "../shell.js";

function typeOf(prop) {
  if (prop.type) return Array.isArray(prop.type) ? prop.type.join(" | ") : prop.type;
  const options = prop.anyOf || prop.oneOf;
  if (options)
    return options.map((o) => o.type || (o.$ref ? o.$ref.split("/").pop() : "?")).join(" | ");
  if (prop.$ref) return prop.$ref.split("/").pop();
  return "any";
}

/** A params JSON Schema's top-level properties as a table (null when it has none). */
function schemaFields(schema) {
  const properties = schema && typeof schema === "object" ? schema.properties || {} : {};
  const required = new Set(schema?.required || []);
  const names = Object.keys(properties);
  if (!names.length) return null;
  return h(
    "table",
    { class: "fields params" },
    headRow("Param", "Type", "Required", "Default", "Description"),
    h(
      "tbody",
      {},
      names.map((name) => {
        const prop = properties[name] || {};
        return h(
          "tr",
          {},
          h("th", { scope: "row", class: "mono" }, name),
          h("td", {}, typeOf(prop), prop.format ? ` (${prop.format})` : ""),
          h("td", {}, required.has(name) ? "yes" : "no"),
          h("td", { class: "mono" }, "default" in prop ? JSON.stringify(prop.default) : "–"),
          h("td", {}, prop.description || prop.title || ""),
        );
      }),
    ),
  );
}

function progressCategories(categories) {
  const entries = declaredOrder(categories).map((name) => [name, categories[name]]);
  if (!entries.length) return null;
  return [
    h("h3", {}, "Progress categories"),
    h(
      "table",
      { class: "fields progress-categories" },
      headRow("Category", "Description", "Proportion"),
      h(
        "tbody",
        {},
        entries.map(([name, info]) =>
          h(
            "tr",
            {},
            h("th", { scope: "row", class: "mono" }, name),
            h("td", {}, info?.description || ""),
            h("td", { class: "num" }, info?.proportion ?? "–"),
          ),
        ),
      ),
    ),
  ];
}

function metricsCategories(categories) {
  const entries = Object.entries(categories || {});
  if (!entries.length) return null;
  return [
    h("h3", {}, "Metrics categories"),
    h(
      "ul",
      {},
      entries.map(([name, info]) =>
        h(
          "li",
          {},
          h("span", { class: "mono" }, name),
          info?.description ? ` – ${info.description}` : "",
        ),
      ),
    ),
  ];
}

function actionArticle(name, action) {
  return h(
    "article",
    { class: "action", "data-action": name },
    h("h2", {}, name, h("span", { class: "tag" }, action.method)),
    action.description ? h("p", {}, action.description) : null,
    progressCategories(action.progress_categories),
    metricsCategories(action.metrics_categories),
    h("h3", {}, "Params"),
    schemaFields(action.params_schema),
    h(
      "details",
      { class: "schema" },
      h("summary", {}, "JSON schema"),
      jsonBlock(action.params_schema, `Params JSON schema of ${name}`),
    ),
  );
}

function versionDetails(plugin, version) {
  const latest = version.version === plugin.latest_version;
  return h(
    "details",
    { class: "version", open: latest, "data-version": version.version },
    h(
      "summary",
      {},
      h("strong", {}, `${plugin.code}@${version.version}`),
      latest ? h("span", { class: "tag" }, "latest") : null,
      version.published ? h("span", { class: "tag" }, "published") : null,
      version.announced_at
        ? h("span", { class: "muted" }, ` announced ${ago(version.announced_at)}`)
        : null,
    ),
    version.data_types?.length ? h("p", {}, "Data types: ", version.data_types.join(", ")) : null,
    version.annotation_types?.length
      ? h("p", {}, "Annotation types: ", version.annotation_types.join(", "))
      : null,
    Object.entries(version.actions || {}).map(([name, action]) => actionArticle(name, action)),
  );
}

/** Who serves the category: its live workers and their pools, or why its runs would wait. */
function servedBy(category, workers) {
  if (!workers.length)
    return h(
      "p",
      { id: "served-by", class: "warning" },
      `No live worker serves ${category}: its runs wait queued until one starts `,
      h("span", { class: "mono" }, `(runmesh worker --category ${category})`),
      ".",
    );
  const pools = [...new Set(workers.map((w) => w.pool))].sort();
  const slots = workers.reduce((sum, w) => sum + w.slots, 0);
  const busy = workers.reduce((sum, w) => sum + w.busy, 0);
  const count = `${workers.length} live worker${workers.length === 1 ? "" : "s"}`;
  return h(
    "p",
    { id: "served-by" },
    `Served by ${count} (pool${pools.length === 1 ? "" : "s"} ${pools.join(", ")}), `,
    `${busy} of ${slots} slots busy.`,
  );
}

export function renderPlugin(view, code) {
  const root = viewRoot();
  replace(root, h("p", { class: "muted" }, "Loading…"));
  (async () => {
    let plugin;
    let workers = null;
    try {
      plugin = await api(`/v1/plugins/${encodeURIComponent(code)}`, { signal: view.signal });
      const served = await api(`/v1/workers?category=${encodeURIComponent(plugin.category)}`, {
        signal: view.signal,
      }).catch(() => null); // the page is still worth showing without it
      workers = served?.items ?? null;
    } catch (error) {
      view.fail(error, `Plugin ${code}`);
      return;
    }
    if (view.closed) return;
    const versions = [...(plugin.versions || [])].reverse(); // newest first
    replace(
      root,
      h("p", { class: "crumbs" }, h("a", { href: "#/plugins" }, "Plugins"), " / ", plugin.code),
      h(
        "div",
        { class: "title-row" },
        h("h1", {}, plugin.name),
        h("span", { class: "tag" }, plugin.category),
        plugin.builtin ? h("span", { class: "tag" }, "built-in") : null,
      ),
      h("p", {}, plugin.description || ""),
      workers ? servedBy(plugin.category, workers) : null,
      h(
        "p",
        {},
        h(
          "a",
          { href: `#/runs?plugin=${encodeURIComponent(plugin.code)}` },
          `Runs of ${plugin.code}`,
        ),
      ),
      versions.map((version) => versionDetails(plugin, version)),
    );
    // Open the latest version's schemas: submissions are checked against them.
    for (const details of root.querySelectorAll("details.version[open] details.schema"))
      details.open = true;
  })();
}
