// Learning: per policy, the learning curve over tasks (off-policy estimates with intervals),
// what each version earned once live, the version lineage, and every task's outcome.

import { api } from "../api.js";
import { PALETTE, columns, lineChart, lineage } from "../charts.js";
import { append, clear, code, emptyState, fmtInt, fmtNum, fmtPct, h, timeCell } from "../dom.js";

function panel(title, subtitle, ...body) {
  return h("section.panel", h("header", h("div", h("h2", title), subtitle ? h("p", subtitle) : null)), body);
}

function ci(est) {
  if (!est || est.value === null || est.value === undefined) return "–";
  const interval = est.ci_low === null || est.ci_low === undefined ? "" : ` [${fmtNum(est.ci_low)}, ${fmtNum(est.ci_high)}]`;
  return `${fmtNum(est.value)}${interval}`;
}

export async function render(main, { params, navigate }) {
  main.append(h("div.page-head", h("div", h("h1", "Learning"), h("p", "Each learning task trains a candidate and estimates off-policy what it would earn; it goes live only if it beats the live version."))));
  const data = await api("/v1/dashboard/learning");
  if (!data.policies.length) {
    main.append(
      h(
        "div.panel",
        emptyState(
          "No policies yet.",
          h("span", "Create one for a decision point: ", code("agl.create_policy(\"intents\", decision_point=\"intent\", spec={\"featurizer\": \"hashing\"})")),
          "Then let the platform decide and reward the outcomes; learning tasks run every 500 decisions or on demand.",
        ),
      ),
    );
    return;
  }
  const chosen = data.policies.find((p) => p.name === params.policy) || data.policies[0];
  if (data.policies.length > 1) {
    main.append(
      h(
        "div.segmented#policy-picker",
        { style: { marginBottom: "14px" } },
        data.policies.map((p) => h(`button${p === chosen ? ".on" : ""}`, { type: "button", onclick: () => navigate(`#/learning?policy=${encodeURIComponent(p.name)}`) }, p.name)),
      ),
    );
  }
  main.append(policyView(chosen));
}

function policyView(policy) {
  const succeeded = policy.tasks.filter((t) => t.status === "succeeded").length;
  const failed = policy.tasks.filter((t) => t.status === "failed").length;
  const registered = policy.tasks.filter((t) => t.registered).length;
  const wrap = h("div", { dataset: { policy: policy.name } });
  wrap.append(
    h(
      "div.grid.kpis",
      stat("Live version", policy.live_version ? `v${policy.live_version}` : "none", policy.decision_point ? `decision point ${policy.decision_point}` : ""),
      stat("Versions", fmtInt(policy.versions.length), `${registered} registered by learning`),
      stat("Learning tasks", fmtInt(policy.tasks.length), `${succeeded} succeeded · ${failed} failed`),
      stat("Latest estimate", policy.curve.length ? fmtNum(policy.curve[policy.curve.length - 1].candidate.value) : "–", policy.curve.length ? `${policy.curve[policy.curve.length - 1].estimator || ""} estimate of the last candidate` : "no estimates yet"),
    ),
  );

  const curveEl = h("div#learning-curve");
  const observedEl = h("div#observed-by-version");
  const lineageEl = h("div#lineage");
  const details = h("div#version-details");
  const grid = h(
    "div.grid.two",
    h(
      "div.span-2",
      panel(
        "Learning curve",
        "off-policy estimate of each task's candidate on held-out decisions (shaded: confidence interval), against the live version it had to beat; filled dots went live",
        policy.curve.length ? curveEl : emptyState("No learning task has produced estimates yet.", h("span", "Trigger one: ", code(`agl.trigger_task({"task": "learn", "policy": "${policy.name}"})`), ", or wait for the scheduler (every 500 new decisions)."), "A task needs at least 20 held-out decisions with rewards to estimate anything."),
      ),
    ),
    panel(
      "What each version earned once live",
      "share of its decisions' rewards above zero, last 30 days",
      policy.observed.length ? observedEl : emptyState("No rewarded decisions yet.", "Rewards of decisions made by each version show up here."),
    ),
    panel("Version lineage", "each version and the version it was trained from; click one for details", policy.versions.length ? lineageEl : emptyState("No versions yet."), details),
  );
  wrap.append(grid, tasksTable(policy));

  if (policy.curve.length) {
    const pts = policy.curve;
    lineChart(curveEl, {
      x: pts.map((_, i) => i + 1),
      xKind: "number",
      xFormat: (i) => `task ${i}`,
      tipTitle: (i) => `task ${i + 1} · ${fmtInt(pts[i].examples_seen)} decisions seen${pts[i].version ? ` · registered v${pts[i].version}` : ""}`,
      series: [
        {
          name: "candidate estimate",
          values: pts.map((p) => p.candidate.value),
          band: { low: pts.map((p) => p.candidate.ci_low ?? null), high: pts.map((p) => p.candidate.ci_high ?? null) },
          dots: true,
          marker: (i) => (pts[i].registered ? "filled" : "hollow"),
          color: PALETTE[0],
        },
        {
          name: "live version (baseline)",
          values: pts.map((p) => (p.baseline ? p.baseline.value : null)),
          band: { low: pts.map((p) => (p.baseline ? p.baseline.ci_low ?? null : null)), high: pts.map((p) => (p.baseline ? p.baseline.ci_high ?? null : null)) },
          dash: true,
          color: "#64748b",
          dots: true,
        },
      ],
      yFormat: (v) => v.toFixed(2),
      zero: false,
      height: 260,
      label: "learning curve",
    });
  }
  if (policy.observed.length) {
    columns(observedEl, {
      items: policy.observed.map((o) => ({ label: `v${o.version}`, value: o.rate, note: `${fmtInt(o.rewards)} rewards`, color: o.version === policy.live_version ? "#15803d" : PALETTE[0] })),
      yDomain: [0, 1],
      yFormat: (v) => fmtPct(v, 0),
    });
  }
  if (policy.versions.length) {
    const live = policy.versions.find((v) => v.live);
    const select = (number) => {
      const v = policy.versions.find((row) => row.version === number);
      append(clear(details), [versionDetails(v)]); // skips a null, which replaceChildren prints
      lineage(lineageEl, { versions: lineageInput(policy), onSelect: select, selected: number });
    };
    lineage(lineageEl, { versions: lineageInput(policy), onSelect: select });
    if (live) append(clear(details), [versionDetails(live)]);
  }
  return wrap;
}

function lineageInput(policy) {
  return policy.versions.map((v) => ({ version: v.version, parent_version: v.parent_version, live: v.live, passed: v.gate ? v.gate.passed : null }));
}

function stat(label, value, sub) {
  return h("div.panel.kpi", h("div.label", label), h("div.value", value), h("div.sub", sub || ""));
}

function versionDetails(v) {
  if (!v) return null;
  const est = v.estimates;
  return h(
    "div.section-gap",
    h("div", { style: { display: "flex", gap: "8px", alignItems: "center", marginBottom: "6px" } }, h("b", `v${v.version}`), v.live ? h("span.badge.live", "live") : null, v.parent_version ? h("span.muted", `trained from v${v.parent_version}`) : h("span.muted", "initial version")),
    h(
      "table",
      h(
        "tbody",
        row("created", timeCell(v.created_at)),
        row("by", v.created_by || "–"),
        row("trained on", v.examples ? `${fmtInt(v.examples)} decisions` : "–"),
        row("gate", v.gate ? (v.gate.passed ? h("span.badge.good", "passed") : h("span.badge.warn", v.gate.reason || "not passed")) : "–"),
        est ? row(`estimate (${est.estimator || "?"})`, `candidate ${ci(est.candidate)} vs live ${ci(est.baseline)}`) : null,
        row("notes", v.notes || "–"),
        row(
          "artefact",
          h(
            "span",
            h("span.mono", (v.artifact_sha256 || "").slice(0, 16) || "–"),
            v.artifact_pruned_at ? h("span.badge.warn", { style: { marginLeft: "8px" } }, "removed by retention") : null,
          ),
        ),
      ),
    ),
  );
}

function row(label, value) {
  return h("tr", h("td.muted", { style: { width: "130px" } }, label), h("td", value));
}

function tasksTable(policy) {
  if (!policy.tasks.length) return null;
  const rows = [...policy.tasks].reverse();
  return panel(
    "Learning tasks",
    "newest first",
    h(
      "div.table-wrap",
      h(
        "table#tasks",
        h("thead", h("tr", h("th", "finished"), h("th", "status"), h("th.r", "decisions"), h("th.r", "trained / evaluated"), h("th", "candidate [interval]"), h("th", "live [interval]"), h("th", "gain [interval]"), h("th", "gate"), h("th", "outcome"))),
        h(
          "tbody",
          rows.map((t) => {
            const est = t.estimates || {};
            return h(
              "tr",
              { dataset: { task: t.id } },
              h("td", timeCell(t.finished_at || t.created_at)),
              h("td", h(`span.badge${t.status === "succeeded" ? ".good" : t.status === "failed" ? ".bad" : ""}`, t.status)),
              h("td.r.num", fmtInt(t.examples)),
              h("td.r.num", t.train === null || t.train === undefined ? "–" : `${fmtInt(t.train)} / ${fmtInt(t.held_out)}`),
              h("td.num.nowrap", ci(est.candidate)),
              h("td.num.nowrap", ci(est.baseline)),
              h("td.num.nowrap", ci(est.difference)),
              h("td", t.gate ? (t.gate.passed ? h("span.badge.good", "passed") : h("span.badge", "not passed")) : "–"),
              h("td.outcome", t.registered ? h("span", `registered v${t.version}${t.forced ? " (forced)" : ""}`) : h("span.muted", { title: t.error || t.reason || "" }, t.error || t.reason || "–")),
            );
          }),
        ),
      ),
    ),
  );
}
