// DOM and formatting helpers. Every piece of data reaches the page as text nodes (never as
// HTML), so whatever an agent or a user typed cannot run as markup in an operator's browser.

const SVG_NS = "http://www.w3.org/2000/svg";

/** h("div.card#main", {onclick, title, dataset: {...}}, child, "text", [more]) */
export function h(spec, attrs, ...children) {
  if (attrs === null || typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs)) {
    if (attrs !== undefined && attrs !== null) children.unshift(attrs);
    attrs = {};
  }
  const [tag, ...rest] = spec.split(/(?=[.#])/);
  const el = document.createElement(tag || "div");
  for (const part of rest) {
    if (part.startsWith(".")) el.classList.add(part.slice(1));
    else if (part.startsWith("#")) el.id = part.slice(1);
  }
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements: s("path", {d: "...", class: "line"}) */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "class") el.className = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// -- formatting ------------------------------------------------------------------------------

const intFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const numFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });

export function fmtInt(v) {
  return v === null || v === undefined ? "–" : intFmt.format(v);
}

export function fmtCompact(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(a >= 1e10 ? 0 : 1)}B`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`;
  return intFmt.format(v);
}

export function fmtNum(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toFixed(digits);
}

export function fmtPct(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return `${(v * 100).toFixed(digits)}%`;
}

export function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`;
}

export function fmtTime(iso, withDate = true) {
  if (!iso) return "–";
  const d = new Date(iso);
  const opts = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  if (withDate) Object.assign(opts, { year: "numeric", month: "short", day: "numeric" });
  return d.toLocaleString(undefined, opts);
}

export function fmtAgo(iso) {
  if (!iso) return "–";
  const secs = (Date.now() - new Date(iso).getTime()) / 1000;
  if (secs < 45) return "just now";
  if (secs < 3600) return `${Math.round(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.round(secs / 3600)} h ago`;
  return `${Math.round(secs / 86400)} d ago`;
}

/** A time cell: relative, with the exact local and UTC time on hover. */
export function timeCell(iso) {
  if (!iso) return h("span.faint", "–");
  return h("span.nowrap", { title: `${fmtTime(iso)}  (${iso} UTC)` }, fmtAgo(iso));
}

const PLACEHOLDER = /(<[A-Z][A-Z0-9_]{1,40}>)/;

/** Redacted text, with the redaction placeholders (e.g. <CREDIT_CARD>) shown as chips. */
export function redactedText(text) {
  if (text === null || text === undefined || text === "") return h("span.faint", "(no text)");
  const out = h("span.text");
  // split() with one capture group alternates: text, placeholder, text, ...
  String(text)
    .split(PLACEHOLDER)
    .forEach((part, i) => {
      if (!part) return;
      if (i % 2 === 1) out.append(h("span.pii", { title: "redacted before it was stored" }, part));
      else out.append(document.createTextNode(part));
    });
  return out;
}

export function emptyState(title, ...lines) {
  return h("div.empty", h("b", title), lines.map((line) => h("p", line)));
}

export function code(text) {
  return h("code", text);
}

export function toast(message, bad = false) {
  let shelf = document.getElementById("toasts");
  if (!shelf) {
    shelf = h("div.toasts#toasts", { role: "status", "aria-live": "polite" });
    document.body.append(shelf);
  }
  const el = h(`div.toast${bad ? ".bad" : ""}`, message);
  shelf.append(el);
  setTimeout(() => el.remove(), bad ? 7000 : 4000);
}

export function icon(name, size = 16) {
  const paths = {
    overview: "M3 13h4v8H3zM10 9h4v12h-4zM17 4h4v17h-4z",
    learning: "M3 17l6-6 4 4 8-8M15 7h6v6",
    rollouts: "M12 3v12M7 10l5 5 5-5M5 21h14",
    sessions: "M4 5h16v11H8l-4 4z",
    audit: "M12 3l8 4v5c0 5-3.5 8-8 9-4.5-1-8-4-8-9V7z M9 12l2 2 4-4",
  };
  return s(
    "svg",
    { width: size, height: size, viewBox: "0 0 24 24", fill: "none", stroke: "currentColor",
      "stroke-width": 2, "stroke-linecap": "round", "stroke-linejoin": "round" },
    s("path", { d: paths[name] || "" }),
  );
}

export function bolt(size = 26) {
  return s(
    "svg",
    { width: size, height: size, viewBox: "0 0 32 32", "aria-hidden": "true" },
    s("rect", { width: 32, height: 32, rx: 8, fill: "#4f46e5" }),
    s("path", { d: "M18 5L8 18h7l-2 9 11-14h-7z", fill: "#fde047" }),
  );
}
