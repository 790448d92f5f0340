// Sign in: OAuth2 client credentials (client id + secret) or a personal API key.

import { signInWithClient, signInWithKey } from "../api.js";
import { bolt, h } from "../dom.js";

export function render({ notice, onSignedIn }) {
  let mode = "client";
  const error = h("div.error-text", { role: "alert", id: "login-error" });
  const clientId = h("input#client-id", { name: "client_id", autocomplete: "username", spellcheck: false, placeholder: "cl_…" });
  const secret = h("input#client-secret", { name: "client_secret", type: "password", autocomplete: "current-password" });
  const key = h("input#api-key", { name: "api_key", type: "password", autocomplete: "off", placeholder: "aglk_…" });
  const clientFields = h("div", h("label", { for: "client-id" }, "Client id"), clientId, h("label", { for: "client-secret" }, "Client secret"), secret);
  const keyFields = h("div.hidden", h("label", { for: "api-key" }, "Personal API key"), key);
  const submit = h("button.primary#sign-in", { type: "submit" }, "Sign in");
  const tabClient = h("button.on", { type: "button", dataset: { mode: "client" } }, "Client credentials");
  const tabKey = h("button", { type: "button", dataset: { mode: "key" } }, "API key");

  function choose(next) {
    mode = next;
    tabClient.classList.toggle("on", mode === "client");
    tabKey.classList.toggle("on", mode === "key");
    clientFields.classList.toggle("hidden", mode !== "client");
    keyFields.classList.toggle("hidden", mode !== "key");
    error.textContent = "";
    (mode === "client" ? clientId : key).focus();
  }
  tabClient.addEventListener("click", () => choose("client"));
  tabKey.addEventListener("click", () => choose("key"));

  const form = h(
    "form",
    {
      onsubmit: async (ev) => {
        ev.preventDefault();
        error.textContent = "";
        submit.disabled = true;
        submit.textContent = "Signing in…";
        try {
          if (mode === "client") await signInWithClient(clientId.value.trim(), secret.value);
          else await signInWithKey(key.value.trim());
          secret.value = "";
          key.value = "";
          onSignedIn();
        } catch (err) {
          error.textContent = err.code === "invalid_client" ? "Unknown client or wrong secret." : err.message;
          submit.disabled = false;
          submit.textContent = "Sign in";
        }
      },
    },
    h("div.segmented.tabs", tabClient, tabKey),
    clientFields,
    keyFields,
    submit,
    error,
  );
  const card = h(
    "div.panel.login",
    h("div.brand", bolt(32), h("div", h("b", { style: { fontSize: "18px" } }, "agent-lightning"), h("small", "Sign in to the dashboard"))),
    notice ? h("div.note.warn", { style: { marginBottom: "8px" } }, notice) : null,
    form,
    h(
      "div.foot",
      "Use the id and secret of a client with the Analyst, Developer or AgentAdmin role (",
      h("code", "agent-lightning clients create --app <app> --role Analyst"),
      "), or a personal API key. The access token is kept in this browser tab only.",
    ),
  );
  setTimeout(() => clientId.focus(), 0);
  return h("div.login-wrap", card);
}
