// The audit log (AgentAdmin): who changed what, newest first, and whether the hash chain holds.

import { api } from "../api.js";
import { emptyState, fmtTime, h, timeCell } from "../dom.js";

const PAGE = 50;

function compact(value) {
  if (value === null || value === undefined) return "";
  const text = JSON.stringify(value);
  return text.length > 160 ? `${text.slice(0, 157)}…` : text;
}

export async function render(main, { params, navigate }) {
  const filter = h("input#action-filter", { placeholder: "Filter by action, e.g. policy.set_live", value: params.action || "", spellcheck: false });
  main.append(
    h(
      "div.page-head",
      h("div", h("h1", "Audit log"), h("p", "Every change of a policy, rollout, identity or rule, hash-chained so that tampering shows.")),
      h("form.toolbar", { onsubmit: (ev) => { ev.preventDefault(); navigate(filter.value.trim() ? `#/audit?action=${encodeURIComponent(filter.value.trim())}` : "#/audit"); } }, filter, h("button", { type: "submit" }, "Filter")),
    ),
  );
  const chain = h("div.panel#chain", h("span.muted", "Verifying the hash chain…"));
  main.append(chain);
  api("/v1/audit/verify")
    .then((result) => {
      chain.replaceChildren(
        h(
          "div.chain-ok",
          h(`span.badge${result.ok ? ".good" : ".bad"}`, result.ok ? "chain intact" : "chain broken"),
          h("span.muted", result.message || ""),
        ),
      );
    })
    .catch((err) => chain.replaceChildren(h("span.muted", `Could not verify: ${err.message}`)));

  const tbody = h("tbody");
  const more = h("button#more", { type: "button" }, "Load older entries");
  const table = h(
    "section.panel.section-gap",
    h(
      "div.table-wrap",
      h("table#audit", h("thead", h("tr", h("th", "#"), h("th", "when"), h("th", "actor"), h("th", "action"), h("th", "target"), h("th", "outcome"), h("th", "change"))), tbody),
    ),
    h("div", { style: { marginTop: "12px" } }, more),
  );
  main.append(table);
  let before = null;

  async function page() {
    more.disabled = true;
    const data = await api("/v1/dashboard/audit", { params: { limit: PAGE, before_seq: before, action: params.action } });
    if (!data.items.length && before === null) {
      table.replaceChildren(emptyState(params.action ? `No ${params.action} entries.` : "No audit entries for this app yet."));
      return;
    }
    for (const e of data.items) {
      tbody.append(
        h(
          "tr",
          { dataset: { seq: e.seq, action: e.action } },
          h("td.num.muted", String(e.seq)),
          h("td", { title: fmtTime(e.ts) }, timeCell(e.ts)),
          h("td.mono", { style: { minWidth: "120px", maxWidth: "220px", overflowWrap: "anywhere" } }, e.actor, h("div.faint", e.actor_kind)),
          h("td", h("span.badge", e.action)),
          h("td.mono", e.target_type, e.target_id ? ` ${e.target_id}` : ""),
          h("td", h(`span.badge${e.outcome === "ok" ? ".good" : ".bad"}`, e.outcome)),
          h("td.mono", { style: { fontSize: "11.5px", maxWidth: "420px", wordBreak: "break-word" } }, e.before ? h("div.faint", `before ${compact(e.before)}`) : null, e.after ? h("div", `after ${compact(e.after)}`) : null),
        ),
      );
    }
    before = data.next_before_seq;
    more.disabled = before === null;
    more.classList.toggle("hidden", before === null);
  }
  more.addEventListener("click", () => page());
  await page();
}
