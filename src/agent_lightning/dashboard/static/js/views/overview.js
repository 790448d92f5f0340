// Overview of one app: traffic, outcomes by policy version, intents, escalation, SLA.

import { api } from "../api.js";
import { PALETTE, barList, lineChart, sparkline } from "../charts.js";
import { code, emptyState, fmtCompact, fmtInt, fmtMs, fmtPct, h } from "../dom.js";

const RANGES = [
  { id: "1h", label: "1 hour", bucket: "minute", ms: 3600e3 },
  { id: "6h", label: "6 hours", bucket: "minute", ms: 6 * 3600e3 },
  { id: "24h", label: "24 hours", bucket: "hour", ms: 86400e3 },
  { id: "7d", label: "7 days", bucket: "hour", ms: 7 * 86400e3 },
  { id: "30d", label: "30 days", bucket: "day", ms: 30 * 86400e3 },
  { id: "90d", label: "90 days", bucket: "day", ms: 90 * 86400e3 },
];
const REFRESH_MS = 30000;

function kpi(label, value, sub, spark, id) {
  return h("div.panel.kpi", { dataset: { kpi: id } }, h("div.label", label), h("div.value", value), h("div.sub", sub || ""), spark || null);
}

function panel(title, subtitle, ...body) {
  return h("section.panel", h("header", h("div", h("h2", title), subtitle ? h("p", subtitle) : null)), body);
}

function versionColors(list) {
  const colors = {};
  list.forEach((item, i) => (colors[item.label] = item.version === null ? "#94a3b8" : PALETTE[i % PALETTE.length]));
  return colors;
}

export async function render(main, { params, navigate }) {
  const range = RANGES.find((r) => r.id === params.range) || RANGES[2];
  const picker = h(
    "div.segmented#range",
    RANGES.map((r) => h(`button${r.id === range.id ? ".on" : ""}`, { type: "button", dataset: { range: r.id }, onclick: () => navigate(`#/overview?range=${r.id}`) }, r.label)),
  );
  const updated = h("span.faint#updated");
  main.append(h("div.page-head", h("div", h("h1", "Overview"), h("p", "What your agent did, how it went, and which policy version did it.")), h("div.toolbar", updated, picker)));
  const body = h("div#overview-body", h("div.loading", "Loading…"));
  main.append(body);

  async function load() {
    const until = new Date();
    const since = new Date(until.getTime() - range.ms);
    const data = await api("/v1/dashboard/overview", { params: { since: since.toISOString(), until: until.toISOString(), bucket: range.bucket } });
    draw(body, data, range);
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }
  await load();
  const timer = setInterval(() => {
    if (document.visibilityState === "visible") load().catch(() => {});
  }, REFRESH_MS);
  return () => clearInterval(timer);
}

function draw(body, data, range) {
  body.replaceChildren();
  const x = data.buckets.map((b) => new Date(b));
  const t = data.totals;
  const r = data.rates;
  const nothing = !t.events && !t.decisions && !t.rewards && !t.model_calls;
  const pctDomain = [0, 1];
  body.append(
    h(
      "div.grid.kpis",
      kpi("Events", fmtCompact(t.events), `${fmtInt(t.feedback)} with feedback`, sparkline(data.series.events), "events"),
      kpi("Decisions", fmtCompact(t.decisions), `${fmtInt(t.escalated)} escalated`, sparkline(data.series.decisions, { color: PALETTE[1] }), "decisions"),
      kpi("Rewards", fmtCompact(t.rewards), r.mean_reward === null ? "" : `mean ${r.mean_reward.toFixed(3)}`, sparkline(data.series.rewards, { color: PALETTE[2] }), "rewards"),
      kpi("Resolution rate", fmtPct(r.resolution), "rewards above zero", sparkline(data.series.resolution, { color: PALETTE[2], domain: pctDomain }), "resolution"),
      kpi("Satisfaction", r.satisfaction === null ? "–" : r.satisfaction.toFixed(2), "mean feedback score", sparkline(data.series.satisfaction, { color: PALETTE[4] }), "satisfaction"),
      kpi("Escalation rate", fmtPct(r.escalation), `action ${data.escalation.actions.join(", ") || "none set"}`, sparkline(data.series.escalation, { color: PALETTE[3], domain: pctDomain }), "escalation"),
      kpi("SLA", fmtPct(r.sla), data.sla.available && t.model_calls ? `within ${fmtMs(data.sla.target_ms)} · ${fmtCompact(t.model_calls)} calls` : "no model calls", sparkline(data.series.sla, { color: PALETTE[5], domain: pctDomain }), "sla"),
    ),
  );
  if (nothing) {
    body.append(
      h(
        "div.panel",
        emptyState(
          `No telemetry in the last ${range.label}.`,
          h("span", "Send events with the SDK (", code("agl.log_event(text, session_id=...)"), "), let the platform decide (", code("agl.decide(actions, text=...)"), ") and report outcomes (", code("agl.reward(decision_id, 1.0)"), ")."),
          "Or point your agent's OpenAI base URL at the gateway. Try a longer window above if data is older.",
        ),
      ),
    );
    return;
  }
  const traffic = h("div#chart-traffic");
  const resolution = h("div#chart-resolution");
  const satisfaction = h("div#chart-satisfaction");
  const escalation = h("div#chart-escalation");
  const sla = h("div#chart-sla");
  const byVersion = data.resolution_by_version;
  const colors = versionColors(byVersion);
  body.append(
    h(
      "div.grid.two",
      panel("Traffic", `per ${data.bucket}`, traffic),
      panel(
        "Resolution rate by policy version",
        "share of rewards above zero, by the version that made the rewarded decision",
        byVersion.length ? resolution : emptyState("No rewards in this window.", h("span", "Report outcomes with ", code("agl.reward(decision_id, value)"), ".")),
        byVersion.length ? versionTable(byVersion, colors) : null,
      ),
      panel(
        "Satisfaction by policy version",
        "mean feedback score of events",
        data.satisfaction_by_version.length ? satisfaction : emptyState("No feedback scores in this window.", h("span", "Send ", code("feedback_score"), " with your events.")),
        data.satisfaction_by_version.length && data.satisfaction_by_version.every((s) => s.version === null)
          ? h("p.muted", { style: { fontSize: "12.5px", margin: "8px 0 0" } }, "Events name no policy version, so satisfaction is shown for all events together. Log events with policy_name and policy_version to split it.")
          : null,
      ),
      panel("Intent distribution", `most predicted intents in the last ${range.label}`, data.intents.length ? intents(data.intents) : emptyState("No intents yet.", h("span", "Send ", code("intent_prediction"), " with your events."))),
      panel(
        "Escalation rate",
        `decisions whose action is ${data.escalation.actions.map((a) => `“${a}”`).join(" or ")}`,
        !t.decisions
          ? emptyState("No decisions in this window.")
          : t.escalated
            ? escalation
            : emptyState(`No decision chose ${data.escalation.actions.map((a) => `“${a}”`).join(" or ")} in this window.`, h("span", "If your agent hands over with another action, list it in the app setting ", code("settings.dashboard.escalation_actions"), ".")),
      ),
      panel(
        "SLA: model calls within target",
        `share of gateway calls answered within ${fmtMs(data.sla.target_ms)}${data.sla.mean_latency_ms ? ` · mean ${fmtMs(data.sla.mean_latency_ms)} · ${fmtInt(data.sla.errors)} errors` : ""}`,
        t.model_calls ? sla : emptyState("No model calls through the gateway in this window.", "Point your agent's OpenAI base URL at the gateway to measure latency; set settings.dashboard.sla_target_ms to change the target."),
      ),
    ),
  );
  lineChart(traffic, {
    x,
    series: [
      { name: "events", values: data.series.events, area: true },
      { name: "decisions", values: data.series.decisions },
      { name: "rewards", values: data.series.rewards },
    ],
    yFormat: fmtCompact,
    label: "events, decisions and rewards over time",
  });
  if (byVersion.length) {
    lineChart(resolution, {
      x,
      series: byVersion.map((v) => ({ name: v.label, values: v.points, color: colors[v.label], dots: x.length < 40 })),
      yDomain: [0, 1],
      yFormat: (v) => fmtPct(v, 0),
      label: "resolution rate by version",
    });
  }
  if (data.satisfaction_by_version.length) {
    lineChart(satisfaction, {
      x,
      series: data.satisfaction_by_version.map((v, i) => ({ name: v.label, values: v.points, color: v.version === null ? PALETTE[4] : PALETTE[i % PALETTE.length], dots: x.length < 40 })),
      yFormat: (v) => v.toFixed(2),
      zero: false,
    });
  }
  if (t.escalated) {
    lineChart(escalation, { x, series: [{ name: "escalation rate", values: data.series.escalation, color: PALETTE[3], area: true }], yDomain: [0, 0.1], yFormat: (v) => fmtPct(v, 0) });
  }
  if (t.model_calls) {
    lineChart(sla, { x, series: [{ name: "within target", values: data.series.sla, color: PALETTE[5], area: true }], yDomain: [0, 1], yFormat: (v) => fmtPct(v, 0) });
  }
}

function intents(rows) {
  const top = rows.filter((i) => i.intent !== "(other)");
  const other = rows.find((i) => i.intent === "(other)");
  return h(
    "div#intents",
    barList(top.map((i) => ({ label: i.intent, value: i.count, share: i.share })), { format: (v, it) => `${fmtInt(v)} · ${fmtPct(it.share, 0)}` }),
    other ? h("p.muted", { style: { margin: "10px 0 0", fontSize: "12.5px" } }, `All other intents together: ${fmtInt(other.count)} (${fmtPct(other.share, 0)}).`) : null,
  );
}

function versionTable(rows, colors) {
  return h(
    "div.table-wrap",
    { style: { marginTop: "10px" } },
    h(
      "table#resolution-by-version",
      h("thead", h("tr", h("th", "version"), h("th.r", "rewards"), h("th.r", "resolution"), h("th.r", "mean reward"))),
      h(
        "tbody",
        rows.map((v) =>
          h(
            "tr",
            { dataset: { version: v.version ?? "" } },
            h("td", h("span", { style: { display: "inline-block", width: "9px", height: "9px", borderRadius: "2px", background: colors[v.label], marginRight: "8px" } }), v.label),
            h("td.r.num", fmtInt(v.n)),
            h("td.r.num", fmtPct(v.rate)),
            h("td.r.num", v.mean === null ? "–" : v.mean.toFixed(3)),
          ),
        ),
      ),
    ),
  );
}
