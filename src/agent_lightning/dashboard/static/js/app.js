// The dashboard's shell: sign-in, navigation by role, and a hash router over the views.

import { can, currentSession, setSignedOutHandler, signOut } from "./api.js";
import { bolt, clear, h, icon } from "./dom.js";
import * as audit from "./views/audit.js";
import * as learning from "./views/learning.js";
import * as login from "./views/login.js";
import * as overview from "./views/overview.js";
import * as rollouts from "./views/rollouts.js";
import * as sessions from "./views/sessions.js";

const VIEWS = [
  { path: "overview", title: "Overview", icon: "overview", needs: "metrics:read", view: overview },
  { path: "learning", title: "Learning", icon: "learning", needs: "task:read", view: learning },
  { path: "rollouts", title: "Rollouts", icon: "rollouts", needs: "policy:read", view: rollouts },
  { path: "sessions", title: "Sessions", icon: "sessions", needs: "telemetry:read", view: sessions },
  { path: "audit", title: "Audit log", icon: "audit", needs: "audit:read", view: audit },
];

const root = document.getElementById("app");
let cleanup = null;
let signOutNotice = "";

function decodeSegment(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment; // a malformed %-escape (typed or truncated): keep the segment as it is
  }
}

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const [name, ...rest] = path.split("/");
  return {
    name: name || "",
    rest: rest.map(decodeSegment),
    params: Object.fromEntries(new URLSearchParams(query)),
  };
}

export function navigate(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

function allowedViews() {
  return VIEWS.filter((v) => can(v.needs));
}

function shell(active) {
  const session = currentSession();
  const me = session.me;
  const nav = h(
    "nav.nav",
    allowedViews().map((v) =>
      h(`a${v.path === active ? ".active" : ""}`, { href: `#/${v.path}`, dataset: { nav: v.path } }, icon(v.icon), v.title),
    ),
  );
  const expires = session.expires_at
    ? h("span.faint", { title: new Date(session.expires_at).toLocaleString() }, `session ends ${new Date(session.expires_at).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}`)
    : h("span.faint", "signed in with an API key");
  const main = h("main.main#main");
  const sidebar = h(
    "aside.sidebar",
    h("div.brand", bolt(), h("div", h("b", "agent-lightning"), h("small", `app · ${me.app}`))),
    nav,
    h(
      "div.who",
      h("span.subject", { title: "signed in as" }, me.subject),
      h("div", me.roles.map((r) => h("span.badge.role", { dataset: { role: r } }, r))),
      expires,
      h("button.small", { onclick: () => signOut(""), id: "sign-out" }, "Sign out"),
    ),
  );
  clear(root).append(h("div.shell", sidebar, main));
  root.classList.remove("booting");
  return main;
}

function noAccess(main) {
  const me = currentSession().me;
  main.append(
    h("div.page-head", h("div", h("h1", "Nothing to show for this identity"))),
    h(
      "div.panel",
      h("p", `Signed in as ${me.subject} with roles: ${me.roles.join(", ") || "none"}.`),
      h("p.muted", "The dashboard needs the Analyst, Developer or AgentAdmin role. Agents (role Agent) send telemetry but do not read it; ask an administrator for a personal key with a reading role."),
    ),
  );
}

async function route() {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* a view's timers are best-effort */
    }
    cleanup = null;
  }
  const session = currentSession();
  if (!session) {
    clear(root).append(login.render({ notice: signOutNotice, onSignedIn: () => navigate(`#/${(allowedViews()[0] || {}).path || "overview"}`) }));
    root.classList.remove("booting");
    signOutNotice = "";
    return;
  }
  const { name, rest, params } = parseHash();
  const views = allowedViews();
  const chosen = views.find((v) => v.path === name);
  if (!chosen) {
    if (views.length && name !== views[0].path) return navigate(`#/${views[0].path}`);
    return noAccess(shell(""));
  }
  const main = shell(chosen.path);
  document.title = `${chosen.title} · agent-lightning`;
  try {
    cleanup = (await chosen.view.render(main, { rest, params, navigate })) || null;
  } catch (err) {
    if (err && err.status === 401) return;
    main.append(h("div.note.bad", `Could not load this view: ${err && err.message ? err.message : err}`));
  }
}

setSignedOutHandler((reason) => {
  signOutNotice = reason;
  route();
});
window.addEventListener("hashchange", route);
route();
