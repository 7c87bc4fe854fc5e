// The gateway's /v1 API: the token (kept in local storage), JSON calls, authorized fetches.
// A 401 anywhere calls the handler main.js registers (sign out, back to the form).

const TOKEN_KEY = "runmesh.token";

export const getToken = () => localStorage.getItem(TOKEN_KEY);
export const setToken = (token) => localStorage.setItem(TOKEN_KEY, token);
export const clearToken = () => localStorage.removeItem(TOKEN_KEY);

/** Thrown after the gateway refused the token (the page has already signed out). */
export class Unauthorized extends Error {}

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && typeof problem === "object" ? problem.detail : problem;
    super(detail ? String(detail) : `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let onRefused = () => {};

/** What to do when the gateway refuses the token: `handler(message)`. */
export function onUnauthorized(handler) {
  onRefused = handler;
}

export function authHeaders(extra) {
  return { Authorization: `Bearer ${getToken() || ""}`, ...extra };
}

/** The problem's `detail` of a response, or "" when it is not problem+json. */
export async function problemDetail(response) {
  try {
    return (await response.json()).detail || "";
  } catch {
    return ""; // not problem+json: the caller keeps its generic message
  }
}

/** fetch() with the token; a 401 signs out and throws Unauthorized. */
export async function authorizedFetch(path, init = {}) {
  const response = await fetch(path, { ...init, headers: authHeaders(init.headers) });
  if (response.status === 401) {
    const detail = await problemDetail(response);
    onRefused(`The gateway refused the token: ${detail || "401 Unauthorized"}. Sign in again.`);
    throw new Unauthorized(detail);
  }
  return response;
}

/** A JSON call to the gateway; a 401 signs out, other errors throw ApiError. */
export async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (signal) init.signal = signal;
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await authorizedFetch(path, init);
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Whether an error is one the user has already been shown (signed out) or caused (left). */
export const quiet = (error) => error instanceof Unauthorized || error?.name === "AbortError";
