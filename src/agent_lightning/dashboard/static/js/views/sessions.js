// Sessions: recent conversations, and the timeline of one: messages, decisions with the
// probability of every candidate action, rewards, model calls and trace spans.

import { api } from "../api.js";
import { append, code, emptyState, fmtInt, fmtMs, fmtNum, fmtPct, fmtTime, h, redactedText, timeCell } from "../dom.js";

const KIND = {
  event: { label: "Message", color: "#4f46e5", letter: "M" },
  decision: { label: "Decision", color: "#0891b2", letter: "D" },
  reward: { label: "Reward", color: "#16a34a", letter: "R" },
  llm_call: { label: "Model call", color: "#9333ea", letter: "L" },
  span: { label: "Span", color: "#64748b", letter: "S" },
};

export async function render(main, { rest, params, navigate }) {
  if (rest.length && rest[0]) return timeline(main, rest[0]);
  main.append(h("div.page-head", h("div", h("h1", "Sessions"), h("p", "Conversations with the most recent activity. Open one to see what was said, decided and earned."))));
  const search = h("input#session-search", { placeholder: "Open a session id…", value: "", spellcheck: false });
  const user = h("input#user-filter", { placeholder: "Filter by user id", value: params.user || "", spellcheck: false });
  main.append(
    h(
      "form.toolbar",
      {
        style: { marginBottom: "14px" },
        onsubmit: (ev) => {
          ev.preventDefault();
          if (search.value.trim()) navigate(`#/sessions/${encodeURIComponent(search.value.trim())}`);
          else navigate(user.value.trim() ? `#/sessions?user=${encodeURIComponent(user.value.trim())}` : "#/sessions");
        },
      },
      search,
      user,
      h("button", { type: "submit" }, "Go"),
    ),
  );
  const data = await api("/v1/dashboard/sessions", { params: { limit: 50, user_id: params.user } });
  if (!data.items.length) {
    main.append(h("div.panel", emptyState(params.user ? `No sessions for user ${params.user}.` : "No sessions yet.", h("span", "Pass a ", code("session_id"), " when you log events and decisions, e.g. ", code("agl.decide(actions, text=..., session_id=\"chat-42\")"), "."))));
    return;
  }
  main.append(
    h(
      "div.panel",
      h(
        "div.table-wrap",
        h(
          "table#sessions",
          h("thead", h("tr", h("th", "session"), h("th", "user"), h("th", "last activity"), h("th.r", "messages"), h("th.r", "decisions"), h("th.r", "rewards"), h("th.r", "reward total"), h("th", "policy versions"))),
          h(
            "tbody",
            data.items.map((s) =>
              h(
                "tr.click",
                { dataset: { session: s.session_id }, onclick: () => navigate(`#/sessions/${encodeURIComponent(s.session_id)}`) },
                h("td.mono", h("a", { href: `#/sessions/${encodeURIComponent(s.session_id)}` }, s.session_id)),
                h("td.mono", s.user_id || "–"),
                h("td", timeCell(s.last_at)),
                h("td.r.num", fmtInt(s.events)),
                h("td.r.num", fmtInt(s.decisions)),
                h("td.r.num", fmtInt(s.rewards)),
                h("td.r.num", s.rewards ? fmtNum(s.reward_sum, 2) : "–"),
                h("td", s.policy_versions.join(", ") || "–"),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

async function timeline(main, sessionId) {
  main.append(
    h(
      "div.page-head",
      h("div", h("a", { href: "#/sessions" }, "← Sessions"), h("h1", { style: { marginTop: "6px" } }, "Session ", h("span.mono", { style: { fontSize: "18px" } }, sessionId))),
    ),
  );
  const data = await api("/v1/dashboard/session", { params: { session_id: sessionId } });
  if (!data.items.length) {
    main.append(h("div.panel", emptyState("Nothing recorded for this session.", "Check the id; sessions of other apps are not visible here.")));
    return;
  }
  const s = data.summary || {};
  const counts = data.counts || {};
  main.append(
    h(
      "div.grid.kpis",
      stat("User", h("span.mono", { style: { fontSize: "15px" } }, s.user_id || "–")),
      stat("Started", h("span", { style: { fontSize: "15px" } }, fmtTime(s.started_at))),
      stat("Messages", fmtInt(counts.event || 0)),
      stat("Decisions", fmtInt(counts.decision || 0)),
      stat("Reward total", s.rewards ? fmtNum(s.reward_sum, 2) : "–"),
      stat("Model calls", fmtInt(counts.llm_call || 0)),
    ),
  );
  const note = data.truncated ? h("div.note.warn", { style: { marginBottom: "12px" } }, "This session is long: only the first items are shown.") : null;
  main.append(
    h(
      "section.panel",
      h("header", h("div", h("h2", "Timeline"), h("p", "Everything was redacted before it was stored: personal data appears as placeholders like <EMAIL>."))),
      note,
      h("ol.timeline#timeline", data.items.map(item)),
    ),
  );
}

function stat(label, value) {
  return h("div.panel.kpi", h("div.label", label), h("div.value", value));
}

function item(it) {
  const kind = KIND[it.type] || { label: it.type, color: "#64748b", letter: "?" };
  const body = h("div.card");
  const meta = h("div.meta", h("span.kind", kind.label), h("span", { title: it.time }, fmtTime(it.time, false)));
  body.append(meta);
  if (it.type === "event") {
    body.append(h("div.text", redactedText(it.text)));
    if (it.intent_prediction) meta.append(h("span.badge.accent", `intent ${it.intent_prediction}`));
    if (it.confidence !== null && it.confidence !== undefined) meta.append(h("span", `confidence ${fmtPct(it.confidence, 0)}`));
    if (it.feedback_score !== null && it.feedback_score !== undefined) meta.append(h("span.badge", `feedback ${fmtNum(it.feedback_score, 2)}`));
  } else if (it.type === "decision") {
    const version = it.policy && it.policy.version ? `${it.policy.name} v${it.policy.version}` : "uniform (no live version)";
    meta.append(h("span", `at ${it.decision_point}`), h("span.badge", version));
    body.append(h("div.text", "Chose ", h("b", it.action_id), ` with probability ${fmtPct(it.propensity)}`));
    append(body, [probabilities(it)]); // null when there are none: the DOM's append would print "null"
    const text = it.context && (it.context.text || it.context.query || it.context.message);
    if (text) body.append(h("details", h("summary", "context"), h("div.text", { style: { marginTop: "6px" } }, redactedText(text))));
  } else if (it.type === "reward") {
    const good = it.value > 0;
    meta.append(h("span", `source ${it.source || "–"}`));
    body.append(h("div.text", h(`span.badge${good ? ".good" : ".bad"}`, `${it.value > 0 ? "+" : ""}${fmtNum(it.value, 2)}`), it.correct_action_id ? h("span.muted", ` correct action: ${it.correct_action_id}`) : null, it.decision_id ? h("span.faint", ` for decision ${it.decision_id.slice(0, 13)}…`) : h("span.faint", " for the whole session")));
  } else if (it.type === "llm_call") {
    meta.append(h("span.badge", it.model || it.upstream_model || "model"), h("span", fmtMs(it.latency_ms)), h(`span.badge${it.status === "ok" ? ".good" : ".bad"}`, it.status));
    if (it.usage && it.usage.total_tokens) meta.append(h("span", `${fmtInt(it.usage.total_tokens)} tokens`));
    body.append(h("details", h("summary", "request and response (redacted)"), h("pre.json", JSON.stringify({ request: it.request, response: it.response, error: it.error || undefined }, null, 2))));
  } else if (it.type === "span") {
    append(meta, [h("span", fmtMs(it.duration_ms)), it.status && it.status.code === "error" ? h("span.badge.bad", "error") : null]);
    body.append(h("div.text", h("span.mono", it.name)), h("details", h("summary", "attributes"), h("pre.json", JSON.stringify(it.attributes || {}, null, 2))));
  }
  return h("li", { dataset: { type: it.type } }, h("span.dot", { style: { background: kind.color } }, kind.letter), body);
}

function probabilities(it) {
  const probs = Object.entries(it.probabilities || {}).sort((a, b) => b[1] - a[1]);
  if (!probs.length) return null;
  const top = probs.slice(0, 5);
  if (!top.some(([a]) => a === it.action_id)) top.push([it.action_id, it.propensity]);
  const rest = probs.length - top.length;
  return h(
    "div.probs",
    top.map(([action, p]) => [
      h(`span${action === it.action_id ? ".chosen" : ""}`, action),
      h("div.bar", h("i", { style: { width: `${Math.max(1, p * 100)}%` } })),
      h("span.num.muted", fmtPct(p)),
    ]),
    rest > 0 ? h("span.faint", { style: { gridColumn: "1 / -1" } }, `and ${rest} more actions`) : null,
  );
}
