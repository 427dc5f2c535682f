// switchboard's live operations page. It reads the whole state once (queue health, the
// agents), then follows the platform event stream (GET /v1/events): each event
// refreshes only the skill and the agent it names, and moves the conversation it names
// in the "Latest" table. No polling loop of the whole state: only a skill with
// conversations waiting in line is read again every 5 s, for its waits grow without
// events. With an API token set on
// the server, the page asks for it once (kept for the tab's session) and sends it as
// a bearer token, on the stream too: the stream is read with fetch, since EventSource
// cannot send headers.
"use strict";

const state = {
  token: sessionStorage.getItem("switchboard-token") || "",
  lastId: null,
  conversations: new Map(), // id -> {id, skill, state, agent, since}
  pendingSkills: new Set(),
  pendingAgents: new Set(),
  flush: null,
  waiting: new Set(), // skills with actionable conversations in line
};
const LATEST = 50;

const $ = (sel) => document.querySelector(sel);

function headers() {
  const h = {};
  if (state.token) h["Authorization"] = "Bearer " + state.token;
  return h;
}

class Unauthorized extends Error {}

async function get(path) {
  const res = await fetch(path, { headers: headers() });
  if (res.status === 401) throw new Unauthorized();
  if (!res.ok) throw new Error(path + ": " + res.status);
  return res.json();
}

function askToken() {
  $("#token-form").hidden = false;
  setStream(false, "token needed");
}

function secs(v) {
  if (v === null || v === undefined) return "–";
  if (v < 90) return v + " s";
  if (v < 5400) return Math.round(v / 60) + " min";
  return (v / 3600).toFixed(1) + " h";
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function rowFor(table, key) {
  const body = $(table + " tbody");
  let tr = body.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.key = key;
    const after = [...body.children].find((r) => r.dataset.key > key);
    body.insertBefore(tr, after || null);
  }
  return tr;
}

// ---- queues ----

function showSkill(skill, h) {
  if (h.actionable > 0) state.waiting.add(skill);
  else state.waiting.delete(skill);
  const tr = rowFor("#queues", skill);
  tr.replaceChildren(
    cell(skill),
    cell(h.unassigned, "num"),
    cell(h.actionable, "num"),
    cell(h.overdue_unassigned, "num" + (h.overdue_unassigned > 0 ? " overdue" : "")),
    cell(h.overdue_assigned, "num" + (h.overdue_assigned > 0 ? " overdue" : "")),
    cell(h.assigned, "num"),
    cell(h.online_agents, "num"),
    cell(secs(h.wait_p50_secs), "num"),
    cell(secs(h.wait_p90_secs), "num"),
    cell(secs(h.max_wait_secs), "num"),
    cell(secs(h.estimated_wait_secs), "num"),
  );
}

async function refreshSkill(skill) {
  const q = await get(`/v1/skills/${encodeURIComponent(skill)}/queue?limit=0`);
  showSkill(skill, q.health);
}

// ---- agents ----

function showAgent(a) {
  const tr = rowFor("#agents", a.agent_id);
  const load = Math.max(0, a.load || 0);
  const bar = document.createElement("td");
  const outer = document.createElement("span");
  outer.className = "bar" + (load >= 1 ? " full" : "");
  const inner = document.createElement("span");
  inner.style.width = Math.min(100, Math.round(load * 100)) + "%";
  outer.append(inner);
  bar.append(outer, document.createTextNode(`${(a.busy || 0).toFixed(1)} / ${a.max_slots}`));
  const status = a.status + (a.reason ? ` (${a.reason})` : "");
  const open = a.open !== undefined ? a.open : (a.conversations || []).length;
  const offered = a.offered !== undefined ? a.offered : (a.offers || []).length;
  tr.replaceChildren(
    cell(a.agent_id),
    cell(status, "status-" + a.status),
    cell((a.skills || []).join(", ")),
    bar,
    cell(open, "num"),
    cell(offered, "num"),
  );
}

async function refreshAgent(agent) {
  showAgent(await get(`/v1/agents/${encodeURIComponent(agent)}`));
}

// ---- conversations ----

const STATE_OF = {
  opened: "queued",
  offer: "offered",
  offer_declined: "queued",
  assigned: "assigned",
  unassigned: "queued",
  transferred: "queued",
  reopened: "queued",
  closed: "closed",
};

function showConversations() {
  const body = $("#conversations tbody");
  const rows = [...state.conversations.values()]
    .sort((a, b) => (a.since < b.since ? 1 : -1))
    .slice(0, LATEST);
  body.replaceChildren(
    ...rows.map((c) => {
      const tr = document.createElement("tr");
      tr.dataset.key = c.id;
      tr.append(
        cell(c.id),
        cell(c.skill || ""),
        cell(c.state, "state-" + c.state),
        cell(c.agent || ""),
        cell(new Date(c.since).toLocaleTimeString()),
      );
      return tr;
    }),
  );
}

function track(e) {
  const next = STATE_OF[e.type];
  if (!e.conversation_id || !next) return;
  const c = state.conversations.get(e.conversation_id) || { id: e.conversation_id };
  c.state = next;
  c.since = e.at;
  if (e.skill) c.skill = e.skill;
  if (next === "assigned" || next === "offered") c.agent = e.agent_id || c.agent;
  if (next === "queued") c.agent = e.type === "transferred" ? e.to_agent || "" : "";
  state.conversations.set(e.conversation_id, c);
  if (state.conversations.size > 4 * LATEST) {
    const oldest = [...state.conversations.values()].sort((a, b) => (a.since < b.since ? -1 : 1));
    for (const o of oldest.slice(0, state.conversations.size - LATEST)) state.conversations.delete(o.id);
  }
}

async function lookup(id) {
  const out = $("#lookup-result");
  try {
    const c = await get(`/v1/conversations/${encodeURIComponent(id)}`);
    out.textContent =
      `${c.conversation_id}: ${c.state}` +
      (c.agent_id ? ` with ${c.agent_id}` : "") +
      ` · skill ${c.skill} · ${c.actionable ? "actionable" : "waiting for the " + c.awaiting}` +
      (c.sla ? ` · SLA ${c.sla.kind} due ${new Date(c.sla.due_at).toLocaleString()}${c.sla.overdue ? " (overdue)" : ""}` : "") +
      `\nopened ${new Date(c.opened_at).toLocaleString()} · transfers ${c.transfers}`;
  } catch (err) {
    if (err instanceof Unauthorized) return askToken();
    out.textContent = `${id}: not found (or closed and past retention)`;
  }
}

// ---- the stream ----

function setStream(on, text) {
  const el = $("#stream");
  el.className = "pill " + (on ? "on" : "off");
  el.textContent = text;
}

function schedule(e) {
  if (e.skill) state.pendingSkills.add(e.skill);
  if (e.agent_id) state.pendingAgents.add(e.agent_id);
  if (e.type === "transferred" && e.from_skill) state.pendingSkills.add(e.from_skill);
  if (e.type === "transferred" && e.to_agent) state.pendingAgents.add(e.to_agent);
  if (state.flush) return;
  // One refresh per skill and agent for a burst of events.
  state.flush = setTimeout(async () => {
    state.flush = null;
    const skills = [...state.pendingSkills];
    const agents = [...state.pendingAgents];
    state.pendingSkills.clear();
    state.pendingAgents.clear();
    showConversations();
    await Promise.allSettled([...skills.map(refreshSkill), ...agents.map(refreshAgent)]);
  }, 100);
}

function onBlock(block) {
  let event = "message";
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const field = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (id !== null) state.lastId = id;
  if (!data.length) return;
  if (event === "gap") {
    // Missed events: read the whole state again, once.
    loadAll().catch(() => {});
    return;
  }
  const e = JSON.parse(data.join("\n"));
  track(e);
  schedule(e);
}

async function follow() {
  for (;;) {
    try {
      const h = headers();
      if (state.lastId !== null) h["Last-Event-ID"] = state.lastId;
      const res = await fetch("/v1/events", { headers: h });
      if (res.status === 401) return askToken();
      if (!res.ok) throw new Error("stream: " + res.status);
      setStream(true, "live");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, "\n");
        let at;
        while ((at = buf.indexOf("\n\n")) >= 0) {
          onBlock(buf.slice(0, at));
          buf = buf.slice(at + 2);
        }
      }
    } catch (err) {
      console.warn(err);
    }
    setStream(false, "reconnecting…");
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function loadAll() {
  const [health, agents] = await Promise.all([get("/v1/queue-health"), get("/v1/agents")]);
  for (const [skill, h] of Object.entries(health.skills)) showSkill(skill, h);
  for (const a of agents.agents) showAgent(a);
}

async function start() {
  $("#token-form").hidden = true;
  try {
    await loadAll();
  } catch (err) {
    if (err instanceof Unauthorized) return askToken();
    setStream(false, "server not answering");
    setTimeout(start, 2000);
    return;
  }
  follow();
}

setInterval(() => {
  for (const skill of state.waiting) refreshSkill(skill).catch(() => {});
}, 5000);

document.addEventListener("DOMContentLoaded", () => {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    state.token = fromHash;
    sessionStorage.setItem("switchboard-token", fromHash);
    history.replaceState(null, "", location.pathname);
  }
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("#token").value.trim();
    sessionStorage.setItem("switchboard-token", state.token);
    start();
  });
  $("#lookup").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = $("#lookup-id").value.trim();
    if (id) lookup(id);
  });
  start();
});
