// The REST API, with the signed-in user's bearer token. The token lives in sessionStorage: it
// survives a reload but not closing the tab, and no other site can read it. The secret a user
// typed is never stored; when the token expires, they sign in again.

const KEY = "agl.session";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onSignedOut = () => {};

export function setSignedOutHandler(fn) {
  onSignedOut = fn;
}

export function currentSession() {
  try {
    const raw = sessionStorage.getItem(KEY);
    const session = raw ? JSON.parse(raw) : null;
    if (session && session.expires_at && session.expires_at < Date.now()) {
      sessionStorage.removeItem(KEY);
      return null;
    }
    return session;
  } catch {
    return null;
  }
}

export function signOut(reason) {
  sessionStorage.removeItem(KEY);
  onSignedOut(reason || "");
}

async function errorFrom(response) {
  let code = "error";
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error === "object") {
      code = body.error.code || code;
      message = body.error.message || message;
    } else if (body && body.error) {
      code = body.error;
      message = body.error_description || message;
    }
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(response.status, code, message);
}

/** Call the API: api("/v1/policies", {params: {limit: 10}}) or {method: "PUT", body: {...}}. */
export async function api(path, { method = "GET", params, body, token } = {}) {
  const session = currentSession();
  const bearer = token || (session && session.token);
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  const headers = { Accept: "application/json" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  if (response.status === 401 && !token) {
    signOut("Your session has ended. Sign in again to continue.");
    throw await errorFrom(response);
  }
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

async function finish(token, kind, expiresIn) {
  const me = await api("/v1/me", { token });
  // End the session a little before the token does (clock skew, requests in flight), but by at
  // most a tenth of its lifetime: a fixed 15 s would end a short-lived token's session at once.
  const margin = Math.min(15, expiresIn * 0.1);
  const session = {
    token,
    kind,
    me,
    expires_at: expiresIn ? Date.now() + (expiresIn - margin) * 1000 : null,
  };
  sessionStorage.setItem(KEY, JSON.stringify(session));
  return session;
}

/** OAuth2 client credentials: client id and secret for a short-lived bearer token. */
export async function signInWithClient(clientId, clientSecret) {
  const form = new URLSearchParams({
    grant_type: "client_credentials",
    client_id: clientId,
    client_secret: clientSecret,
  });
  const response = await fetch("/v1/oauth/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: form,
    credentials: "omit",
  });
  if (!response.ok) throw await errorFrom(response);
  const token = await response.json();
  return finish(token.access_token, "client", token.expires_in);
}

/** A personal API key (aglk_...), sent as the bearer token itself. */
export async function signInWithKey(key) {
  if (!key.startsWith("aglk_")) {
    throw new ApiError(400, "invalid_key", "an API key starts with aglk_");
  }
  return finish(key, "api_key", null);
}

// What each role may do: mirrors security/rbac.py so the page hides what a role cannot use.
// The server decides; this only keeps buttons that would answer 403 off the screen.
const ROLE_PERMISSIONS = {
  AgentAdmin: "*",
  Developer: [
    "telemetry:read", "policy:read", "task:read", "task:run", "metrics:read", "settings:read",
    "policy:write",
  ],
  Analyst: ["telemetry:read", "policy:read", "task:read", "metrics:read", "settings:read"],
  Agent: [],
};

export function can(permission) {
  const session = currentSession();
  const roles = (session && session.me && session.me.roles) || [];
  return roles.some((role) => {
    const granted = ROLE_PERMISSIONS[role];
    return granted === "*" || (granted || []).includes(permission);
  });
}
