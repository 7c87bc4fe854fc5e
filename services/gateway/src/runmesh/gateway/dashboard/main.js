// The dashboard's entry module (index.html loads it): a small single-page app over the
// gateway's /v1 API, as native ES modules with no build step. It wires the sign-in form and
// Sign out, what a refused token does, and the router.

import { clearToken, onUnauthorized, setToken } from "./api.js";
import { $, replace } from "./dom.js";
import { closeView, route } from "./router.js";
import { announce, showLogin, viewRoot } from "./shell.js";

function signOut(message) {
  clearToken();
  closeView();
  replace(viewRoot());
  showLogin(message || "");
}

onUnauthorized(signOut);

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("#token-input").value.trim();
  if (!token) return;
  setToken(token);
  $("#login-error").textContent = "";
  route();
});
$("#sign-out").addEventListener("click", () => {
  signOut("");
  announce("Signed out: the token was removed from this browser.");
});
window.addEventListener("hashchange", route);
route(); // a module runs once the document is parsed
