// Rollouts: per policy, the running rollout (steps, traffic split, both arms, every guardrail's
// sequential test), past rollouts with why they ended, the versions and the history of every
// switch. AgentAdmin gets the controls; they call the publisher's own routes, which check again.

import { api, can } from "../api.js";
import { PALETTE, barList, guardrail, intervals, lineChart, sparkline } from "../charts.js";
import { emptyState, fmtAgo, fmtInt, fmtMs, fmtNum, fmtPct, h, timeCell, toast } from "../dom.js";

const KIND = { canary: "canary", ab: "A/B test", blue_green: "blue/green", flag: "feature flag" };
const STATUS = {
  running: ["running", "good"],
  paused: ["paused", "warn"],
  promoted: ["promoted", "good"],
  rolled_back: ["rolled back", "bad"],
  aborted: ["aborted", "warn"],
};
const METRIC = {
  mean_reward: { label: "Mean reward", value: (v) => fmtNum(v), diff: (v) => signed(v, (d) => d.toFixed(3)) },
  resolution_rate: { label: "Resolution rate", value: (v) => fmtPct(v), diff: (v) => signed(v, (d) => `${(d * 100).toFixed(1)} pt`) },
  escalation_rate: { label: "Escalation rate", value: (v) => fmtPct(v), diff: (v) => signed(v, (d) => `${(d * 100).toFixed(1)} pt`) },
  error_rate: { label: "Error rate", value: (v) => fmtPct(v), diff: (v) => signed(v, (d) => `${(d * 100).toFixed(1)} pt`) },
  latency_p99: { label: "p99 latency", value: (v) => fmtMs(v), diff: (v) => signed(v, (d) => `${d.toFixed(1)} pt`) },
};

function signed(v, fmt) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return `${v > 0 ? "+" : v < 0 ? "−" : "±"}${fmt(Math.abs(v))}`;
}

export async function render(main, { navigate }) {
  const admin = can("policy:promote");
  const reload = () => navigate("#/rollouts");
  main.append(
    h(
      "div.page-head",
      h("div", h("h1", "Rollouts"), h("p", "What serves traffic, what is being rolled out and how it compares, and every switch with its reason.")),
      h(
        "div.toolbar",
        admin ? null : h("span.badge#read-only", "read only: promoting, pausing and rolling back need the AgentAdmin role"),
        h("button.small#refresh", { type: "button", onclick: reload }, "Refresh"),
      ),
    ),
  );
  const data = await api("/v1/dashboard/rollouts");
  if (!data.policies.length) {
    main.append(h("div.panel", emptyState("No policies yet.", "A policy appears here once it is created; its versions come from learning tasks.")));
    return;
  }
  for (const policy of data.policies) main.append(policyCard(policy, admin, data, reload));
}

function policyCard(policy, admin, data, reload) {
  const paused = policy.pause && policy.pause.paused;
  const unenforced = "This server's learning controller does not check the pause yet: the pause is recorded and audited, but learning tasks can still make new versions live.";
  const actions = h("div.actions");
  if (admin) {
    actions.append(
      paused
        ? h("button#resume", { onclick: () => confirmDialog({ title: `Resume automatic promotion of ${policy.name}?`, body: "Learning tasks will again make versions that pass the off-policy gate live (or start a rollout, where automatic rollouts are configured).", confirm: "Resume", reasonRequired: false, run: (reason) => setPause(policy.name, false, reason) }).then((ok) => ok && reload()) }, "Resume automatic promotion")
        : h("button#pause", { onclick: () => confirmDialog({ title: `Pause automatic promotion of ${policy.name}?`, body: `New versions from learning tasks will be registered as candidates, not made live and not rolled out, until you promote them or resume. Rollouts already running are not affected: pause them on their own.${data.pause_enforced ? "" : ` ${unenforced}`}`, confirm: "Pause promotion", reasonRequired: false, run: (reason) => setPause(policy.name, true, reason) }).then((ok) => ok && reload()) }, "Pause automatic promotion"),
    );
    if (policy.rollback_to && !policy.rollout) {
      actions.append(
        h("button.danger#rollback", { onclick: () => confirmDialog({ title: `Roll ${policy.name} back to v${policy.rollback_to}?`, body: `v${policy.live_version} stops serving at once; v${policy.rollback_to}, the version it was trained from, takes all traffic. The reason is kept in the audit log.`, confirm: `Roll back to v${policy.rollback_to}`, danger: true, reasonRequired: true, run: (reason) => setLive(policy.name, policy.rollback_to, reason) }).then((ok) => ok && reload()) }, `Roll back to v${policy.rollback_to}`),
      );
    }
  }
  const auto = policy.auto_rollout;
  const head = h(
    "div.policy-head",
    h("h2", policy.name),
    policy.live_version ? h("span.badge.live#live-version", `live v${policy.live_version}`) : h("span.badge.warn", "no live version"),
    paused ? h("span.badge.warn#paused", { title: policy.pause.reason || "" }, "promotion paused") : h("span.badge", "automatic promotion on"),
    auto ? h(`span.badge${paused ? ".plain" : ".accent"}#auto-rollout`, { title: "settings.rollouts.<policy>.auto" }, `new versions start a ${KIND[auto.kind || "canary"] || auto.kind}${auto.steps ? ` ${auto.steps.map((p) => `${p}%`).join(" → ")}` : ""}${paused ? " (held while paused)" : ""}`) : null,
    h("span.muted", `decision point ${policy.decision_point}`),
    actions,
  );
  const card = h("section.panel", { dataset: { policy: policy.name }, style: { marginBottom: "16px" } }, head);
  if (paused) {
    card.append(h("p.muted", { style: { margin: "8px 0 0" } }, `Automatic promotion paused ${policy.pause.by ? `by ${policy.pause.by} ` : ""}`, timeCell(policy.pause.at), policy.pause.reason ? `: “${policy.pause.reason}”` : ""));
    if (!data.pause_enforced) card.append(h("div.note.warn#pause-not-enforced", { style: { marginTop: "8px" } }, unenforced));
  }
  card.append(
    policy.rollout
      ? activeRollout(policy.rollout, policy, admin, reload)
      : h("div.section-gap", h("div.note#no-rollout", "No rollout is running: the live version serves everyone.", admin && policy.candidates.length ? " Promote a candidate below to switch at once, or start a canary with POST /v1/rollouts (or agent-lightning rollout start)." : "")),
  );
  if (policy.past_rollouts.length) card.append(h("div.section-gap", h("h3", "Past rollouts"), pastRollouts(policy.past_rollouts)));

  const compared = [policy.live, policy.baseline, ...policy.candidates].filter(Boolean);
  const unique = [...new Map(compared.map((v) => [v.version, v])).values()];
  card.append(
    h("div.section-gap", h("h3", `Versions · last ${data.guardrail_window_days} days`), unique.length ? versionTable(unique, policy, admin, reload) : emptyState("No versions yet.")),
    h(
      "div.grid.two.section-gap",
      h("div", h("h3", "Off-policy estimate at the gate"), gatePlot(unique)),
      h("div", h("h3", "History"), history(policy.history)),
    ),
  );
  return card;
}

// -- the active rollout ---------------------------------------------------------------------

function activeRollout(ro, policy, admin, reload) {
  const metrics = ro.metrics || {};
  const [statusText, tone] = STATUS[ro.status] || [ro.status, ""];
  const controls = h("div.actions");
  if (admin) {
    if (ro.status === "running") {
      controls.append(h("button#rollout-pause", { onclick: () => confirmDialog({ title: `Pause the ${KIND[ro.kind]} of v${ro.candidate_version}?`, body: `The share stays at ${ro.percent}% and users keep their arm; no further step is taken. Guardrails keep watching: a regression still rolls it back.`, confirm: "Pause rollout", reasonRequired: false, run: (reason) => rolloutAction(ro, "pause", { reason }) }).then((ok) => ok && reload()) }, "Pause"));
    } else if (ro.status === "paused") {
      controls.append(h("button#rollout-resume", { onclick: () => confirmDialog({ title: `Resume the ${KIND[ro.kind]} of v${ro.candidate_version}?`, body: "Steps are taken again once each has enough decisions without a guardrail regression.", confirm: "Resume rollout", reasonRequired: false, run: (reason) => rolloutAction(ro, "resume", { reason }) }).then((ok) => ok && reload()) }, "Resume"));
    }
    controls.append(
      h("button.primary#rollout-promote", { onclick: () => confirmDialog({ title: `Promote v${ro.candidate_version} of ${policy.name} now?`, body: `Skips the remaining steps: v${ro.candidate_version} becomes live for everyone and the rollout ends as promoted.`, confirm: `Promote v${ro.candidate_version}`, reasonRequired: false, run: (reason) => rolloutAction(ro, "promote", { reason }) }).then((ok) => ok && reload()) }, "Promote now"),
      h("button.danger#rollout-rollback", { onclick: () => confirmDialog({ title: `Roll back the ${KIND[ro.kind]} of v${ro.candidate_version}?`, body: `Everyone goes back to v${ro.baseline_version} at once and the rollout ends. The reason is kept with the rollout and in the audit log.`, confirm: "Roll back", danger: true, reasonRequired: true, run: (reason) => rolloutAction(ro, "rollback", { reason }) }).then((ok) => ok && reload()) }, "Roll back"),
    );
  }
  const regressions = (metrics.guardrails || []).filter((g) => g.decision === "regression").length;
  // Why it was started (the row's own reason follows the latest step; the step log has those).
  const why = ro.history.length ? ro.history[0].reason : ro.reason;
  const box = h(
    "div.rollout.section-gap#rollout",
    { dataset: { rolloutId: ro.id, status: ro.status, kind: ro.kind } },
    h(
      "div.rollout-head",
      h("span.badge.accent.kind", KIND[ro.kind] || ro.kind),
      h("span.versions", h("span.baseline-v", `v${ro.baseline_version}`), h("span.arrow", "→"), h("span.candidate-v", `v${ro.candidate_version}`)),
      h(`span.badge.${tone}#rollout-status`, statusText),
      regressions ? h("span.badge.bad", `${regressions} guardrail${regressions > 1 ? "s" : ""} regressed`) : null,
      h("span.muted.nowrap", "started ", timeCell(ro.started_at), ro.created_by ? ` by ${ro.created_by}` : ""),
      controls,
    ),
    why ? h("p.muted.rollout-reason", `“${why}”`) : null,
    schedule(ro, metrics),
    split(ro),
    h(
      "div.grid.two.section-gap",
      h("div", h("h3", "Guardrails · sequential test"), guardrails(metrics, ro)),
      h("div", h("h3", "Arms since the start"), arms(metrics), h("h3.section-gap", "Share over time"), shareChart(ro)),
    ),
    ro.kind === "ab" && metrics.ab ? abVerdict(metrics.ab) : null,
    h("details.section-gap", h("summary", `Steps taken (${ro.history.length})`), stepLog(ro.history, "rollout-log")),
  );
  return box;
}

function schedule(ro, metrics) {
  const steps = ro.schedule || [];
  const need = metrics.min_decisions_per_step || ro.min_decisions_per_step;
  const have = metrics.step_decisions ?? 0;
  const list = h("ol.stepper#rollout-steps");
  steps.forEach((step, i) => {
    const current = step.state === "current";
    const li = h(
      `li.${step.state}`,
      { dataset: { state: step.state, percent: step.percent } },
      h("span.node", step.state === "done" ? "✓" : String(i + 1)),
      h("span.pct", `${step.percent}%`),
      h("span.when", step.reached_at ? fmtAgo(step.reached_at) : current ? "" : "next"),
    );
    if (current && ro.kind !== "flag") {
      const share = Math.min(1, need ? have / need : 0);
      li.append(h("div.step-progress", { title: `${have} of ${need} candidate decisions needed before the next step` }, h("i", { style: { width: `${share * 100}%` } })), h("span.step-count#step-decisions", `${fmtInt(have)} / ${fmtInt(need)} decisions`));
    }
    list.append(li);
  });
  if (ro.kind === "canary" || ro.kind === "blue_green") list.append(h("li.goal", h("span.node", "★"), h("span.pct", "live"), h("span.when", "promoted")));
  return h("div.section-gap", list);
}

function split(ro) {
  const c = Math.max(0, Math.min(100, ro.percent));
  const segment = ro.segment ? ` of ${ro.segment.attribute} ∈ {${ro.segment.values.join(", ")}}` : "";
  return h(
    "div.split#traffic-split",
    { title: `${c}% of units${segment} on the candidate` },
    h("div.bar", h("i.cand", { style: { width: `${c}%` } }), h("i.base", { style: { width: `${100 - c}%` } })),
    h("div.labels", h("span", h("b", `${c}%`), ` on candidate v${ro.candidate_version}${segment}`), h("span", h("b", `${100 - c}%`), ` on baseline v${ro.baseline_version}`)),
  );
}

function guardrails(metrics, ro) {
  const rows = metrics.guardrails || [];
  if (!rows.length) return emptyState("No guardrails.", "This rollout is not watched: nothing rolls it back automatically.");
  const minimum = metrics.min_samples || 30;
  return h(
    "div.guardrails#rollout-guardrails",
    rows.map((g) => {
      const meta = METRIC[g.metric] || { label: g.metric, value: fmtNum, diff: (v) => fmtNum(v) };
      const [word, tone] = { ok: ["within limits", "good"], regression: ["regression", "bad"], collecting: ["collecting data", ""] }[g.decision] || [g.decision, ""];
      const plot = h("div.g-plot");
      let caption;
      if (g.decision === "collecting") {
        const n = Math.min(g.n_candidate, g.n_baseline ?? g.n_candidate);
        caption = `needs ${minimum} per arm · have ${fmtInt(g.n_candidate)} vs ${fmtInt(g.n_baseline)}`;
        plot.append(h("div.step-progress.wide", { title: caption }, h("i", { style: { width: `${Math.min(100, (100 * n) / minimum)}%` } })));
      } else {
        const opts = plotOptions(g);
        caption = opts.caption;
        queueMicrotask(() => guardrail(plot, opts));
      }
      return h(
        "div.g-row",
        { dataset: { metric: g.metric, decision: g.decision } },
        h(
          "div.g-name",
          h("b", meta.label),
          h("span.faint", g.direction === "higher_is_better" ? " higher is better" : " lower is better"),
          h("div.g-values", h("span.cand", meta.value(g.candidate)), h("span.faint", " vs "), h("span.base", meta.value(g.baseline)), h("span.faint", ` (n=${fmtInt(g.n_candidate)} vs ${fmtInt(g.n_baseline)})`)),
        ),
        h("div.g-test", plot, h("div.g-caption.faint", caption)),
        h(`span.badge.${tone || "plain"}.decision`, word),
      );
    }),
    h("p.faint.g-foot", `Always-valid ${fmtPct(1 - ro.alpha, 0)} intervals (mSPRT confidence sequences, alpha split across guardrails): looking every few seconds does not inflate false rollbacks. A guardrail fails once its whole interval is in the red zone.`),
  );
}

/** What each kind of test compares, as options for the guardrail chart. */
function plotOptions(g) {
  const [low, high] = g.interval || [null, null];
  const meta = METRIC[g.metric] || {};
  const higher = g.direction === "higher_is_better";
  if (g.test === "tail_share") {
    return { estimate: g.estimate, low, high, limit: 0.01, regressionAbove: true, decision: g.decision, format: (v) => fmtPct(v, 1), label: "share of slow candidate decisions", caption: `share of candidate decisions slower than ${fmtMs(g.limit)} (limit 1%)` };
  }
  if (g.test === "threshold") {
    return { estimate: g.estimate, low, high, limit: g.limit, regressionAbove: !higher, decision: g.decision, format: g.metric === "mean_reward" ? (v) => v.toFixed(2) : (v) => fmtPct(v, 1), label: "candidate value", caption: `candidate against the threshold ${meta.value ? meta.value(g.limit) : g.limit}` };
  }
  const points = g.metric !== "mean_reward";
  const format = points ? (v) => `${(v * 100).toFixed(1)}pt` : (v) => v.toFixed(2);
  return { estimate: g.estimate, low, high, limit: g.limit, zero: true, regressionAbove: !higher, decision: g.decision, format, label: "candidate − baseline", caption: `candidate − baseline ${meta.diff ? meta.diff(g.estimate) : g.estimate}, allowed ${meta.diff ? meta.diff(g.limit) : g.limit}` };
}

function arms(metrics) {
  const c = metrics.candidate;
  const b = metrics.baseline;
  if (!c || !b) return emptyState("No data yet.");
  const rows = [
    ["decisions", fmtInt(b.decisions), fmtInt(c.decisions), null],
    ["rewarded", fmtInt(b.rewarded), fmtInt(c.rewarded), null],
    ...["mean_reward", "resolution_rate", "escalation_rate", "error_rate", "latency_p99"].map((k) => {
      const meta = METRIC[k];
      const d = c[k] === null || c[k] === undefined || b[k] === null || b[k] === undefined ? null : c[k] - b[k];
      const better = d === null || Math.abs(d) < 1e-9 ? null : (k === "mean_reward" || k === "resolution_rate") === d > 0;
      const deltaText = d === null ? "" : k === "latency_p99" ? signed(d, (v) => `${Math.round(v)} ms`) : meta.diff(d);
      return [meta.label.toLowerCase(), meta.value(b[k]), meta.value(c[k]), d === null ? null : h(`span.${better === null ? "faint" : better ? "delta-up" : "delta-down"}`, deltaText)];
    }),
  ];
  return h(
    "div",
    barList(
      [
        { label: `candidate v${c.version}`, value: c.decisions, color: PALETTE[0] },
        { label: `baseline v${b.version}`, value: b.decisions, color: "#94a3b8" },
      ],
      { format: (v) => `${fmtInt(v)} decisions` },
    ),
    h(
      "div.table-wrap.section-gap",
      h(
        "table.arms#rollout-arms",
        h("thead", h("tr", h("th", ""), h("th.r", `baseline v${b.version}`), h("th.r", `candidate v${c.version}`), h("th.r", "Δ"))),
        h("tbody", rows.map(([label, base, cand, delta]) => h("tr", { dataset: { row: label } }, h("td", label), h("td.r.num", base), h("td.r.num", h("b", cand)), h("td.r.num", delta)))),
      ),
    ),
  );
}

function shareChart(ro) {
  const entries = ro.history.filter((e) => e.at);
  if (!entries.length) return emptyState("No steps yet.");
  const xs = [];
  const ys = [];
  entries.forEach((e, i) => {
    const t = new Date(e.at);
    if (i) {
      xs.push(t);
      ys.push(ys[ys.length - 1]);
    }
    xs.push(t);
    ys.push(e.percent ?? 0);
  });
  if (["running", "paused"].includes(ro.status)) {
    xs.push(new Date());
    ys.push(ys[ys.length - 1]);
  }
  const el = h("div#rollout-share");
  queueMicrotask(() => lineChart(el, { x: xs, series: [{ name: "candidate share", values: ys, color: PALETTE[0], area: true }], yDomain: [0, 100], yFormat: (v) => `${Math.round(v)}%`, height: 140, label: "share of units on the candidate over time" }));
  return el;
}

function abVerdict(ab) {
  const interval = ab.interval ? ` [${fmtNum(ab.interval[0])}, ${fmtNum(ab.interval[1])}]` : "";
  const text = ab.winner ? `The ${ab.winner} wins on mean reward.` : "No winner yet: the interval of the difference still includes zero.";
  return h("div.note.section-gap#ab-verdict", `A/B · mean reward ${fmtNum(ab.candidate)} (candidate, n=${fmtInt(ab.n_candidate)}) vs ${fmtNum(ab.baseline)} (baseline, n=${fmtInt(ab.n_baseline)})${ab.difference !== undefined ? `, difference ${fmtNum(ab.difference)}${interval}` : ""}. ${text}`);
}

// -- past rollouts --------------------------------------------------------------------------

function pastRollouts(items) {
  return h(
    "ul.past#past-rollouts",
    items.map((ro) => {
      const out = ro.outcome || {};
      const [text, tone] = STATUS[ro.status] || [ro.status, ""];
      const reached = out.max_percent || 0;
      const failed = (out.guardrails || []).filter((g) => g.decision === "regression");
      return h(
        "li",
        { dataset: { rolloutId: ro.id, status: ro.status } },
        h(
          "div.past-row",
          h(`span.badge.${tone}`, text),
          h("span.badge.plain", KIND[ro.kind] || ro.kind),
          h("b.nowrap", `v${ro.baseline_version} → v${ro.candidate_version}`),
          h("span.reach", { title: `the candidate reached ${reached}% of units` }, h("i", { style: { width: `${reached}%` } })),
          h("span.faint.nowrap", `reached ${reached}%`),
          h("span.nowrap", timeCell(out.at || ro.ended_at)),
          out.actor ? h("span.faint.nowrap.past-actor", `by ${out.actor}`) : null,
          sparkline(ro.history.map((e) => e.percent ?? 0), { width: 90, height: 22, domain: [0, 100], color: tone === "bad" ? "#dc2626" : PALETTE[0] }),
        ),
        out.reason ? h("div.reason.past-reason", `“${out.reason}”`) : null,
        failed.length ? h("div.faint", `failed: ${failed.map((g) => (METRIC[g.metric] || { label: g.metric }).label.toLowerCase()).join(", ")}`) : null,
        h("details", h("summary", `Steps (${ro.history.length})`), stepLog(ro.history)),
      );
    }),
  );
}

function stepLog(entries, id) {
  const label = { start: "started", advance: "advanced", pause: "paused", resume: "resumed", promote: "promoted", rollback: "rolled back", abort: "aborted", switch_back: "switched back" };
  const tone = { promote: "good", rollback: "bad", abort: "warn", switch_back: "bad", pause: "warn" };
  return h(
    `ul.steps${id ? `#${id}` : ""}`,
    [...entries].reverse().map((e) =>
      h(
        "li",
        { dataset: { action: e.action } },
        h("span", timeCell(e.at)),
        h("span", h(`span.badge${tone[e.action] ? `.${tone[e.action]}` : ""}`, label[e.action] || e.action), " ", h("span.faint", `${e.percent ?? 0}%`)),
        h("span", [e.reason ? h("span.reason", e.reason) : null, e.actor ? h("span.faint", e.actor) : null].filter(Boolean).flatMap((part, i) => (i ? [" · ", part] : [part]))),
      ),
    ),
  );
}

// -- versions, gate estimates, history ------------------------------------------------------

function versionTable(versions, policy, admin, reload) {
  // The live version is compared with its parent (the rollback target); candidates with live.
  const live = versions.find((v) => v.live);
  const parent = versions.find((v) => v.version === policy.rollback_to);
  const reference = (v) => (v.live ? parent : v.version === policy.rollback_to ? null : live);
  const inRollout = policy.rollout ? policy.rollout.candidate_version : null;
  const delta = (value, ref, higherIsBetter = true, points = true) => {
    if (value === null || value === undefined || ref === null || ref === undefined) return null;
    const d = value - ref;
    if (Math.abs(d) < 0.0005) return h("div.faint", "±0");
    const good = higherIsBetter ? d > 0 : d < 0;
    const text = points ? `${(d * 100).toFixed(1)} pt` : d.toFixed(3);
    return h(`div.${good ? "delta-up" : "delta-down"}`, `${d > 0 ? "+" : ""}${text}`);
  };
  return h(
    "div.table-wrap",
    h(
      "table.guardrails",
      h(
        "thead",
        h("tr", h("th", "version"), h("th", "role"), h("th.r", "decisions"), h("th.r", "rewards"), h("th.r", "resolution"), h("th.r", "mean reward"), h("th.r", "escalation"), h("th", "compared with"), admin ? h("th", "") : null),
      ),
      h(
        "tbody",
        versions.map((v) => {
          const o = v.observed || {};
          const ref = reference(v);
          const r = (ref && ref.observed) || {};
          const role = v.live
            ? h("span.badge.live", "live")
            : v.version === inRollout
              ? h("span.badge.accent", `rolling out · ${policy.rollout.percent}%`)
              : v.version === policy.rollback_to
                ? h("span.badge", "baseline (parent)")
                : h("span.badge.accent", "candidate");
          return h(
            "tr",
            { dataset: { version: v.version } },
            h("td", h("b", `v${v.version}`)),
            h("td", role),
            h("td.r.num", fmtInt(o.decisions)),
            h("td.r.num", fmtInt(o.rewards)),
            h("td.r.num", fmtPct(o.resolution), ref ? delta(o.resolution, r.resolution) : null),
            h("td.r.num", o.mean_reward === null || o.mean_reward === undefined ? "–" : fmtNum(o.mean_reward), ref ? delta(o.mean_reward, r.mean_reward, true, false) : null),
            h("td.r.num", fmtPct(o.escalation), ref ? delta(o.escalation, r.escalation, false) : null),
            h("td", ref ? h("span.faint", ` vs v${ref.version}`) : h("span.faint", "–")),
            admin
              ? h(
                  "td.r",
                  v.live
                    ? null
                    : h("button.small.promote", { dataset: { version: v.version }, onclick: () => confirmDialog({ title: `Make v${v.version} of ${policy.name} live?`, body: `All traffic moves from v${policy.live_version ?? "-"} to v${v.version} at once, without a canary.${policy.rollout ? " The running rollout is aborted, since its baseline stops being live." : ""} The reason is kept in the audit log.`, confirm: `Promote v${v.version}`, reasonRequired: false, run: (reason) => setLive(policy.name, v.version, reason) }).then((ok) => ok && reload()) }, "Make live"),
                )
              : null,
          );
        }),
      ),
    ),
    live && live.observed === null ? h("p.muted", "No decisions by the live version in this window yet.") : null,
  );
}

function gatePlot(versions) {
  const rows = [];
  [...versions].sort((a, b) => b.version - a.version).forEach((v, i) => {
    const est = v.estimates;
    if (!est || !est.candidate) return;
    rows.push({ label: `v${v.version} (candidate)`, value: est.candidate.value, low: est.candidate.ci_low, high: est.candidate.ci_high, color: PALETTE[i % PALETTE.length] });
    if (est.baseline) rows.push({ label: v.parent_version ? `v${v.parent_version} (live then)` : "live then", value: est.baseline.value, low: est.baseline.ci_low, high: est.baseline.ci_high, color: "#94a3b8" });
  });
  if (!rows.length) return emptyState("No estimates.", "Versions registered by learning tasks carry the estimate that let them through the gate.");
  const el = h("div.gate-plot");
  queueMicrotask(() => intervals(el, { rows, format: (v) => v.toFixed(2) }));
  return el;
}

function history(items) {
  if (!items.length) return emptyState("No changes yet.");
  const label = {
    promote: ["promoted", "good"],
    rollback: ["rolled back", "bad"],
    register_live: ["learned, live", "good"],
    register: ["learned", ""],
    promotion_pause: ["promotion paused", "warn"],
    promotion_resume: ["promotion resumed", ""],
    create: ["created", ""],
    rollout_start: ["rollout started", "accent"],
    rollout_advance: ["step passed", ""],
    rollout_pause: ["rollout paused", "warn"],
    rollout_resume: ["rollout resumed", ""],
    rollout_promote: ["rollout promoted", "good"],
    rollout_rollback: ["rolled back", "bad"],
    rollout_abort: ["rollout aborted", "warn"],
    rollout_switch_back: ["switched back", "bad"],
  };
  return h(
    "ul.steps#history",
    items.slice(0, 40).map((item) => {
      const [text, tone] = label[item.kind] || [item.action, ""];
      let what = "";
      if (item.kind === "promote" || item.kind === "rollback") what = `v${item.from_version ?? "–"} → v${item.to_version ?? "none"}`;
      else if (item.kind === "register" || item.kind === "register_live") what = `v${item.to_version}${item.from_version ? ` from v${item.from_version}` : ""}`;
      else if (item.kind.startsWith("rollout_")) {
        const moving = ["rollout_start", "rollout_advance", "rollout_pause", "rollout_resume"].includes(item.kind);
        what = `v${item.from_version} → v${item.to_version}${moving && item.percent !== undefined && item.percent !== null ? ` at ${item.percent}%` : ""}`;
      }
      return h(
        "li",
        { dataset: { kind: item.kind } },
        h("span", timeCell(item.at)),
        h("span", h(`span.badge${tone ? `.${tone}` : ""}`, text)),
        h(
          "span",
          [what ? h("span", what) : null, item.reason ? h("span.reason", `“${item.reason}”`) : null, item.actor ? h("span.faint", item.actor) : null]
            .filter(Boolean)
            .flatMap((part, i) => (i ? [" · ", part] : [part])),
        ),
      );
    }),
  );
}

// -- actions --------------------------------------------------------------------------------

async function rolloutAction(ro, verb, body) {
  const done = await api(`/v1/rollouts/${encodeURIComponent(ro.id)}/${verb}`, { method: "POST", body });
  const said = { pause: "paused", resume: "resumed", promote: "promoted", rollback: "rolled back" }[verb];
  toast(`${ro.policy}: rollout of v${ro.candidate_version} ${said}`);
  return done;
}

async function setLive(name, version, reason) {
  await api(`/v1/policies/${encodeURIComponent(name)}/live`, { method: "PUT", body: { version, reason } });
  toast(`${name}: v${version} is live`);
}

async function setPause(name, paused, reason) {
  await api("/v1/dashboard/rollouts/pause", { method: "PUT", body: { policy: name, paused, reason } });
  toast(paused ? `${name}: automatic promotion paused` : `${name}: automatic promotion resumed`);
}

/** A modal asking for a reason; resolves true once `run(reason)` succeeded. */
function confirmDialog({ title, body, confirm, danger = false, reasonRequired, run }) {
  return new Promise((resolve) => {
    const reason = h("textarea#reason", { rows: 3, maxLength: 2000, placeholder: reasonRequired ? "Why? (kept in the audit log)" : "Optional note for the audit log" });
    const error = h("div.error-text");
    const ok = h(`button${danger ? ".danger" : ".primary"}#confirm`, { type: "submit" }, confirm);
    const dialog = h(
      "dialog",
      h(
        "form",
        {
          method: "dialog",
          onsubmit: async (ev) => {
            ev.preventDefault();
            if (reasonRequired && !reason.value.trim()) {
              error.textContent = "Give a reason: it is what the next person will read.";
              return;
            }
            ok.disabled = true;
            try {
              await run(reason.value.trim());
              dialog.close();
              dialog.remove();
              resolve(true);
            } catch (err) {
              error.textContent = err.message;
              ok.disabled = false;
            }
          },
        },
        h("h2", title),
        h("p", body),
        h("label", { for: "reason" }, reasonRequired ? "Reason" : "Note"),
        reason,
        error,
        h("div.buttons", h("button", { type: "button", onclick: () => { dialog.close(); dialog.remove(); resolve(false); } }, "Cancel"), ok),
      ),
    );
    document.body.append(dialog);
    dialog.showModal();
    reason.focus();
  });
}
