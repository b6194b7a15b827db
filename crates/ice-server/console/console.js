// The ICE console: every view is a read of the /v1 API and the /v1/stream WebSocket, made with the token the user
// logs in with. The console has no authority of its own: it hides what the token's roles cannot do, and the server
// refuses it anyway.

const $ = (sel) => document.querySelector(sel);
const MAX_ROWS = 500; // events kept on screen; older ones fall off (the ledger keeps them)
const RUN_PATH = ["CREATED", "PROVISIONED", "CONTEXT_READY", "EXECUTING", "VALIDATING", "COMMITTED"];

const state = { token: sessionStorage.getItem("ice-token"), principal: "", roles: [], ws: null, approvalsWs: null,
  lastSeq: 0, filters: {}, lastApproved: new Map() };

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? `${body.code}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const r = await fetch(path, { method, headers: { Authorization: `Bearer ${state.token}`,
    ...(body ? { "Content-Type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

const can = (...roles) => roles.some((r) => state.roles.includes(r));
const short = (id) => (id ? String(id).slice(-8) : "");
const pretty = (v) => JSON.stringify(v, null, 2);
// Ledger times are microseconds since the epoch.
const when = (us) => (typeof us === "number" ? new Date(us / 1000).toISOString() : String(us ?? ""));
const cost = (c) => {
  const parts = Object.entries(c || {}).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`);
  return parts.length ? parts.join(", ") : "none declared";
};

// ---------- login ----------

async function login(token) {
  state.token = token;
  const me = await api("GET", "/v1/whoami");
  state.principal = me.principal;
  state.roles = String(me.roles || "").split(/[,\s]+/).filter(Boolean);
  sessionStorage.setItem("ice-token", token);
  $("#login").hidden = true;
  $("#tabs").hidden = false;
  $("#logout").hidden = false;
  $("#who").textContent = `${state.principal} (${state.roles.join(", ")})`;
  select("timeline");
  await Promise.all([loadTimeline(), loadApprovalHistory().then(refreshApprovals), banner()]);
  if (can("approver", "operator")) watchApprovals();
}

function logout() {
  sessionStorage.removeItem("ice-token");
  location.reload();
}

// ---------- tabs ----------

const TABS = ["timeline", "approvals", "runs", "budgets", "grants", "agents", "memory", "policy", "proof"];

function select(name) {
  for (const t of TABS) {
    const on = t === name;
    $(`#tab-${t}`).setAttribute("aria-selected", String(on));
    $(`#tab-${t}`).tabIndex = on ? 0 : -1;
    $(`#view-${t}`).hidden = !on;
  }
  if (name === "runs") loadRuns().catch(show);
  if (name === "budgets") loadBudgets().catch(show);
  if (name === "approvals") loadApprovalHistory().then(refreshApprovals).catch(show);
  if (name === "grants") loadGrants().catch(show);
  if (name === "agents") loadAgents().catch(show);
  if (name === "memory") loadMemory().catch(show);
  if (name === "policy") loadPolicy().catch(show);
}

// ---------- timeline ----------

function summary(e) {
  const p = e.payload || {};
  switch (e.kind) {
    case "ProposalSubmitted": return `${p.action} ${p.resource}`;
    case "DecisionMade": return `${p.verdict}${p.violation ? ` (${p.violation})` : ""}`;
    case "ApprovalRequested": return `${p.action} ${p.resource} asks ${(p.approvers || []).join(", ")}`;
    case "EffectStarted": return `${p.action} ${p.resource}`;
    case "EffectCompleted": return `completed in ${p.duration_ms} ms`;
    case "EffectFailed": return `${p.code} ${p.message}`;
    case "RunTransitioned": return `${p.from} → ${p.to}`;
    case "TransitionRejected": return `${p.code || ""} ${p.message || ""}`;
    default: return "";
  }
}

function eventRow(e) {
  const verdict = e.kind === "DecisionMade" ? `verdict-${e.payload.verdict}` : "";
  // The seq is a button (keyboard and screen readers reach it); a click anywhere on the row does the same.
  const expand = el("button", { type: "button", class: "expand", "aria-expanded": "false",
    "aria-label": `event ${e.seq}, ${e.kind}: show details` }, e.seq);
  const row = el("tr", { class: `event ${verdict}`, "data-seq": e.seq, "data-kind": e.kind },
    el("td", {}, expand), el("td", {}, e.time), el("td", {}, e.kind), el("td", {}, e.origin),
    el("td", { title: e.run_id || "" }, short(e.run_id)), el("td", { title: summary(e) }, summary(e)));
  const toggle = (ev) => {
    ev.stopPropagation();
    const open = row.nextSibling && row.nextSibling.classList && row.nextSibling.classList.contains("detail");
    if (open) { row.nextSibling.remove(); expand.setAttribute("aria-expanded", "false"); return; }
    expand.setAttribute("aria-expanded", "true");
    row.after(detailRow(e));
  };
  row.addEventListener("click", toggle);
  expand.addEventListener("click", toggle);
  return row;
}

function detailRow(e) {
  const causes = (e.causes || []).map((id) => el("button", { type: "button", class: "cause", onclick: async (ev) => {
    ev.stopPropagation();
    try { const c = await api("GET", `/v1/events/${id}`); ev.target.replaceWith(el("pre", {}, pretty(c))); }
    catch (err) { ev.target.textContent = err.message; }
  } }, `cause ${short(id)}`));
  return el("tr", { class: "detail" }, el("td", { colspan: 6 },
    el("div", { class: "meta hash" }, `event ${e.event_id} · seq ${e.seq} · prev ${e.prev_hash} · hash ${e.hash}`),
    e.acted_by ? el("div", { class: "meta" }, `acted by ${e.acted_by}`) : "",
    causes.length ? el("div", {}, "caused by ", causes) : "",
    el("pre", { class: "payload" }, pretty(e.payload))));
}

function keep(e) {
  const v = state.filters.verdict;
  return !v || (e.kind === "DecisionMade" && e.payload && e.payload.verdict === v);
}

// New events are prepended only while the reader is at the top of the page; otherwise they wait behind a button,
// so what the reader is looking at never moves under them.
const held = [];

function showHeld() {
  const body = $("#events");
  for (const e of held.splice(0)) body.prepend(eventRow(e));
  $("#held").hidden = true;
  trim();
}

function addEvents(events) {
  const body = $("#events");
  for (const e of events) {
    state.lastSeq = Math.max(state.lastSeq, e.seq);
    if (e.kind.startsWith("Approval")) {
      noteAnswer(e);
      refreshApprovals().catch(() => {});
    }
    if (!keep(e)) continue;
    if (window.scrollY > 40 && !$("#view-timeline").hidden) {
      held.push(e);
      $("#held").hidden = false;
      $("#held").textContent = `${held.length} new event(s): show`;
      continue;
    }
    body.prepend(eventRow(e));
  }
  trim();
}

function trim() {
  const body = $("#events");
  const rows = body.querySelectorAll("tr.event");
  for (let i = MAX_ROWS; i < rows.length; i++) {
    const d = rows[i].nextSibling;
    if (d && d.classList && d.classList.contains("detail")) d.remove();
    rows[i].remove();
  }
}

// The stream takes run, kind and origin; a page of events also `since` (the stream only ever adds newer events).
function query(extra, page = false) {
  const q = new URLSearchParams();
  for (const k of ["run", "kind", "origin"]) if (state.filters[k]) q.set(k, state.filters[k]);
  if (page && state.filters.since) q.set("since", new Date(state.filters.since).toISOString());
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q.toString();
}

async function loadTimeline() {
  if (state.ws) { state.ws.onclose = null; state.ws.close(); }
  $("#events").replaceChildren();
  held.length = 0;
  $("#held").hidden = true;
  const head = (await api("GET", "/v1/events?limit=1&after=0")).head || 0;
  const from = Math.max(0, head - 200);
  state.lastSeq = from;
  const page = await api("GET", `/v1/events?${query({ after: from, limit: 200 }, true)}`);
  addEvents(page.events);
  state.lastSeq = Math.max(state.lastSeq, head);
  live();
}

function stream(params) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return new WebSocket(`${proto}//${location.host}/v1/stream?${params}`, ["ice-bearer", state.token]);
}

function live() {
  const ws = stream(query({ after: state.lastSeq }));
  state.ws = ws;
  ws.onopen = () => { $("#live").textContent = "live"; };
  ws.onmessage = (m) => { try { addEvents([JSON.parse(m.data)]); } catch { /* not an event */ } };
  ws.onclose = () => {
    $("#live").textContent = "reconnecting…";
    setTimeout(() => { if (state.ws === ws) live(); }, 1000); // resumes after the last seq: no gap, no duplicate
  };
}

// ---------- approvals ----------

function argsDiff(args, previous) {
  if (!previous) return el("pre", { class: "args" }, pretty(args));
  const lines = [];
  const keys = [...new Set([...Object.keys(previous), ...Object.keys(args)])].sort();
  for (const k of keys) {
    const now = JSON.stringify(args[k]);
    const was = JSON.stringify(previous[k]);
    if (now === was) lines.push(el("div", {}, `  "${k}": ${now}`));
    else {
      if (was !== undefined) lines.push(el("div", { class: "diff-del" }, `- "${k}": ${was}`));
      if (now !== undefined) lines.push(el("div", { class: "diff-add" }, `+ "${k}": ${now}`));
    }
  }
  return el("div", {}, el("div", { class: "meta" }, "args (diff against the last approved args for this action and resource)"),
    el("pre", { class: "args" }, lines));
}

function approvalCard(a) {
  const r = a.request;
  const c = r.classification || {};
  const key = argsKey(r);
  const comment = el("input", { "aria-label": `comment for approval ${a.approval_id}`, placeholder: "comment", size: 40 });
  const status = el("span", { role: "status" });
  const answer = (verb) => async () => {
    status.textContent = "…";
    try {
      await api("POST", `/v1/approvals/${a.approval_id}/${verb}`,
        verb === "approve" ? { args_hash: r.args_hash, comment: comment.value || undefined }
          : { comment: comment.value || undefined });
      status.textContent = verb === "approve" ? "approved" : "denied";
      refreshApprovals().catch(show);
    } catch (err) { status.textContent = err.message; }
  };
  const actions = can("approver") ? el("div", { class: "actions" }, comment,
    el("button", { type: "button", class: "approve", onclick: answer("approve") }, "Approve"),
    el("button", { type: "button", class: "deny", onclick: answer("deny") }, "Deny"), status)
    : el("p", { class: "meta" }, "Your token has no approver role: you can see this request but not answer it.");
  return el("article", { class: "card approval", "data-approval": a.approval_id },
    el("h3", {}, `${r.actor} asks to ${key}`),
    el("div", { class: "meta" }, `classification ${c.scope}/${c.access}/${c.risk} · cost ${cost(r.cost_estimate)}`
      + ` · expires ${when(r.expires_at)}${a.escalated ? " · escalated" : ""}`),
    el("div", { class: "meta" }, `asked by policy ${(r.policies || []).join(", ")}: ${r.reason}`),
    argsDiff(r.args, state.lastApproved.get(key)),
    el("div", { class: "hash" }, `you sign args hash ${r.args_hash}`),
    actions);
}

// The last approved args per action and resource (for the diffs): read from the whole approval history once (at
// login and when the queue is opened: `?all=true` reads the ledger), then kept current from the answers seen live.
const pendingRequests = new Map(); // approval id → request, while it is pending here
const argsKey = (r) => `${r.action} ${r.resource}`;

async function loadApprovalHistory() {
  const all = await api("GET", "/v1/approvals?all=true");
  state.lastApproved = new Map();
  for (const a of all.approvals) {
    if (a.status === "granted") state.lastApproved.set(argsKey(a.request), a.request.args);
  }
}

function noteAnswer(e) {
  const id = e.payload && e.payload.approval_id;
  const r = id && pendingRequests.get(id);
  if (!r || !["ApprovalGranted", "ApprovalDenied", "ApprovalExpired"].includes(e.kind)) return;
  if (e.kind === "ApprovalGranted") state.lastApproved.set(argsKey(r), r.args);
  pendingRequests.delete(id);
}

async function refreshApprovals() {
  if (!state.token) return;
  const pending = await api("GET", "/v1/approvals");
  const list = pending.approvals;
  for (const a of list) pendingRequests.set(a.approval_id, a.request);
  $("#approvals").replaceChildren(...list.map(approvalCard));
  $("#approvals-empty").hidden = list.length > 0;
  $("#pending-count").textContent = list.length ? String(list.length) : "";
}

function watchApprovals() {
  const ws = stream("channel=approvals");
  state.approvalsWs = ws;
  ws.onmessage = (m) => {
    try { noteAnswer(JSON.parse(m.data)); } catch { /* not an event */ }
    refreshApprovals().catch(() => {});
  };
  ws.onclose = () => setTimeout(() => { if (state.approvalsWs === ws) watchApprovals(); }, 1000);
}

// ---------- runs ----------

async function loadRuns() {
  const { runs } = await api("GET", "/v1/runs");
  $("#runs").replaceChildren(...runs.map((r) => {
    const row = el("tr", { class: "event", tabindex: 0 }, el("td", { title: r.run_id }, short(r.run_id)),
      el("td", {}, r.label || ""), el("td", {}, r.state), el("td", {}, r.events), el("td", {}, r.updated_at));
    const open = () => showRun(r).catch(show);
    row.addEventListener("click", open);
    row.addEventListener("keydown", (k) => { if (k.key === "Enter") open(); });
    return row;
  }));
}

async function showRun(r) {
  const events = [];
  let after = 0;
  for (let i = 0; i < 20; i++) {
    const page = await api("GET", `/v1/events?run=${r.run_id}&after=${after}&limit=1000`);
    events.push(...page.events);
    if (page.events.length < 1000) break;
    after = page.next_after;
  }
  const byProposal = new Map();
  const owner = new Map(); // approval or effect id → proposal id
  for (const e of events) {
    const p = e.payload || {};
    if (e.kind === "ProposalSubmitted") byProposal.set(e.event_id, { proposal: e, steps: [] });
    const pid = p.proposal_id || owner.get(p.approval_id) || owner.get(p.started_id);
    if (!pid || !byProposal.has(pid)) continue;
    byProposal.get(pid).steps.push(e);
    if (e.kind === "ApprovalRequested" || e.kind === "EffectStarted") owner.set(e.event_id, pid);
  }
  const { budgets } = await api("GET", "/v1/budgets");
  const mine = budgets.filter((b) => b.budget.includes(r.run_id));
  const here = RUN_PATH.indexOf(r.state);
  const path = el("div", { class: "state-path", "aria-label": `run state ${r.state}` },
    (here >= 0 ? RUN_PATH : [...RUN_PATH, r.state]).map((s) => el("span", { class: s === r.state ? "here" : "" }, s)));
  const tree = el("ul", { class: "tree" }, [...byProposal.values()].map(({ proposal, steps }) =>
    el("li", {}, `${proposal.payload.action} ${proposal.payload.resource} (by ${proposal.origin})`,
      el("ul", { class: "tree" }, steps.map((s) => el("li", { class: s.kind === "DecisionMade" ? `verdict-${s.payload.verdict}` : "" },
        `${s.kind} · seq ${s.seq} ${summary(s)}`))))));
  const rollback = el("div", { class: "rollback" });
  try {
    const { items } = await api("GET", `/v1/runs/${r.run_id}/rollback`);
    const line = (i) => {
      const p = i.planned;
      const what = p.kind === "propose" ? `would propose ${p.action} ${p.resource} ${JSON.stringify(p.args)}`
        : p.kind === "irreversible" ? `cannot be undone: ${p.reason}`
          : p.kind === "already_compensated" ? `already undone by ${short(p.by)}` : "nothing to undo";
      return el("li", {}, `${i.action} ${i.resource} → ${what}`);
    };
    rollback.append(items.length ? el("ul", { class: "tree" }, items.map(line))
      : el("p", { class: "meta" }, "No completed effect to roll back."));
    if (can("operator") && items.some((i) => i.planned.kind === "propose")) {
      const said = el("p", { role: "status" });
      rollback.append(el("button", { type: "button", class: "rollback-run", onclick: async () => {
        try {
          const rep = await api("POST", `/v1/runs/${r.run_id}/rollback`);
          said.textContent = `rollback run ${rep.run} is ${rep.run_state}: ` + rep.items.map((i) => `${i.action} ${i.resource} ${i.step.status}`).join("; ");
        } catch (err) { said.textContent = err.message; }
      } }, "Roll back this run"), said);
    }
  } catch (err) { rollback.append(el("p", { class: "meta" }, `rollback preview unavailable: ${err.message}`)); }
  $("#run-detail").replaceChildren(el("h2", {}, `Run ${r.run_id}`), path,
    el("p", { class: "meta" }, `${r.label || ""} · created by ${r.created_by} · ${r.last_reason || ""}`),
    el("h3", {}, "Costs against the run's budgets"),
    mine.length ? el("ul", {}, mine.map((b) => el("li", {}, `${b.budget}: ${b.spent} spent + ${b.reserved} reserved of ${b.limit}`)))
      : el("p", { class: "meta" }, "No budget is scoped to this run."),
    el("h3", {}, "Proposals → decisions → effects → outcomes"), tree,
    el("h3", {}, "Rollback: the compensations it would propose"), rollback);
}

// ---------- budgets ----------

async function loadBudgets() {
  const { budgets } = await api("GET", "/v1/budgets");
  $("#budgets").replaceChildren(...(budgets.length ? budgets : []).map((b) => el("div", { class: "gauge" },
    el("span", {}, b.budget),
    el("meter", { min: 0, max: Math.max(b.limit, 1), value: Math.min(b.spent + b.reserved, b.limit),
      "aria-label": `${b.budget}: ${b.spent} spent, ${b.reserved} reserved of ${b.limit}` }),
    el("span", {}, `${b.spent} spent + ${b.reserved} reserved / ${b.limit}`))));
  if (!budgets.length) $("#budgets").append(el("p", {}, "No budgets are set."));
}

// ---------- grants, agents, policy ----------

async function loadGrants() {
  const { grants } = await api("GET", "/v1/grants");
  $("#grants").replaceChildren(...grants.map((g) => {
    const t = g.terms || {};
    const revoke = can("operator") && g.status === "live" && t.revocable !== false
      ? el("button", { type: "button", onclick: async (ev) => {
        try { await api("POST", `/v1/grants/${g.id}/revoke`, { reason: "revoked from the console" }); loadGrants().catch(show); }
        catch (err) { ev.target.textContent = err.message; }
      } }, "Revoke") : "";
    return el("tr", {}, el("td", { title: g.id }, short(g.id)), el("td", {}, t.principal),
      el("td", {}, (t.actions || []).join(", ")), el("td", { title: t.resource }, t.resource),
      el("td", { title: g.run || "" }, short(g.run)), el("td", {}, g.status),
      el("td", {}, t.max_uses ? `${g.uses} of ${t.max_uses}` : String(g.uses)),
      el("td", {}, t.expires_at ? when(t.expires_at) : "never"), el("td", { class: "controls" }, revoke));
  }));
}

async function loadAgents() {
  const { agents } = await api("GET", "/v1/agents");
  const row = (a) => {
    const reason = el("input", { "aria-label": `reason for ${a.agent}`, placeholder: "reason / what changed", size: 28 });
    const act = (verb) => el("button", { type: "button", class: `agent-${verb}`, onclick: async () => {
      try {
        await api("POST", `/v1/agents/${encodeURIComponent(a.agent)}/${verb}`, { reason: reason.value || `${verb} from the console` });
        $("#agents-result").textContent = `${a.agent}: ${verb} recorded`;
      } catch (err) { $("#agents-result").textContent = err.message; }
      loadAgents().catch(show);
    } }, verb[0].toUpperCase() + verb.slice(1));
    // A suspended agent is resumed only after what changed is recorded (the runtime refuses otherwise).
    const controls = !can("operator") ? [] : a.status === "suspended" ? [reason, act("reconfigure"), act("resume")]
      : [reason, act("suspend")];
    return el("tr", { "data-agent": a.agent }, el("td", {}, a.agent), el("td", { class: "status" }, a.status),
      el("td", {}, a.live_grants), el("td", {}, a.active_tokens), el("td", {}, a.reason || ""), el("td", { class: "controls" }, controls));
  };
  $("#agents").replaceChildren(...agents.map(row));
}

// ---------- memory ----------

// A button that replaces itself with what `load` returns (an event, the reads of an item).
function reveal(label, cls, load) {
  return el("button", { type: "button", class: cls, onclick: async (ev) => {
    try { ev.target.replaceWith(el("pre", { class: cls }, pretty(await load()))); }
    catch (err) { ev.target.textContent = err.message; }
  } }, label);
}

async function loadMemory() {
  const f = Object.fromEntries([...new FormData($("#memory-form")).entries()].filter(([, v]) => v));
  const { items } = await api("GET", `/v1/memory?${new URLSearchParams(f)}`);
  const row = (m) => {
    const event = (label, id) => reveal(`${label} ${short(id)}`, "memory-event", () => api("GET", `/v1/events/${id}`));
    const provenance = [
      ...(m.sources || []).map((s) => event(s.kind, s.event_id)),
      event("proposal", m.proposal_id), event("candidate", m.candidate),
      m.approval_id ? event("approval", m.approval_id) : "",
      can("auditor", "operator") ? reveal("reads", "memory-reads", async () => (await api("GET", `/v1/memory/${m.item_id}/reads`)).reads
        .map((r) => `${r.time} ${r.reader} ${r.mode} (index ${r.index})` + (r.followed_by
          ? ` → proposed ${r.followed_by.action} ${r.followed_by.resource}` : " → no proposal followed"))) : "",
    ];
    const reason = el("input", { "aria-label": `reason for ${m.item_id}`, placeholder: "reason", size: 18 });
    const change = (verb) => el("button", { type: "button", class: `memory-${verb}`, onclick: async () => {
      try {
        await api("POST", `/v1/memory/${m.item_id}/${verb}`, { reason: reason.value || `${verb}d from the console` });
        $("#memory-result").textContent = `${short(m.item_id)}: ${verb} recorded`;
      } catch (err) { $("#memory-result").textContent = err.message; }
      loadMemory().catch(show);
    } }, verb[0].toUpperCase() + verb.slice(1));
    const controls = can("operator") && m.status === "ACTIVE" ? [reason, change("deprecate"), change("invalidate")] : [];
    const ended = m.ended ? ` — ${m.ended.reason}` : "";
    return el("tr", { "data-item": m.item_id }, el("td", { title: m.item_id }, short(m.item_id)),
      el("td", { class: "status", title: m.ended ? m.ended.reason : "" }, m.status + ended),
      el("td", {}, m.namespace), el("td", {}, m.text),
      el("td", {}, `${m.proposed_by} / ${m.promoted_by}`), el("td", { class: "provenance" }, provenance),
      el("td", { class: "controls" }, controls));
  };
  $("#memory").replaceChildren(...items.map(row));
  if (!items.length) $("#memory-result").textContent = "no memory items match";
}

let policySource = null;

async function loadPolicy() {
  const p = await api("GET", "/v1/policy");
  policySource = p.source;
  const actions = Object.entries(p.actions || {}).map(([name, c]) => el("li", {}, `${name}: ${c.scope}/${c.access}/${c.risk}`));
  $("#policy").replaceChildren(el("p", { class: "hash" }, `active set ${p.hash}`),
    el("h3", {}, "Policies"), el("ul", {}, (p.policies || []).map((id) => el("li", {}, id))),
    el("h3", {}, "Actions"), el("ul", {}, actions));
  const files = Object.keys((policySource && policySource.policies) || {});
  $("#whatif-file").replaceChildren(...files.map((f) => el("option", {}, f)));
  if (files.length) $("#whatif-text").value = policySource.policies[files[0]];
}

async function whatIf() {
  if (!policySource) await loadPolicy();
  const name = $("#whatif-name").value.trim() || $("#whatif-file").value;
  const policies = { ...policySource.policies, [name]: $("#whatif-text").value };
  const r = await api("POST", "/v1/policy/what-if", { policies, schema: policySource.schema, catalog: policySource.catalog });
  const changes = r.changes || [];
  $("#whatif-result").replaceChildren(el("p", {}, `${r.evaluated ?? "?"} decisions evaluated; ${changes.length} would change`),
    el("ul", { class: "whatif-changes" }, changes.map((c) => el("li", {},
      `seq ${c.seq}: ${c.actor} ${c.action} ${c.resource} was ${c.recorded}, would be ${c.replayed}`))));
}

// ---------- proof ----------

async function banner() {
  const b = $("#proof-banner");
  if (!can("auditor", "operator", "approver")) return;
  try {
    const v = await api("GET", "/v1/verify");
    b.className = `banner ${v.ok ? "ok" : "bad"}`;
    const at = new Date().toLocaleTimeString();
    const witness = v.witness ? `; witness ${short(v.witness.witness_key)} cosigned seq ${v.witness.cosigned_seq}` : "";
    b.textContent = v.ok ? `chain verified at ${at}: ${v.events} events, ${v.checkpoints} signed checkpoint(s), head seq ${v.head_seq}${witness}`
      : `chain does NOT verify: ${v.first_bad_seq ? `first bad seq ${v.first_bad_seq} ` : ""}(${v.code}: ${v.reason})`;
    $("#verify-result").textContent = pretty(v);
    const { checkpoints } = await api("GET", "/v1/checkpoints?limit=100");
    $("#checkpoints").replaceChildren(...checkpoints.slice(-50).reverse().map((c) => el("tr", {},
      el("td", {}, c.seq), el("td", {}, `${c.payload.from_seq}..=${c.payload.to_seq}`),
      el("td", { class: "hash", title: c.payload.merkle_root }, c.payload.merkle_root),
      el("td", { class: "hash", title: c.payload.state_root }, c.payload.state_root),
      el("td", {}, v.witness && v.witness.cosigned_seq === c.seq ? `cosigned ${v.witness.witnessed_at}` : ""))));
  } catch (err) { b.textContent = `verification unavailable: ${err.message}`; }
}

async function exportBundle(run) {
  const r = await fetch(`/v1/export?run=${encodeURIComponent(run)}`, { headers: { Authorization: `Bearer ${state.token}` } });
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
  const url = URL.createObjectURL(await r.blob());
  const a = el("a", { href: url, download: `ice-bundle-${run}.ndjson` }, "download");
  a.click();
  $("#export-result").textContent = "bundle downloaded; verify offline with `ice verify --bundle FILE --trust-key KEY`";
}

function show(err) {
  console.error(err);
  const target = $("#login").hidden ? $("#live") : $("#login-error");
  target.textContent = err.message;
}

// ---------- wiring ----------

$("#login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  login($("#token").value.trim()).catch((err) => { $("#login-error").textContent = err.message; });
});
$("#logout").addEventListener("click", logout);
for (const t of TABS) $(`#tab-${t}`).addEventListener("click", () => select(t));
$("#tabs").addEventListener("keydown", (k) => {
  const i = TABS.findIndex((t) => $(`#tab-${t}`).getAttribute("aria-selected") === "true");
  const next = k.key === "ArrowRight" ? (i + 1) % TABS.length : k.key === "ArrowLeft" ? (i + TABS.length - 1) % TABS.length : -1;
  if (next >= 0) { select(TABS[next]); $(`#tab-${TABS[next]}`).focus(); }
});
$("#filters").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  state.filters = Object.fromEntries([...f.entries()].filter(([, v]) => v));
  loadTimeline().catch(show);
});
$("#memory-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  loadMemory().catch((err) => { $("#memory-result").textContent = err.message; });
});
$("#verify").addEventListener("click", () => banner());
$("#held").addEventListener("click", showHeld);
$("#whatif-file").addEventListener("change", (ev) => { $("#whatif-text").value = policySource.policies[ev.target.value]; });
$("#whatif-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  whatIf().catch((err) => { $("#whatif-result").textContent = err.message; });
});
$("#export-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  exportBundle(new FormData(ev.target).get("run")).catch((err) => { $("#export-result").textContent = err.message; });
});
if (state.token) login(state.token).catch(() => { sessionStorage.removeItem("ice-token"); });
