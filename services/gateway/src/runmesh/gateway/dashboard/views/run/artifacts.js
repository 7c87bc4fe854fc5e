// The run page's artifacts: each with its URI to copy, and Download for http(s) URIs or for
// files of the platform bucket (streamed by the gateway); the latest few, the rest on demand.

import { authorizedFetch, problemDetail, quiet } from "../../api.js";
import { $, h } from "../../dom.js";
import { bytes } from "../../format.js";
import { announce } from "../../shell.js";

// A training run reports a checkpoint per epoch: show the latest few, the rest on demand.
const SHOWN_ARTIFACTS = 8;

async function download(url, fileName) {
  try {
    const response = await authorizedFetch(url);
    if (!response.ok) {
      announce(`Cannot download: ${(await problemDetail(response)) || response.status}`, "error");
      return;
    }
    const blob = URL.createObjectURL(await response.blob());
    const anchor = h("a", { href: blob, download: fileName });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(blob), 60_000);
    announce(`Downloaded ${fileName}.`);
  } catch (error) {
    if (!quiet(error)) announce(`Cannot download: ${error}`, "error");
  }
}

function downloadControl(uri, payload, gatewayUrl) {
  let url;
  try {
    url = new URL(uri);
  } catch {
    return null;
  }
  if (url.protocol === "https:" || url.protocol === "http:")
    return h("a", { href: url.href, download: "", rel: "noopener noreferrer" }, "Download");
  if (url.protocol === "s3:" && payload.media_type !== "inode/directory") {
    // Through the gateway, which streams files of its platform bucket (a 409 otherwise).
    const button = h("button", { type: "button", class: "small download" }, "Download");
    button.addEventListener("click", () =>
      download(gatewayUrl, uri.split("/").pop() || "artifact"),
    );
    return button;
  }
  return null;
}

function copyControl(uri, field) {
  const copy = h("button", { type: "button", class: "small" }, "Copy URI");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(uri);
    } catch {
      field.select(); // no clipboard API (plain http): leave it selected for Ctrl-C
      document.execCommand?.("copy");
    }
    announce("URI copied.");
  });
  return copy;
}

/** The artifacts of the run at API path `path`. */
export function createArtifacts(path) {
  const list = h(
    "ul",
    { class: "artifacts collapsed", id: "artifacts" },
    h("li", { class: "muted empty-item" }, "No artifacts."),
  );
  const toggle = h("button", { type: "button", class: "small", id: "all-artifacts", hidden: true });
  const section = h(
    "section",
    { "aria-labelledby": "artifacts-title" },
    h("h2", { id: "artifacts-title" }, "Artifacts"),
    list,
    toggle,
  );
  const ids = new Set();

  function updateToggle() {
    const count = list.querySelectorAll("li:not(.empty-item)").length;
    toggle.hidden = count <= SHOWN_ARTIFACTS;
    toggle.textContent = list.classList.contains("collapsed")
      ? `Show all ${count} artifacts`
      : `Show the latest ${SHOWN_ARTIFACTS}`;
  }

  toggle.addEventListener("click", () => {
    list.classList.toggle("collapsed");
    updateToggle();
  });

  /** Add the artifact of a `run.artifact` stream message (once per event id). */
  function add(message) {
    if (ids.has(message.id)) return;
    ids.add(message.id);
    const payload = message.data.payload || {};
    const uri = String(payload.uri || "");
    const gatewayUrl = `${path}/artifacts/${encodeURIComponent(message.id)}`;
    const field = h("input", {
      type: "text",
      readonly: true,
      value: uri,
      class: "uri mono",
      "aria-label": `URI of ${payload.name || "artifact"}`,
    });
    const about = [
      bytes(payload.size),
      payload.media_type,
      message.data.attempt > 1 ? `attempt ${message.data.attempt}` : null,
    ];
    $(".empty-item", list)?.remove();
    list.append(
      h(
        "li",
        { "data-name": payload.name || "" },
        h("strong", {}, payload.name || "(unnamed)"),
        h("span", { class: "muted" }, about.filter(Boolean).join(" · ")),
        field,
        copyControl(uri, field),
        downloadControl(uri, payload, gatewayUrl),
        payload.checksum
          ? h(
              "span",
              { class: "muted small mono", title: "checksum" },
              String(payload.checksum),
            )
          : null,
      ),
    );
    updateToggle();
  }

  return { section, add };
}
