// The Lanyard console. It talks only to the origin that served it: every call is a same-origin fetch to
// /api/..., and nothing is ever taken from the page's own address (no endpoint, no token). Text from
// devices and the agent is put in the page with textContent, never parsed as HTML.
"use strict";

let csrf = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "onclick") node.addEventListener("click", value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// Text with `backticked` spans, as nodes: the spans become <code>, everything stays text (never HTML).
function withCode(text) {
  return String(text)
    .split("`")
    .map((part, i) => (i % 2 ? el("code", { text: part }) : document.createTextNode(part)));
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function showError(message) {
  const box = $("error");
  box.replaceChildren(...withCode(message));
  box.hidden = !message;
}

async function call(method, params = {}) {
  const response = await fetch("/api/call", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-lanyard-csrf": csrf },
    body: JSON.stringify({ method, params }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = body.error && body.error.message ? body.error.message : body.message || response.statusText;
    throw new Error(`${method}: ${error}`);
  }
  return body;
}

function ago(ms) {
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

function empty(list, text) {
  if (!list.children.length) list.append(el("li", { class: "empty", text }));
}

async function act(what) {
  showError("");
  try {
    await what();
  } catch (e) {
    showError(e.message);
  }
  await refresh();
}

async function loadPending() {
  const { requests } = await call("pair.pending");
  const list = $("pending");
  list.replaceChildren();
  for (const r of requests) {
    const scopes = el("span");
    for (const scope of r.scopes) {
      const box = el("input", { type: "checkbox", "data-scope": scope });
      box.checked = true;
      scopes.append(el("label", {}, box, ` ${scope} `));
    }
    const granted = () => [...scopes.querySelectorAll("input:checked")].map((b) => b.dataset.scope);
    list.append(
      el(
        "li",
        { "data-request": r.requestId },
        el("div", {}, el("span", { class: "name", text: r.name }), ` (${r.platform}) from ${r.address}`),
        el("div", {}, "Code: ", el("span", { class: "sas", text: r.sas })),
        el("div", { class: "muted", text: `Key ${r.nodeId}` }),
        el(
          "div",
          { class: "row" },
          scopes,
          el("button", {
            class: "primary approve",
            text: "Approve",
            onclick: () => act(() => call("pair.approve", { requestId: r.requestId, scopes: granted() })),
          }),
          el("button", {
            class: "danger reject",
            text: "Reject",
            onclick: () => act(() => call("pair.reject", { requestId: r.requestId })),
          }),
        ),
      ),
    );
  }
  empty(list, "Nobody is asking to pair.");
}

async function loadDevices() {
  const [{ nodes }, connected] = await Promise.all([call("pair.list"), call("node.list")]);
  const online = new Map((connected.nodes || []).map((n) => [n.nodeId, n]));
  const list = $("devices");
  list.replaceChildren();
  for (const node of nodes) {
    const live = online.get(node.nodeId);
    const policy = node.policy && node.policy.mode ? node.policy.mode : "default";
    list.append(
      el(
        "li",
        { "data-node": node.nodeId },
        el(
          "div",
          {},
          el("span", { class: "name", text: node.name }),
          ` (${node.platform}) `,
          el("span", {
            class: live ? "badge on" : "badge",
            text: live ? `connected${live.path === "relay" ? " through the relay" : live.path === "lan" ? " on the LAN" : ""}` : "offline",
          }),
        ),
        el("div", {
          class: "muted",
          text:
            `Scopes ${node.scopes.join(", ") || "none"} · permissions ${policy} · ` +
            `${live ? "capabilities " + (live.caps.join(", ") || "none") : "last seen " + ago(node.lastSeenMs)}` +
            `${node.routingTokenHash ? " · can use the relay" : ""}`,
        }),
        el("div", { class: "muted", text: `Key ${node.nodeId}` }),
        el(
          "div",
          { class: "row" },
          el("button", {
            class: "rename",
            text: "Rename",
            onclick: () => {
              const name = window.prompt("New name", node.name);
              if (name) act(() => call("pair.rename", { nodeId: node.nodeId, name }));
            },
          }),
          el("button", {
            class: "danger revoke",
            text: "Revoke",
            onclick: () => {
              if (window.confirm(`Revoke ${node.name}? It will have to pair again.`))
                act(() => call("pair.revoke", { nodeId: node.nodeId }));
            },
          }),
        ),
      ),
    );
  }
  empty(list, "No device is paired yet.");
}

function describe(prompt) {
  switch (prompt.kind) {
    case "permission":
      return [`Use ${prompt.toolName}: ${prompt.summary}`, JSON.stringify(prompt.input, null, 2)];
    case "question":
      return ["A question", prompt.questions.map((q) => q.question).join("\n")];
    case "plan":
      return ["Leave plan mode with this plan?", prompt.plan];
    default:
      return [prompt.kind, ""];
  }
}

async function loadPrompts() {
  const { prompts } = await call("agent.pending");
  const list = $("prompts");
  list.replaceChildren();
  for (const p of prompts) {
    const [title, detail] = describe(p);
    const answer = (decision) => () =>
      act(() => call("agent.respond", { runId: p.runId, requestId: p.requestId, decision }));
    const buttons = el("div", { class: "row" });
    if (p.kind !== "question") {
      buttons.append(
        el("button", { class: "primary allow", text: "Allow", onclick: answer("allow") }),
        el("button", { class: "danger deny", text: "Deny", onclick: answer("deny") }),
      );
    } else {
      buttons.append(el("span", { class: "muted", text: "Answer questions on the device or in the terminal." }));
    }
    list.append(
      el(
        "li",
        { "data-prompt": p.requestId },
        el("div", { class: "name" }, ...withCode(title)),
        el("div", { class: "muted", text: `Conversation ${p.sessionKey}` }),
        detail ? el("pre", { text: detail }) : "",
        buttons,
      ),
    );
  }
  empty(list, "Nothing is waiting for an answer.");
}

// Who a conversation belongs to and its key: a device's are `node:ID:key`, named by the device's name;
// the rest were started on this computer (`lanyard agent`).
function conversationName(sessionKey, devices) {
  const [, nodeId, key] = /^node:([^:]+):(.*)$/.exec(sessionKey) || [];
  if (!nodeId) return `This computer · ${sessionKey}`;
  return `${devices.get(nodeId) || `Device ${nodeId.slice(0, 8)}…`} · ${key}`;
}

async function loadSessions() {
  const [{ sessions }, { nodes }] = await Promise.all([call("agent.sessions"), call("pair.list")]);
  const devices = new Map(nodes.map((n) => [n.nodeId, n.name]));
  const list = $("sessions");
  list.replaceChildren();
  for (const s of sessions.slice(0, 20)) {
    const started = new Date(s.createdAtMs).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    list.append(
      el(
        "li",
        { "data-session": s.sessionKey },
        el("div", { class: "name", text: conversationName(s.sessionKey, devices) }),
        el("div", {
          class: "muted",
          text: `Started ${started} · ${plural(s.turns, "turn", "turns")} · last ${ago(s.lastActivityMs)}`,
        }),
        s.title ? el("div", { class: "muted first-prompt", text: `“${s.title}”` }) : "",
      ),
    );
  }
  empty(list, "No conversation yet.");
}

let shownCode = null;

async function showCode(remote) {
  showError("");
  const response = await fetch("/api/pair-code", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-lanyard-csrf": csrf },
    body: JSON.stringify({ remote }),
  });
  const body = await response.json().catch(() => ({}));
  const box = $("pairing");
  box.replaceChildren();
  if (!response.ok) {
    showError(body.message || response.statusText);
    return;
  }
  shownCode = body.requestId;
  const image = el("img", { alt: "Pairing QR code", src: `data:image/svg+xml;base64,${btoa(body.svg)}` });
  box.append(
    image,
    el("div", { class: "muted", text: remote ? "Scan it on the device, then type the PIN:" : "Scan it on the device, or paste:" }),
    el("pre", { id: "pairing-text", text: body.text }),
  );
  if (body.pin) box.append(el("div", { class: "pin", text: `${body.pin.slice(0, 3)} ${body.pin.slice(3)}` }));
  if (body.loopbackOnly) box.append(el("div", { class: "error", text: "The bridge has no LAN address: only this computer can use this code." }));
  box.append(el("div", { class: "muted", text: `Works once, until ${new Date(body.expiresAtMs).toLocaleTimeString()}.` }));
}

function codeResolved(payload) {
  if (!shownCode || payload.requestId !== shownCode) return;
  shownCode = null;
  $("pairing").replaceChildren(el("div", { id: "pairing-done", class: "name", text: "Paired." }));
}

async function loadTunnel() {
  const health = await call("health");
  const tunnel = health.tunnel;
  $("pair-remote").hidden = !(tunnel && tunnel.url);
  $("tunnel").replaceChildren(...withCode(!tunnel || !tunnel.url
    ? "The relay is off (`lanyard tunnel enable URL` turns it on)."
    : `Relay ${tunnel.url}: link ${tunnel.link ? tunnel.link.state : "not reported yet"}, ` +
      `${plural(tunnel.nodesWithTokens, "device", "devices")} can use it.`));
}

let refreshing = null;
let again = false;
async function refresh() {
  // One refresh at a time; an event that arrives meanwhile earns one more right after, so nothing that
  // changed during a refresh is missed.
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = Promise.all([loadPending(), loadDevices(), loadPrompts(), loadSessions(), loadTunnel()])
    .catch((e) => showError(e.message))
    .finally(() => {
      refreshing = null;
      if (again) {
        again = false;
        refresh();
      }
    });
  return refreshing;
}

// The live stream dropped: find out why at once rather than leave "reconnecting…" up. A session the gateway
// no longer knows means it restarted (sessions live in its memory); no answer means it is not running.
async function lost(events) {
  $("live").textContent = "reconnecting…";
  let response = null;
  try {
    response = await fetch("/api/session", { credentials: "same-origin" });
  } catch {
    // Not running (stopped, or restarting): say so, and keep asking.
  }
  if (response && response.status === 401) {
    events.close();
    ended();
    return;
  }
  if (!response) {
    $("live").textContent = "Lanyard is not running on this computer; waiting for it…";
  }
  if (events.readyState === EventSource.CLOSED) {
    // The browser gave up on this stream (it got an answer that was not a stream): a fresh one.
    setTimeout(listen, 2000);
  }
}

// Logged out by a restart: nothing on the page is current any more, so it goes, and the way back in shows.
function ended() {
  $("main").hidden = true;
  $("logout").hidden = true;
  $("live").textContent = "";
  $("login").hidden = true;
  $("ended").hidden = false;
}

function listen() {
  const events = new EventSource("/api/events");
  events.onopen = () => {
    $("live").textContent = "live";
    refresh();
  };
  events.onerror = () => lost(events);
  for (const name of ["pair.requested", "pair.resolved", "presence", "agent"]) {
    events.addEventListener(name, () => refresh());
  }
  events.addEventListener("pair.resolved", (event) => codeResolved(JSON.parse(event.data)));
}

async function start() {
  $("pair-code").addEventListener("click", () => showCode(false));
  $("pair-remote").addEventListener("click", () => showCode(true));
  $("logout").addEventListener("click", async () => {
    await fetch("/api/logout", { method: "POST", credentials: "same-origin", headers: { "x-lanyard-csrf": csrf } });
    location.replace("/");
  });
  const response = await fetch("/api/session", { credentials: "same-origin" });
  if (!response.ok) {
    $("login").hidden = false;
    $("live").textContent = "";
    $("logout").hidden = true;
    return;
  }
  csrf = (await response.json()).csrf;
  $("main").hidden = false;
  listen();
  await refresh();
  document.body.dataset.ready = "true";
}

start();
