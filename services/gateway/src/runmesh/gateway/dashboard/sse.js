// The one Server-Sent Events reader of the dashboard. Streams are read with fetch() because
// EventSource cannot send the Authorization header the gateway requires; reconnects resume
// with Last-Event-ID, after the server's `retry:` delay.

import { ApiError, Unauthorized, authorizedFetch } from "./api.js";
import { sleep } from "./format.js";
import { announce } from "./shell.js";

/**
 * Parses `text/event-stream` text fed in chunks into messages `{id, event, data}` (data as
 * parsed JSON; a message whose data is not JSON is skipped). `lastId` is the id to resume
 * after; `retryMs` the server's reconnect delay.
 */
export class SseParser {
  constructor() {
    this.lastId = null;
    this.retryMs = 2000;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.data = [];
    this.id = null;
    this.event = "message";
  }

  /** The complete messages in `chunk` (with what earlier chunks left unfinished). */
  feed(chunk) {
    const messages = [];
    const lines = (this.buffer + chunk).split("\n");
    this.buffer = lines.pop();
    for (const raw of lines) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (line === "") {
        const message = this.dispatch();
        if (message) messages.push(message);
      } else if (!line.startsWith(":")) {
        this.field(line); // a line starting with ":" is a comment: the heartbeat
      }
    }
    return messages;
  }

  field(line) {
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "data") this.data.push(text);
    else if (name === "id") this.id = text;
    else if (name === "event") this.event = text;
    else if (name === "retry" && /^\d+$/.test(text)) this.retryMs = Number(text);
  }

  dispatch() {
    const { id, event, data } = this;
    this.reset();
    if (id !== null) this.lastId = id;
    if (!data.length) return null;
    try {
      return { id, event, data: JSON.parse(data.join("\n")) };
    } catch {
      return null;
    }
  }
}

async function openStream(path, lastId, signal) {
  const headers = { Accept: "text/event-stream" };
  if (lastId !== null) headers["Last-Event-ID"] = lastId;
  const response = await authorizedFetch(path, { headers, signal, cache: "no-store" });
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      // keep null
    }
    throw new ApiError(response.status, problem);
  }
  return response.body.pipeThrough(new TextDecoderStream()).getReader();
}

/**
 * Follow an SSE stream: call `onEvent` for each message, `onOpen` on each (re)connect and
 * `onClose` when a connection ends. `done()` says whether a stream that the server ended is
 * finished for good (a run's terminal event); otherwise, and after network errors, it
 * reconnects until `signal` aborts. A refusal other than 5xx stops it, said on the status line.
 */
export async function followEvents(path, { signal, onEvent, onOpen, onClose, done = () => false }) {
  const parser = new SseParser();
  while (!signal.aborted) {
    try {
      const reader = await openStream(path, parser.lastId, signal);
      parser.buffer = "";
      parser.reset();
      onOpen?.();
      for (;;) {
        const { value, done: finished } = await reader.read();
        if (finished) break;
        for (const message of parser.feed(value)) {
          try {
            onEvent(message);
          } catch (error) {
            console.error("could not show an event", error);
          }
        }
      }
      onClose?.();
      if (done()) return;
    } catch (error) {
      if (signal.aborted || error instanceof Unauthorized) return;
      onClose?.(error);
      if (error instanceof ApiError && error.status !== 503 && error.status < 500) {
        announce(`Live updates stopped: ${error.message}`, "error");
        return;
      }
    }
    await sleep(parser.retryMs, signal);
  }
}
