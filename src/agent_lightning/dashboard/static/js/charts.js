// A small SVG chart kit: lines (with confidence bands and gaps), columns, interval plots,
// sparklines and a version lineage graph. Charts size to their container and redraw on resize.

import { h, s, clear } from "./dom.js";

export const PALETTE = [
  "#4f46e5", "#0891b2", "#16a34a", "#ea580c", "#db2777", "#9333ea", "#ca8a04", "#64748b",
];

// -- scales and ticks ------------------------------------------------------------------------

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = norm >= 5 ? 10 : norm >= 2 ? 5 : norm >= 1 ? 2 : 1;
  return step * mag;
}

export function niceTicks(min, max, count = 5) {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) {
    const pad = Math.abs(min) > 0 ? Math.abs(min) * 0.1 : 1;
    min -= pad;
    max += pad;
  }
  const step = niceStep(max - min, count);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function linear(d0, d1, r0, r1) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

function timeLabel(ms, spanMs) {
  const d = new Date(ms);
  if (spanMs <= 36 * 3600e3) return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  if (spanMs <= 8 * 86400e3) {
    return `${d.toLocaleDateString(undefined, { weekday: "short" })} ${d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}`;
  }
  return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

function debounce(fn, ms) {
  let t = null;
  return () => {
    clearTimeout(t);
    t = setTimeout(fn, ms);
  };
}

/** Draw now, and again whenever the container's width changes. */
function mount(el, draw) {
  el.classList.add("chart");
  el._draw = draw;
  draw();
  if (!el._observer && typeof ResizeObserver !== "undefined") {
    let lastWidth = el.clientWidth;
    el._observer = new ResizeObserver(
      debounce(() => {
        if (!el.isConnected) return el._observer.disconnect();
        if (Math.abs(el.clientWidth - lastWidth) < 2) return;
        lastWidth = el.clientWidth;
        el._draw();
      }, 120),
    );
    el._observer.observe(el);
  }
  return el;
}

function segments(values) {
  // Runs of consecutive non-null values: [[i, v], ...]
  const out = [];
  let run = [];
  values.forEach((v, i) => {
    if (v === null || v === undefined || Number.isNaN(v)) {
      if (run.length) out.push(run);
      run = [];
    } else run.push([i, v]);
  });
  if (run.length) out.push(run);
  return out;
}

function legend(series) {
  return h(
    "div.legend",
    series
      .filter((sr) => sr.name && !sr.hideLegend)
      .map((sr) =>
        h(
          "span",
          h(`i${sr.dash ? ".dash" : ""}`, {
            style: sr.dash ? { borderColor: sr.color } : { background: sr.color },
          }),
          sr.name,
        ),
      ),
  );
}

// -- line chart -------------------------------------------------------------------------------

/**
 * lineChart(el, {x: [Date|number], series: [{name, values, color, dash, area, band: {low, high},
 *   dots, marker: (i) => "filled"|"hollow"|null}], yDomain: [lo, hi], yFormat, xFormat, height})
 */
export function lineChart(el, opts) {
  return mount(el, () => drawLine(el, opts));
}

function drawLine(el, opts) {
  clear(el);
  const height = opts.height || 220;
  const width = Math.max(280, el.clientWidth || 600);
  const m = { top: 12, right: 14, bottom: 26, left: opts.yWidth || 46 };
  const xs = opts.x.map((v) => (v instanceof Date ? v.getTime() : Number(v)));
  const series = opts.series.map((sr, i) => ({ color: PALETTE[i % PALETTE.length], ...sr }));
  const all = [];
  for (const sr of series) {
    for (const v of sr.values) if (v !== null && v !== undefined && !Number.isNaN(v)) all.push(v);
    if (sr.band) {
      for (const v of [...sr.band.low, ...sr.band.high]) {
        if (v !== null && v !== undefined && !Number.isNaN(v)) all.push(v);
      }
    }
  }
  let [ymin, ymax] = opts.yDomain || [Math.min(...all), Math.max(...all)];
  if (opts.yDomain && all.length) {
    // A fixed domain (e.g. 0–100%) still widens when the data go past it.
    ymin = Math.min(ymin, ...all);
    ymax = Math.max(ymax, ...all);
  }
  if (!all.length) [ymin, ymax] = opts.yDomain || [0, 1];
  if (opts.zero !== false && !opts.yDomain && ymin > 0) ymin = 0;
  const ticks = niceTicks(ymin, ymax, opts.yTicks || 4);
  const y = linear(ticks[0], ticks[ticks.length - 1], height - m.bottom, m.top);
  const x0 = xs[0];
  const x1 = xs.length > 1 ? xs[xs.length - 1] : xs[0] + 1;
  const x = xs.length > 1 ? linear(x0, x1, m.left, width - m.right) : () => (m.left + width - m.right) / 2;
  const fmtY = opts.yFormat || ((v) => String(v));
  const span = x1 - x0;
  const fmtX = opts.xFormat || ((v) => (opts.xKind === "number" ? String(v) : timeLabel(v, span)));

  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  if (opts.label) svg.setAttribute("aria-label", opts.label);
  for (const t of ticks) {
    svg.append(s("line", { class: "grid-line", x1: m.left, x2: width - m.right, y1: y(t), y2: y(t) }));
    svg.append(s("text", { x: m.left - 8, y: y(t) + 4, "text-anchor": "end" }, fmtY(t)));
  }
  // x ticks: at most ~7 labels, on data points so they line up with buckets
  const step = Math.max(1, Math.ceil(xs.length / Math.max(2, Math.floor((width - m.left) / 110))));
  for (let i = 0; i < xs.length; i += step) {
    svg.append(s("text", { x: x(xs[i]), y: height - 6, "text-anchor": "middle" }, fmtX(xs[i])));
  }
  svg.append(s("line", { class: "axis-line", x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom }));

  for (const sr of series) {
    if (sr.band) {
      const both = sr.band.low.map((lo, i) => (lo === null || sr.band.high[i] === null ? null : [lo, sr.band.high[i]]));
      for (const run of segments(both)) {
        const top = run.map(([i, [, hi]]) => `${x(xs[i])},${y(hi)}`);
        const bottom = run.slice().reverse().map(([i, [lo]]) => `${x(xs[i])},${y(lo)}`);
        if (run.length === 1) {
          const [i, [lo, hi]] = run[0];
          svg.append(s("line", { x1: x(xs[i]), x2: x(xs[i]), y1: y(lo), y2: y(hi), stroke: sr.color, "stroke-opacity": 0.35, "stroke-width": 6, "stroke-linecap": "round" }));
        } else {
          svg.append(s("polygon", { points: [...top, ...bottom].join(" "), fill: sr.color, "fill-opacity": 0.14 }));
        }
      }
    }
    for (const run of segments(sr.values)) {
      const d = run.map(([i, v], k) => `${k ? "L" : "M"}${x(xs[i]).toFixed(1)},${y(v).toFixed(1)}`).join("");
      if (sr.area && run.length > 1) {
        const base = y(Math.max(ticks[0], 0));
        const first = x(xs[run[0][0]]);
        const last = x(xs[run[run.length - 1][0]]);
        svg.append(s("path", { d: `${d}L${last},${base}L${first},${base}Z`, fill: sr.color, "fill-opacity": 0.08 }));
      }
      svg.append(s("path", { d, fill: "none", stroke: sr.color, "stroke-width": sr.width || 2, "stroke-dasharray": sr.dash ? "5 4" : null, "stroke-linejoin": "round", "stroke-linecap": "round" }));
      if (run.length === 1 || sr.dots) {
        for (const [i, v] of run) {
          const kind = sr.marker ? sr.marker(i) : "filled";
          if (!kind) continue;
          svg.append(s("circle", { cx: x(xs[i]), cy: y(v), r: sr.dots ? 4 : 3, fill: kind === "hollow" ? "#fff" : sr.color, stroke: sr.color, "stroke-width": 2 }));
        }
      }
    }
  }

  // hover: a crosshair and the values of every series at the nearest point
  const cross = s("line", { class: "axis-line", y1: m.top, y2: height - m.bottom, visibility: "hidden", "stroke-dasharray": "3 3" });
  svg.append(cross);
  const tip = h("div.tip.hidden");
  const overlay = s("rect", { x: m.left, y: m.top, width: Math.max(1, width - m.left - m.right), height: height - m.top - m.bottom, fill: "transparent" });
  overlay.addEventListener("mousemove", (ev) => {
    const box = svg.getBoundingClientRect();
    const px = ev.clientX - box.left;
    let best = 0;
    for (let i = 1; i < xs.length; i++) if (Math.abs(x(xs[i]) - px) < Math.abs(x(xs[best]) - px)) best = i;
    cross.setAttribute("x1", x(xs[best]));
    cross.setAttribute("x2", x(xs[best]));
    cross.setAttribute("visibility", "visible");
    clear(tip);
    tip.append(h("div", h("b", opts.tipTitle ? opts.tipTitle(best) : fmtX(xs[best]))));
    for (const sr of series) {
      if (sr.hideTip) continue;
      const v = sr.values[best];
      let text = v === null || v === undefined ? "–" : fmtY(v);
      if (sr.band && sr.band.low[best] !== null && sr.band.low[best] !== undefined) {
        text += `  [${fmtY(sr.band.low[best])}, ${fmtY(sr.band.high[best])}]`;
      }
      if (sr.tipExtra) text += sr.tipExtra(best);
      tip.append(h("div", h("span.sw", { style: { background: sr.color } }), `${sr.name}: `, h("b", text)));
    }
    tip.classList.remove("hidden");
    const left = Math.min(Math.max(0, x(xs[best]) + 12), width - tip.offsetWidth - 4);
    tip.style.left = `${left}px`;
    tip.style.top = `${m.top}px`;
  });
  overlay.addEventListener("mouseleave", () => {
    cross.setAttribute("visibility", "hidden");
    tip.classList.add("hidden");
  });
  svg.append(overlay);
  el.append(svg, tip);
  if (opts.legend !== false && series.length > 1) el.append(legend(series));
  el.dataset.points = JSON.stringify(series.map((sr) => ({ name: sr.name, values: sr.values })));
}

// -- columns ----------------------------------------------------------------------------------

/** columns(el, {items: [{label, value, note, color}], yDomain, yFormat, height}) */
export function columns(el, opts) {
  return mount(el, () => drawColumns(el, opts));
}

function drawColumns(el, opts) {
  clear(el);
  const height = opts.height || 200;
  const width = Math.max(240, el.clientWidth || 500);
  const m = { top: 22, right: 8, bottom: 36, left: 44 };
  const items = opts.items;
  const values = items.map((it) => it.value).filter((v) => v !== null && v !== undefined);
  const [lo, hi] = opts.yDomain || [0, Math.max(...values, 0)];
  const ticks = niceTicks(Math.min(lo, ...values), Math.max(hi, ...values), 4);
  const y = linear(ticks[0], ticks[ticks.length - 1], height - m.bottom, m.top);
  const fmtY = opts.yFormat || String;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}` });
  for (const t of ticks) {
    svg.append(s("line", { class: "grid-line", x1: m.left, x2: width - m.right, y1: y(t), y2: y(t) }));
    svg.append(s("text", { x: m.left - 8, y: y(t) + 4, "text-anchor": "end" }, fmtY(t)));
  }
  const slot = (width - m.left - m.right) / Math.max(1, items.length);
  const bw = Math.min(56, slot * 0.62);
  items.forEach((it, i) => {
    const cx = m.left + slot * (i + 0.5);
    const color = it.color || PALETTE[0];
    if (it.value !== null && it.value !== undefined) {
      const top = y(it.value);
      const base = y(Math.max(ticks[0], 0));
      svg.append(s("rect", { x: cx - bw / 2, y: Math.min(top, base), width: bw, height: Math.max(1, Math.abs(base - top)), rx: 4, fill: color }));
      svg.append(s("text", { x: cx, y: top - 6, "text-anchor": "middle", class: "strong" }, fmtY(it.value)));
    } else {
      svg.append(s("text", { x: cx, y: height - m.bottom - 6, "text-anchor": "middle" }, "no data"));
    }
    svg.append(s("text", { x: cx, y: height - m.bottom + 15, "text-anchor": "middle", class: "ink" }, it.label));
    // Notes only where there is room for them; always in the tooltip.
    if (it.note && slot >= 84) svg.append(s("text", { x: cx, y: height - m.bottom + 29, "text-anchor": "middle" }, it.note));
    svg.lastChild.append(s("title", {}, `${it.label}: ${it.value === null || it.value === undefined ? "no data" : fmtY(it.value)}${it.note ? ` (${it.note})` : ""}`));
  });
  el.append(svg);
  el.dataset.points = JSON.stringify(items.map((it) => ({ label: it.label, value: it.value })));
}

// -- horizontal bars (HTML, so long labels wrap and stay crisp) ------------------------------

export function barList(items, { format = String, color = PALETTE[0], max } = {}) {
  const top = max || Math.max(1, ...items.map((it) => it.value || 0));
  return h(
    "div",
    { style: { display: "grid", gridTemplateColumns: "minmax(90px, 38%) 1fr auto", gap: "7px 10px", alignItems: "center", fontSize: "12.5px" } },
    items.map((it) => [
      h("span", { title: it.label, style: { overflow: "hidden", textOverflow: "ellipsis", whiteSpace: "nowrap", color: "#374151" } }, it.label),
      h("div", { style: { height: "10px", background: "#f0f1f4", borderRadius: "5px", overflow: "hidden" } },
        h("i", { style: { display: "block", height: "100%", width: `${(100 * (it.value || 0)) / top}%`, background: it.color || color, borderRadius: "5px" } })),
      h("span.num", { style: { color: "#6b7280", textAlign: "right" } }, format(it.value, it)),
    ]),
  );
}

// -- sparkline --------------------------------------------------------------------------------

export function sparkline(values, { width = 150, height = 30, color = PALETTE[0], domain } = {}) {
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true" });
  const pts = values.map((v, i) => [i, v]).filter(([, v]) => v !== null && v !== undefined);
  if (pts.length < 2) return svg;
  const vs = pts.map(([, v]) => v);
  const [lo, hi] = domain || [Math.min(...vs), Math.max(...vs)];
  const x = linear(0, values.length - 1, 1, width - 1);
  const y = linear(lo, hi === lo ? lo + 1 : hi, height - 2, 2);
  const d = pts.map(([i, v], k) => `${k ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join("");
  svg.append(s("path", { d: `${d}L${x(pts[pts.length - 1][0])},${height}L${x(pts[0][0])},${height}Z`, fill: color, "fill-opacity": 0.1 }));
  svg.append(s("path", { d, fill: "none", stroke: color, "stroke-width": 1.6 }));
  return svg;
}

// -- intervals (forest plot) ------------------------------------------------------------------

/** intervals(el, {rows: [{label, value, low, high, color, note}], format, reference}) */
export function intervals(el, opts) {
  return mount(el, () => drawIntervals(el, opts));
}

function drawIntervals(el, opts) {
  clear(el);
  const rows = opts.rows;
  const rowH = 30;
  const width = Math.max(280, el.clientWidth || 500);
  const m = { top: 6, right: 16, bottom: 24, left: Math.min(190, width * 0.36) };
  const height = m.top + m.bottom + rowH * rows.length;
  const all = rows.flatMap((r) => [r.value, r.low, r.high]).filter((v) => v !== null && v !== undefined);
  if (opts.reference !== undefined && opts.reference !== null) all.push(opts.reference);
  const ticks = niceTicks(Math.min(...all), Math.max(...all), 5);
  const x = linear(ticks[0], ticks[ticks.length - 1], m.left, width - m.right);
  const fmt = opts.format || ((v) => v.toFixed(3));
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}` });
  for (const t of ticks) {
    svg.append(s("line", { class: "grid-line", x1: x(t), x2: x(t), y1: m.top, y2: height - m.bottom }));
    svg.append(s("text", { x: x(t), y: height - 6, "text-anchor": "middle" }, fmt(t)));
  }
  if (opts.reference !== undefined && opts.reference !== null) {
    svg.append(s("line", { x1: x(opts.reference), x2: x(opts.reference), y1: m.top, y2: height - m.bottom, stroke: "#9ca3af", "stroke-dasharray": "4 3" }));
  }
  rows.forEach((r, i) => {
    const cy = m.top + rowH * (i + 0.5);
    const color = r.color || PALETTE[i % PALETTE.length];
    svg.append(s("text", { x: m.left - 10, y: cy + 4, "text-anchor": "end", class: "ink" }, r.label));
    if (r.value === null || r.value === undefined) return;
    if (r.low !== null && r.low !== undefined && r.high !== null && r.high !== undefined) {
      svg.append(s("line", { x1: x(r.low), x2: x(r.high), y1: cy, y2: cy, stroke: color, "stroke-width": 3, "stroke-linecap": "round", "stroke-opacity": 0.55 }));
    }
    svg.append(s("circle", { cx: x(r.value), cy, r: 5, fill: color }));
    const title = s("title", {}, `${r.label}: ${fmt(r.value)}${r.low !== null && r.low !== undefined ? ` [${fmt(r.low)}, ${fmt(r.high)}]` : ""}`);
    svg.lastChild.append(title);
  });
  el.append(svg);
}

// -- version lineage --------------------------------------------------------------------------

/** lineage(el, {versions: [{version, parent_version, live, passed}], onSelect, selected}) */
export function lineage(el, opts) {
  return mount(el, () => drawLineage(el, opts));
}

function drawLineage(el, opts) {
  clear(el);
  const versions = [...opts.versions].sort((a, b) => a.version - b.version);
  if (!versions.length) return;
  // Lanes: a version continues its parent's lane if it is the parent's first child.
  const lane = new Map();
  const continued = new Set();
  let lanes = 0;
  for (const v of versions) {
    const parentLane = lane.get(v.parent_version);
    if (parentLane !== undefined && !continued.has(v.parent_version)) {
      lane.set(v.version, parentLane);
      continued.add(v.parent_version);
    } else {
      lane.set(v.version, lanes++);
    }
  }
  const width = Math.max(280, el.clientWidth || 600);
  const colW = Math.max(46, Math.min(90, (width - 40) / versions.length));
  const laneH = 46;
  const height = 26 + lanes * laneH;
  const svgW = Math.max(width, 40 + colW * versions.length);
  const svg = s("svg", { width: svgW, height, viewBox: `0 0 ${svgW} ${height}` });
  const pos = new Map();
  versions.forEach((v, i) => pos.set(v.version, [30 + colW * i, 24 + lane.get(v.version) * laneH]));
  for (const v of versions) {
    const from = pos.get(v.parent_version);
    if (!from) continue;
    const [x2, y2] = pos.get(v.version);
    const [x1, y1] = from;
    const mx = (x1 + x2) / 2;
    svg.append(s("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, fill: "none", stroke: "#c7cbd3", "stroke-width": 2 }));
  }
  for (const v of versions) {
    const [cx, cy] = pos.get(v.version);
    const fill = v.live ? "#15803d" : v.passed === false ? "#f3f4f6" : "#eef2ff";
    const stroke = v.live ? "#15803d" : v.passed === false ? "#9ca3af" : "#4f46e5";
    const g = s("g", { class: "node", "data-version": v.version });
    g.append(s("circle", { cx, cy, r: 15, fill, stroke, "stroke-width": opts.selected === v.version ? 3.5 : 2 }));
    g.append(s("text", { x: cx, y: cy + 4, "text-anchor": "middle", class: v.live ? "node-label on-live" : "node-label" }, `v${v.version}`));
    if (v.live) g.append(s("text", { x: cx, y: cy + 30, "text-anchor": "middle", class: "live-label" }, "live"));
    g.append(s("title", {}, `v${v.version}${v.parent_version ? ` (from v${v.parent_version})` : ""}${v.live ? ", live" : ""}`));
    if (opts.onSelect) g.addEventListener("click", () => opts.onSelect(v.version));
    svg.append(g);
  }
  el.append(h("div", { style: { overflowX: "auto" } }, svg));
}

// -- guardrail test -----------------------------------------------------------------------------

/**
 * guardrail(el, {estimate, low, high, limit, zero, regressionAbove, decision, format})
 *
 * One sequential test at a glance: the always-valid interval of the tested quantity (candidate
 * minus baseline, or the candidate's own value against a threshold), the allowed limit, and the
 * zone beyond it shaded red. The test fails once the whole interval sits inside that zone.
 */
export function guardrail(el, opts) {
  return mount(el, () => drawGuardrail(el, opts));
}

function drawGuardrail(el, opts) {
  clear(el);
  const width = Math.max(200, el.clientWidth || 320);
  const height = 44;
  const m = { left: 8, right: 8, top: 6, bottom: 16 };
  const fmt = opts.format || ((v) => v.toFixed(3));
  const known = [opts.estimate, opts.low, opts.high, opts.limit, opts.zero ? 0 : null].filter(
    (v) => v !== null && v !== undefined && Number.isFinite(v),
  );
  if (!known.length) known.push(0, 1);
  let lo = Math.min(...known);
  let hi = Math.max(...known);
  const pad = (hi - lo || Math.abs(hi) || 1) * 0.12;
  lo -= pad;
  hi += pad;
  const x = linear(lo, hi, m.left, width - m.right);
  const mid = m.top + (height - m.top - m.bottom) / 2;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  if (opts.label) svg.setAttribute("aria-label", opts.label);
  const limit = opts.limit;
  if (limit !== null && limit !== undefined) {
    const zone = opts.regressionAbove
      ? { x: x(limit), width: Math.max(0, width - m.right - x(limit)) }
      : { x: m.left, width: Math.max(0, x(limit) - m.left) };
    svg.append(s("rect", { ...zone, y: m.top, height: height - m.top - m.bottom, fill: "#fee2e2", class: "zone" }));
    svg.append(s("line", { x1: x(limit), x2: x(limit), y1: m.top, y2: height - m.bottom, stroke: "#f87171", "stroke-dasharray": "3 2" }));
    svg.append(s("text", { x: x(limit), y: height - 4, "text-anchor": "middle", class: "bad-label" }, fmt(limit)));
  }
  if (opts.zero) {
    svg.append(s("line", { x1: x(0), x2: x(0), y1: m.top, y2: height - m.bottom, stroke: "#9ca3af" }));
    if (limit === null || limit === undefined || Math.abs(x(limit) - x(0)) > 30) {
      svg.append(s("text", { x: x(0), y: height - 4, "text-anchor": "middle" }, "0"));
    }
  }
  const color = opts.decision === "regression" ? "#dc2626" : opts.decision === "ok" ? "#16a34a" : "#9ca3af";
  if (opts.low !== null && opts.low !== undefined && opts.high !== null && opts.high !== undefined) {
    svg.append(s("line", { x1: x(opts.low), x2: x(opts.high), y1: mid, y2: mid, stroke: color, "stroke-width": 6, "stroke-linecap": "round", "stroke-opacity": 0.45 }));
  }
  if (opts.estimate !== null && opts.estimate !== undefined) {
    const dot = s("circle", { cx: x(opts.estimate), cy: mid, r: 5, fill: color, stroke: "#fff", "stroke-width": 1.5 });
    const interval = opts.low === null || opts.low === undefined ? "" : ` [${fmt(opts.low)}, ${fmt(opts.high)}]`;
    dot.append(s("title", {}, `${opts.label || "estimate"}: ${fmt(opts.estimate)}${interval}`));
    svg.append(dot);
  }
  el.append(svg);
  el.dataset.points = JSON.stringify({ estimate: opts.estimate, low: opts.low, high: opts.high, limit: opts.limit, decision: opts.decision });
}
