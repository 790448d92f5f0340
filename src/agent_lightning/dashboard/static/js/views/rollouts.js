// Rollouts: the live version of each policy, the candidates waiting, how they compare
// (guardrails), the history of promotions and rollbacks, and, for AgentAdmin only, the controls.

import { api, can } from "../api.js";
import { PALETTE, intervals } from "../charts.js";
import { emptyState, fmtInt, fmtNum, fmtPct, h, timeCell, toast } from "../dom.js";

function panel(title, subtitle, ...body) {
  return h("section.panel", h("header", h("div", h("h2", title), subtitle ? h("p", subtitle) : null)), body);
}

export async function render(main, { navigate }) {
  const admin = can("policy:promote");
  main.append(
    h(
      "div.page-head",
      h("div", h("h1", "Rollouts"), h("p", "Which version serves traffic, what is waiting, and every switch with its reason.")),
      admin ? null : h("span.badge#read-only", "read only: promoting and rolling back need the AgentAdmin role"),
    ),
  );
  const data = await api("/v1/dashboard/rollouts");
  if (!data.policies.length) {
    main.append(h("div.panel", emptyState("No policies yet.", "A policy appears here once it is created; its versions come from learning tasks.")));
    return;
  }
  main.append(
    h("div.note", { style: { marginBottom: "16px" } }, "Switching the live version moves all traffic at once (canary and A/B rollouts come with the update publisher). Pausing stops learning tasks from making new versions live: they are registered as candidates for you to promote."),
  );
  for (const policy of data.policies) main.append(policyCard(policy, admin, data, () => navigate("#/rollouts")));
}

function policyCard(policy, admin, data, reload) {
  const windowDays = data.guardrail_window_days;
  const paused = policy.pause && policy.pause.paused;
  const unenforced = "This server's learning controller does not check the pause yet: the pause is recorded and audited, but learning tasks can still make new versions live.";
  const actions = h("div.actions");
  if (admin) {
    actions.append(
      paused
        ? h("button#resume", { onclick: () => confirmDialog({ title: `Resume automatic promotion of ${policy.name}?`, body: "Learning tasks will again make versions that pass the off-policy gate live.", confirm: "Resume", reasonRequired: false, run: (reason) => setPause(policy.name, false, reason) }).then((ok) => ok && reload()) }, "Resume")
        : h("button#pause", { onclick: () => confirmDialog({ title: `Pause ${policy.name}?`, body: `New versions from learning tasks will be registered as candidates and not made live until you promote them or resume.${data.pause_enforced ? "" : ` ${unenforced}`}`, confirm: "Pause", reasonRequired: false, run: (reason) => setPause(policy.name, true, reason) }).then((ok) => ok && reload()) }, "Pause"),
    );
    if (policy.rollback_to) {
      actions.append(
        h("button.danger#rollback", { onclick: () => confirmDialog({ title: `Roll ${policy.name} back to v${policy.rollback_to}?`, body: `v${policy.live_version} stops serving at once; v${policy.rollback_to}, the version it was trained from, takes all traffic. The reason is kept in the audit log.`, confirm: `Roll back to v${policy.rollback_to}`, danger: true, reasonRequired: true, run: (reason) => setLive(policy.name, policy.rollback_to, reason) }).then((ok) => ok && reload()) }, `Roll back to v${policy.rollback_to}`),
      );
    }
  }
  const head = h(
    "div.policy-head",
    h("h2", policy.name),
    policy.live_version ? h("span.badge.live#live-version", `live v${policy.live_version}`) : h("span.badge.warn", "no live version"),
    paused ? h("span.badge.warn#paused", { title: policy.pause.reason || "" }, "promotion paused") : h("span.badge", "automatic promotion on"),
    h("span.muted", `decision point ${policy.decision_point}`),
    actions,
  );
  const card = h("section.panel", { dataset: { policy: policy.name }, style: { marginBottom: "16px" } }, head);
  if (paused) {
    card.append(h("p.muted", { style: { margin: "8px 0 0" } }, `Paused ${policy.pause.by ? `by ${policy.pause.by} ` : ""}`, timeCell(policy.pause.at), policy.pause.reason ? `: “${policy.pause.reason}”` : ""));
    if (!data.pause_enforced) card.append(h("div.note.warn#pause-not-enforced", { style: { marginTop: "8px" } }, unenforced));
  }
  const compared = [policy.live, policy.baseline, ...policy.candidates].filter(Boolean);
  const unique = [...new Map(compared.map((v) => [v.version, v])).values()];
  card.append(
    h("div.section-gap", h("h3", `Guardrails · last ${windowDays} days`), unique.length ? guardrails(unique, policy, admin, reload) : emptyState("No versions yet.")),
    h(
      "div.grid.two.section-gap",
      h("div", h("h3", "Off-policy estimate at the gate"), gatePlot(unique)),
      h("div", h("h3", "Steps"), history(policy.history)),
    ),
  );
  return card;
}

function guardrails(versions, policy, admin, reload) {
  // The live version is compared with its parent (the rollback target); candidates with live.
  const live = versions.find((v) => v.live);
  const parent = versions.find((v) => v.version === policy.rollback_to);
  const reference = (v) => (v.live ? parent : v.version === policy.rollback_to ? null : live);
  const delta = (value, ref, higherIsBetter = true, points = true) => {
    if (value === null || value === undefined || ref === null || ref === undefined) return null;
    const d = value - ref;
    if (Math.abs(d) < 0.0005) return h("div.faint", "±0");
    const good = higherIsBetter ? d > 0 : d < 0;
    const text = points ? `${(d * 100).toFixed(1)} pt` : d.toFixed(3);
    return h(`div.${good ? "delta-up" : "delta-down"}`, `${d > 0 ? "+" : ""}${text}`);
  };
  const versus = (v) => {
    const ref = reference(v);
    return ref ? h("span.faint", ` vs v${ref.version}`) : null;
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
          const role = v.live ? h("span.badge.live", "live") : v.version === policy.rollback_to ? h("span.badge", "baseline (parent)") : h("span.badge.accent", "candidate");
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
            h("td", ref ? versus(v) : h("span.faint", "–")),
            admin
              ? h(
                  "td.r",
                  v.live
                    ? null
                    : h("button.small.promote", { dataset: { version: v.version }, onclick: () => confirmDialog({ title: `Make v${v.version} of ${policy.name} live?`, body: `All traffic moves from v${policy.live_version ?? "-"} to v${v.version} at once. The reason is kept in the audit log.`, confirm: `Promote v${v.version}`, reasonRequired: false, run: (reason) => setLive(policy.name, v.version, reason) }).then((ok) => ok && reload()) }, "Promote"),
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
    pause: ["paused", "warn"],
    resume: ["resumed", ""],
    create: ["created", ""],
  };
  return h(
    "ul.steps#history",
    items.slice(0, 30).map((item) => {
      const [text, tone] = label[item.kind] || [item.action, ""];
      let what = "";
      if (item.kind === "promote" || item.kind === "rollback") what = `v${item.from_version ?? "–"} → v${item.to_version ?? "none"}`;
      else if (item.kind === "register" || item.kind === "register_live") what = `v${item.to_version}${item.from_version ? ` from v${item.from_version}` : ""}`;
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
