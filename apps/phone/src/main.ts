// The Lanyard web app: pairs by invite + PIN, then talks to each paired computer over the sealed contract.
import { type AgentEvent, CallError, type Frame, MAX_BODY, call, stream } from "./client.js";
import { b64url } from "./crypto/bytes.js";
import { type Invite, pair, readInvite } from "./pairing.js";
import { type Photo, scalePhoto } from "./photo.js";
import { disablePush, enablePush, pushSupported } from "./push.js";
import { h, renderText } from "./render.js";
import { type Computer, claimAnswer, deleteComputer, listComputers, putComputer, releaseAnswer, updateComputer } from "./store.js";

type LinkState = "connected" | "reconnecting" | "offline" | "unpaired";

interface Run {
  runId: string;
  /** The last event seen (its `seq`): what `agent.attach` resumes after. */
  lastSeq: number;
  done: boolean;
  /** The text since the last tool call, shown in `bubble`; a tool call starts a new one. */
  text: string;
  bubble: HTMLElement | null;
  /** Whether the run has shown any text. */
  wrote: boolean;
  /** The stream feeding this run now; frames of any earlier stream are ignored. */
  controller: AbortController | null;
}

interface AgentPayload {
  prompt: string;
  sessionKey: string;
  idempotencyKey: string;
  channel?: "voice";
  attachments?: { mediaType: string; data: string }[];
}

interface View {
  computer: Computer;
  state: LinkState;
  reason: string;
  log: HTMLOListElement;
  prompts: HTMLUListElement;
  promptEls: Map<string, HTMLElement>;
  runs: Map<string, Run>;
  /** Turns whose `agent` call failed before it was accepted: sent again, same key, once reconnected. */
  unsent: AgentPayload[];
  sessions: Session[];
  loaded: boolean;
  retryTimer: number | null;
  retryDelay: number;
}

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const views = new Map<string, View>();
let active: View | null = null;
let invite: Invite | null = null;
let photo: Photo | null = null;
let fromVoice = false;
/** A prompt to bring into view once shown (`#open=BRIDGE_ID:REQUEST_ID`). */
let focusPrompt = "";

const PROBE_EVERY_MS = 25_000;
const RETRY_MAX_MS = 15_000;
/** Room left in the sealed body for the prompt's text and the envelope around a photo. */
const PHOTO_RESERVE = 2_500;

const randomKey = () => b64url(crypto.getRandomValues(new Uint8Array(16)));

// ---- Link state --------------------------------------------------------------------------------------

function linkText(view: View): string {
  const name = view.computer.name;
  switch (view.state) {
    case "connected":
      return `Connected to ${name}`;
    case "reconnecting":
      return `Reconnecting to ${name}: ${view.reason}`;
    case "offline":
      return `${name} is offline: it is not connected to the relay. Lanyard keeps trying.`;
    case "unpaired":
      return `${name} unpaired this phone`;
  }
}

function setLink(view: View, state: LinkState, reason = "") {
  view.state = state;
  view.reason = reason;
  if (view === active) {
    const link = $("link");
    link.hidden = false;
    link.dataset.linkState = state;
    link.textContent = linkText(view);
  }
  renderComputers();
}

function failed(view: View, error: unknown) {
  if (!(error instanceof CallError)) {
    if (view === active) showError(String(error instanceof Error ? error.message : error));
    return;
  }
  switch (error.failure) {
    case "unpaired":
      return unpaired(view);
    case "offline":
      setLink(view, "offline");
      return retryLater(view);
    case "network":
      if (!navigator.onLine) showOffline(true);
      setLink(view, "reconnecting", navigator.onLine ? "lost the connection to the relay" : "this phone is offline");
      return retryLater(view);
    case "busy":
      setLink(view, "reconnecting", error.status === 429 ? "too many requests for now" : `the way to the computer is busy (${error.code || error.status})`);
      return retryLater(view);
    case "tampered":
      return view === active && showError(`An answer did not come from ${view.computer.name}: ${error.message}.`);
    case "refused":
      return view === active && showError(error.message);
  }
}

function retryLater(view: View) {
  if (view.retryTimer !== null || view.computer.unpaired) return;
  view.retryDelay = Math.min(RETRY_MAX_MS, view.retryDelay ? view.retryDelay * 2 : 2_000);
  view.retryTimer = window.setTimeout(() => {
    view.retryTimer = null;
    void recover(view);
  }, view.retryDelay);
}

async function unpaired(view: View) {
  for (const run of view.runs.values()) run.controller?.abort();
  if (view.retryTimer !== null) clearTimeout(view.retryTimer);
  view.retryTimer = null;
  view.computer.unpaired = true;
  await updateComputer(view.computer.bridgeId, { unpaired: true });
  for (const requestId of [...view.promptEls.keys()]) closePrompt(view, requestId);
  setLink(view, "unpaired");
  if (view === active) renderChat();
}

const unpairedText = (view: View) =>
  `${view.computer.name} unpaired this phone: it no longer answers it. To use it again, run lanyard pair --remote on it and scan the new code.`;

/** Checks the link with `hello`: true when the computer answered. */
async function probe(view: View): Promise<boolean> {
  if (view.computer.unpaired) return false;
  try {
    const hello = await call<{ computer: { id: string; name: string } }>(view.computer, "hello");
    view.retryDelay = 0;
    if (hello.computer?.name && hello.computer.name !== view.computer.name) {
      view.computer.name = hello.computer.name;
      await updateComputer(view.computer.bridgeId, { name: hello.computer.name });
    }
    setLink(view, "connected");
    showOffline(false);
    return true;
  } catch (e) {
    // A computer that refuses `hello` itself is there: one older than this app, which says so.
    if (e instanceof CallError && e.sealed && e.failure === "refused") {
      setLink(view, "connected");
      if (view === active) showError(e.code === "unknown_command" ? `${view.computer.name} runs an older Lanyard than this app: update it there.` : e.message);
    } else failed(view, e);
    return false;
  }
}

/** Once the computer answers, follows every unfinished run again, sends what could not be sent and shows open prompts. */
async function recover(view: View) {
  if (!(await probe(view))) return;
  if (!view.loaded) return loadConversation(view);
  for (const run of view.runs.values()) if (!run.done) attach(view, run);
  for (const payload of view.unsent.splice(0)) startTurn(view, payload, true);
  await refreshPending(view);
}

// ---- Computers ---------------------------------------------------------------------------------------

function newView(computer: Computer): View {
  const view: View = {
    computer,
    state: computer.unpaired ? "unpaired" : "reconnecting",
    reason: "connecting",
    log: h("ol", { class: "log", role: "log", "aria-label": `Conversation with ${computer.name}` }),
    prompts: h("ul", { class: "prompts" }),
    promptEls: new Map(),
    runs: new Map(),
    unsent: [],
    sessions: [],
    loaded: false,
    retryTimer: null,
    retryDelay: 0,
  };
  views.set(computer.bridgeId, view);
  return view;
}

function renderComputers() {
  const list = $("computers");
  list.replaceChildren(
    ...[...views.values()].map((view) => {
      const button = h(
        "button",
        { type: "button", "data-computer": view.computer.bridgeId, "data-state": view.state, "aria-current": view === active && !invite ? "true" : false },
        view.computer.name,
        h("span", { class: "state" }, ` · ${view.state === "reconnecting" ? "reconnecting" : view.state}`),
      );
      button.addEventListener("click", () => activate(view));
      return h("li", {}, button);
    }),
  );
  $("computers-nav").hidden = views.size === 0;
}

function activate(view: View) {
  invite = null;
  active = view;
  localStorage.setItem("lanyard.active", view.computer.bridgeId);
  $("log-slot").replaceChildren(view.log);
  $("prompts-slot").replaceChildren(view.prompts);
  showError(view.computer.unpaired ? unpairedText(view) : "");
  setLink(view, view.state, view.reason);
  renderChat();
  if (view.state !== "connected") void recover(view);
}

function show(screen: "welcome" | "pair" | "chat") {
  for (const id of ["welcome", "pair", "chat"]) $(id).hidden = id !== screen;
}

function renderChat() {
  show("chat");
  const view = active!;
  if (view.computer.unpaired) showError(unpairedText(view));
  $("chat-title").textContent = `Conversation with ${view.computer.name}`;
  $("inbox").hidden = view.promptEls.size === 0;
  const off = view.computer.unpaired;
  for (const id of ["message", "send", "photo", "voice", "new-chat"]) ($(id) as HTMLButtonElement).disabled = off;
  $("forget").hidden = !off;
  $("notify-label").hidden = off || !pushSupported();
  ($("notify") as HTMLInputElement).checked = view.computer.push;
  ($("conversation") as HTMLSelectElement).disabled = off;
  renderConversations(view);
  updateStop();
}

function updateStop() {
  $("stop").hidden = !active || ![...active.runs.values()].some((run) => !run.done);
}

function showError(text: string) {
  $("chat-error").textContent = text;
}

// ---- Conversation ------------------------------------------------------------------------------------

interface Session {
  sessionKey: string;
  title?: string;
  running: boolean;
  lastRunId?: string;
}

/** The computer's conversations with this phone, latest first; the current one even when it has no turn yet. */
function renderConversations(view: View) {
  const select = $("conversation") as HTMLSelectElement;
  const current = view.computer.sessionKey;
  const sessions = view.sessions.some((s) => s.sessionKey === current) ? view.sessions : [{ sessionKey: current, title: "New conversation", running: false }, ...view.sessions];
  select.replaceChildren(...sessions.map((s) => h("option", { value: s.sessionKey, selected: s.sessionKey === current }, s.title || s.sessionKey)));
}

async function switchConversation(view: View, sessionKey: string) {
  view.computer.sessionKey = sessionKey;
  await updateComputer(view.computer.bridgeId, { sessionKey });
  view.log.replaceChildren();
  view.loaded = false;
  renderConversations(view);
  void recover(view);
}

interface HistoryEntry {
  role: string;
  text?: string;
  name?: string;
  summary?: string;
  attachments?: number;
}

async function loadConversation(view: View) {
  const sessionKey = view.computer.sessionKey;
  try {
    const history = await call<{ entries: HistoryEntry[] }>(view.computer, "agent.history", { sessionKey, limit: 50 }).catch((e) => {
      if (e instanceof CallError && e.code === "not_found") return { entries: [] };
      throw e;
    });
    // A turn sent meanwhile is already shown; its history would show it twice.
    if (view.log.childElementCount === 0) {
      for (const entry of history.entries) {
        if (entry.role === "user") view.log.append(userItem(entry.text ?? "", entry.attachments ? `${entry.attachments} photo(s)` : ""));
        else if (entry.role === "assistant") view.log.append(h("li", { "data-role": "assistant" }, ...renderText(entry.text ?? "")));
        else if (entry.role === "tool") view.log.append(toolItem(entry.name ?? "tool", entry.summary ?? ""));
      }
    }
    const { sessions } = await call<{ sessions: Session[] }>(view.computer, "agent.sessions");
    view.sessions = sessions;
    if (view === active) renderConversations(view);
    const session = sessions.find((s) => s.sessionKey === sessionKey);
    if (session?.running && session.lastRunId && !view.runs.has(session.lastRunId)) attach(view, runOf(view, session.lastRunId));
    view.loaded = true;
    for (const payload of view.unsent.splice(0)) startTurn(view, payload, true);
    await refreshPending(view);
  } catch (e) {
    failed(view, e);
  }
}

function userItem(text: string, note: string, image?: string): HTMLElement {
  const item = h("li", { "data-role": "user" }, ...renderText(text));
  if (image) item.append(h("img", { src: image, alt: "Photo sent", class: "sent-photo" }));
  else if (note) item.append(h("p", { class: "note" }, note));
  return item;
}

function toolItem(name: string, summary: string): HTMLElement {
  return h("li", { "data-role": "tool" }, h("span", { class: "tool-name" }, name), summary ? ` ${summary}` : "");
}

function runOf(view: View, runId: string): Run {
  let run = view.runs.get(runId);
  if (!run) {
    run = { runId, lastSeq: 0, done: false, text: "", bubble: null, wrote: false, controller: null };
    view.runs.set(runId, run);
    if (view === active) updateStop();
  }
  return run;
}

/** Adds to the run's current text, shown in the assistant message after its last tool call. */
function write(view: View, run: Run, text: string) {
  if (!run.bubble) {
    run.bubble = h("li", { "data-role": "assistant", "data-run": run.runId, "aria-busy": "true" });
    view.log.append(run.bubble);
  }
  run.text += text;
  run.wrote = true;
  run.bubble.replaceChildren(...renderText(run.text));
}

/** Ends the run's current message: what it writes next is a new one. */
function endMessage(run: Run) {
  run.bubble?.removeAttribute("aria-busy");
  run.bubble = null;
  run.text = "";
}

function onEvent(view: View, run: Run, event: AgentEvent) {
  // Replay and live streams can cross: every event is handled once, in order.
  if (event.seq <= run.lastSeq) return;
  run.lastSeq = event.seq;
  switch (event.kind) {
    case "text_delta":
      write(view, run, String(event.text ?? ""));
      break;
    case "tool_use":
      endMessage(run);
      view.log.append(toolItem(String(event.name ?? "tool"), ""));
      break;
    case "tool_result":
      endMessage(run);
      break;
    case "permission":
    case "question":
    case "plan":
      endMessage(run);
      addPrompt(view, event);
      break;
    case "prompt_closed":
      closePrompt(view, String(event.requestId));
      break;
  }
}

function onFrame(view: View, run: Run, frame: Frame) {
  if (frame.type === "agent") return onEvent(view, run, frame.event);
  if (frame.type === "done") {
    const outcome = frame.outcome;
    // A reply whose pieces were not all seen (events the run no longer holds) is shown whole.
    if (!run.wrote && outcome.result) write(view, run, outcome.result);
    if (outcome.status === "cancelled") view.log.append(h("li", { "data-role": "note" }, "Stopped."));
    finishRun(view, run);
  } else if (frame.type === "error") {
    const message = frame.error.message ?? frame.error.code ?? "the turn failed";
    view.log.append(h("li", { "data-role": "error" }, `The turn failed: ${message}`));
    if (view === active) showError(`The turn failed: ${message}`);
    finishRun(view, run);
  }
}

function finishRun(view: View, run: Run) {
  run.done = true;
  run.controller = null;
  endMessage(run);
  for (const [requestId, element] of view.promptEls) if (element.dataset.run === run.runId) closePrompt(view, requestId);
  if (view === active) updateStop();
}

/** Follows a run from its last seen event: catch-up, then live, each event once. */
function attach(view: View, run: Run) {
  run.controller?.abort();
  const controller = new AbortController();
  run.controller = controller;
  stream(
    view.computer,
    "agent.attach",
    { runId: run.runId, afterSeq: run.lastSeq },
    (frame) => run.controller === controller && onFrame(view, run, frame),
    controller.signal,
  ).catch((e) => {
    if (controller.signal.aborted) return;
    if (e instanceof CallError && e.code === "not_found") return finishRun(view, run);
    failed(view, e);
  });
}

/** Starts a turn. `again`: a retry of a turn that may have started: its stream gives way to `agent.attach`. */
function startTurn(view: View, payload: AgentPayload, again = false) {
  const controller = new AbortController();
  let run: Run | null = null;
  stream(
    view.computer,
    "agent",
    payload,
    (frame) => {
      if (frame.type === "accepted") {
        run = runOf(view, frame.run_id);
        run.controller?.abort();
        run.controller = controller;
        if (again) attach(view, run);
        return;
      }
      if (run && run.controller === controller) onFrame(view, run, frame);
    },
    controller.signal,
  ).catch((e) => {
    if (controller.signal.aborted) return;
    if (!run && e instanceof CallError && ["network", "busy", "offline"].includes(e.failure)) view.unsent.push(payload);
    failed(view, e);
  });
}

function send(event: SubmitEvent) {
  event.preventDefault();
  const view = active;
  const box = $("message") as HTMLTextAreaElement;
  const prompt = box.value.trim();
  if (!view || view.computer.unpaired || (!prompt && !photo)) return;
  const payload: AgentPayload = { prompt: prompt || "What is in this photo?", sessionKey: view.computer.sessionKey, idempotencyKey: `phone-${randomKey()}` };
  if (fromVoice && view.computer.scopes.includes("voice")) payload.channel = "voice";
  if (photo) payload.attachments = [{ mediaType: photo.mediaType, data: photo.data }];
  if (JSON.stringify(payload).length > MAX_BODY * 0.7) return showError("This message is too long to send in one go.");
  view.log.append(userItem(payload.prompt, "", photo?.url));
  box.value = "";
  fromVoice = false;
  clearPhoto(false);
  showError("");
  startTurn(view, payload);
}

// ---- Approvals ---------------------------------------------------------------------------------------

interface Question {
  question: string;
  header?: string;
  options: { label: string; description?: string }[];
  multiSelect: boolean;
}

function addPrompt(view: View, event: AgentEvent) {
  const requestId = String(event.requestId);
  if (view.promptEls.has(requestId)) return;
  const item = h("li", { "data-prompt": requestId, "data-kind": event.kind, "data-run": event.runId, class: "prompt" });
  const buttons = h("div", { class: "buttons" });
  const button = (label: string, answer: () => void, extra: Record<string, string> = {}) => {
    const b = h("button", { type: "button", ...extra }, label);
    b.addEventListener("click", answer);
    buttons.append(b);
    return b;
  };
  const respond = (decision: "allow" | "deny", extra: Record<string, unknown> = {}) => () => answerPrompt(view, item, event, decision, extra);
  if (event.kind === "permission") {
    const input = JSON.stringify(event.input, null, 2) ?? "";
    item.append(
      h("h4", {}, String(event.toolName ?? "A tool")),
      h("p", { class: "summary" }, String(event.summary ?? "")),
      h("details", {}, h("summary", {}, "Input"), h("pre", { tabindex: "0" }, h("code", {}, input))),
    );
    button("Allow", respond("allow"), { class: "primary" });
    button("Deny", respond("deny"));
  } else if (event.kind === "question") {
    const questions = (event.questions ?? []) as Question[];
    const chosen = new Map<string, Set<string>>();
    item.append(h("h4", {}, "A question"));
    const oneTap = questions.length === 1 && !questions[0]!.multiSelect;
    for (const q of questions) {
      const group = h("div", { class: "question", role: "group", "aria-label": q.question });
      group.append(h("p", {}, q.header ? h("strong", {}, `${q.header}: `) : "", q.question));
      for (const option of q.options) {
        const choice = h("button", { type: "button", "aria-pressed": oneTap ? false : "false" }, option.label);
        choice.addEventListener("click", () => {
          if (oneTap) return answerPrompt(view, item, event, "allow", { answers: { [q.question]: option.label } });
          const set = chosen.get(q.question) ?? new Set<string>();
          if (!q.multiSelect) set.clear();
          set.has(option.label) ? set.delete(option.label) : set.add(option.label);
          chosen.set(q.question, set);
          for (const b of group.querySelectorAll("button")) b.setAttribute("aria-pressed", String(set.has(b.textContent ?? "")));
        });
        group.append(h("div", { class: "option" }, choice, option.description ? h("span", { class: "note" }, ` ${option.description}`) : ""));
      }
      item.append(group);
    }
    if (!oneTap && questions.length > 0) {
      button("Answer", () => {
        const answers = Object.fromEntries(questions.map((q) => [q.question, [...(chosen.get(q.question) ?? [])].join(", ")]));
        if (Object.values(answers).some((a) => !a)) return showError("Choose an answer for every question.");
        answerPrompt(view, item, event, "allow", { answers });
      }, { class: "primary" });
    }
    button("Decline", respond("deny"));
  } else {
    item.append(h("h4", {}, "A plan to approve"), h("div", { class: "plan" }, ...renderText(String(event.plan ?? "") || "(The agent wrote no plan text.)")));
    button("Approve", respond("allow"), { class: "primary" });
    button("Reject", respond("deny"));
  }
  item.append(buttons);
  view.promptEls.set(requestId, item);
  view.prompts.append(item);
  if (view === active) $("inbox").hidden = false;
  if (focusPrompt === `${view.computer.bridgeId}:${requestId}`) {
    focusPrompt = "";
    item.scrollIntoView({ block: "center" });
    item.querySelector("button")?.focus();
  }
}

function closePrompt(view: View, requestId: string) {
  view.promptEls.get(requestId)?.remove();
  view.promptEls.delete(requestId);
  if (view === active) $("inbox").hidden = view.promptEls.size === 0;
}

async function answerPrompt(view: View, item: HTMLElement, event: AgentEvent, decision: "allow" | "deny", extra: Record<string, unknown>) {
  const requestId = String(event.requestId);
  const buttons = [...item.querySelectorAll("button")];
  buttons.forEach((b) => (b.disabled = true));
  // Answered from a notification already (or another tab): once is all.
  if (!(await claimAnswer(view.computer.bridgeId, requestId))) return closePrompt(view, requestId);
  try {
    await call(view.computer, "agent.respond", { runId: event.runId, requestId, decision, ...extra });
    closePrompt(view, requestId);
  } catch (e) {
    if (e instanceof CallError && (e.code === "prompt_closed" || e.code === "not_found")) return closePrompt(view, requestId);
    await releaseAnswer(view.computer.bridgeId, requestId);
    buttons.forEach((b) => (b.disabled = false));
    failed(view, e);
  }
}

/** Shows every prompt still open (`agent.pending`) and drops those that closed meanwhile. */
async function refreshPending(view: View) {
  try {
    const { prompts } = await call<{ prompts: AgentEvent[] }>(view.computer, "agent.pending");
    const open = new Set(prompts.map((p) => String(p.requestId)));
    for (const requestId of [...view.promptEls.keys()]) if (!open.has(requestId)) closePrompt(view, requestId);
    for (const prompt of prompts) addPrompt(view, prompt);
  } catch (e) {
    failed(view, e);
  }
}

// ---- Pairing -----------------------------------------------------------------------------------------

function deviceName(): string {
  const ua = navigator.userAgent;
  const os = /iPhone|iPad/.test(ua) ? "iPhone" : /Android/.test(ua) ? "Android" : /Mac/.test(ua) ? "Mac" : /Windows/.test(ua) ? "Windows" : "Linux";
  const browser = /Edg\//.test(ua) ? "Edge" : /Firefox\//.test(ua) ? "Firefox" : /Chrome\//.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari" : "browser";
  return `Lanyard web (${browser} on ${os})`;
}

function pairingMessage(e: unknown): string {
  if (!(e instanceof CallError)) return `Pairing failed: ${e instanceof Error ? e.message : String(e)}`;
  const again = "Run lanyard pair --remote on the computer again and scan the new code.";
  if (e.code === "pairing_pin_wrong") {
    const left = e.details.triesLeft;
    if (left === 0) return `Wrong PIN, and no tries are left with this code. ${again}`;
    return typeof left === "number" ? `Wrong PIN. ${left} ${left === 1 ? "try" : "tries"} left.` : "Wrong PIN.";
  }
  if (e.code === "pairing_code_invalid" || e.code === "unknown_token" || e.code === "missing_token" || e.status === 410) return `This invite has expired or was already used. ${again}`;
  if (e.failure === "offline") return "The computer is offline: it is not connected to the relay. Start lanyard up on it (or wake it), then press Pair again.";
  if (e.failure === "network") return "Cannot reach the relay. Check this phone's connection and press Pair again.";
  if (e.failure === "busy") return "The relay is busy. Wait a moment and press Pair again.";
  if (e.failure === "tampered") return `The answer did not come from the computer this invite names, so this phone did not pair. ${again}`;
  if (e.code === "forbidden") return `The computer refused: ${e.message}`;
  return `Pairing failed: ${e.message}`;
}

function showPairing(found: Invite) {
  invite = found;
  active = null;
  $("link").hidden = true;
  $("pair-name").textContent = found.name || "this computer";
  $("pair-error").textContent = "";
  show("pair");
  renderComputers();
  $("pin").focus();
}

async function submitPin(event: SubmitEvent) {
  event.preventDefault();
  if (!invite) return;
  const input = $("pin") as HTMLInputElement;
  const button = $("pair-button") as HTMLButtonElement;
  const pin = input.value.replace(/\s/g, "");
  if (!/^[0-9]{6}$/.test(pin)) {
    $("pair-error").textContent = "The PIN is the 6 digits the computer shows.";
    return;
  }
  $("pair-error").textContent = "";
  button.disabled = true;
  button.textContent = "Pairing…";
  try {
    const paired = await pair(invite, pin, { name: deviceName() });
    const computer: Computer = { ...paired, nextCounter: 1, sessionKey: "phone", push: false, unpaired: false, pairedAtMs: Date.now() };
    await putComputer(computer);
    views.get(computer.bridgeId)?.runs.forEach((run) => run.controller?.abort());
    input.value = "";
    activate(newView(computer));
  } catch (e) {
    $("pair-error").textContent = pairingMessage(e);
    input.select();
  } finally {
    button.disabled = false;
    button.textContent = "Pair";
  }
}

// ---- Composer extras ---------------------------------------------------------------------------------

function clearPhoto(revoke = true) {
  if (photo && revoke) URL.revokeObjectURL(photo.url);
  photo = null;
  $("attachment").hidden = true;
  ($("photo-input") as HTMLInputElement).value = "";
}

async function pickPhoto() {
  const file = ($("photo-input") as HTMLInputElement).files?.[0];
  if (!file) return;
  try {
    // The base64 budget: what the sealed body has room for after the envelope, the prompt and the seal.
    const budget = Math.floor(((MAX_BODY - 64) * 3) / 4) - 16 - PHOTO_RESERVE;
    clearPhoto();
    photo = await scalePhoto(file, budget);
    ($("attachment-preview") as HTMLImageElement).src = photo.url;
    $("attachment").hidden = false;
  } catch (e) {
    showError(e instanceof Error ? e.message : String(e));
  }
}

interface Recognition {
  lang: string;
  interimResults: boolean;
  onresult: ((event: { results: ArrayLike<ArrayLike<{ transcript: string }>> }) => void) | null;
  onend: (() => void) | null;
  onerror: ((event: { error: string }) => void) | null;
  start(): void;
  stop(): void;
}

function setUpVoice() {
  const w = window as unknown as Record<string, (new () => Recognition) | undefined>;
  const Speech = w.SpeechRecognition ?? w.webkitSpeechRecognition;
  if (!Speech) return;
  const button = $("voice");
  button.hidden = false;
  let listening: Recognition | null = null;
  button.addEventListener("click", () => {
    if (listening) return listening.stop();
    const recognition = new Speech();
    recognition.lang = navigator.language;
    recognition.interimResults = false;
    recognition.onresult = (event) => {
      const text = Array.from(event.results, (r) => r[0]?.transcript ?? "").join(" ");
      const box = $("message") as HTMLTextAreaElement;
      box.value = box.value ? `${box.value} ${text}` : text;
      fromVoice = true;
    };
    recognition.onerror = (event) => showError(`Voice input stopped: ${event.error}.`);
    recognition.onend = () => {
      listening = null;
      button.setAttribute("aria-pressed", "false");
    };
    listening = recognition;
    button.setAttribute("aria-pressed", "true");
    recognition.start();
  });
}

async function toggleNotifications() {
  const view = active;
  const box = $("notify") as HTMLInputElement;
  if (!view) return;
  box.disabled = true;
  try {
    if (box.checked) await enablePush(view.computer);
    else await disablePush(view.computer);
    view.computer.push = box.checked;
  } catch (e) {
    box.checked = !box.checked;
    failed(view, e);
    // The switch went back: say why, also when the link only shows the way is busy or lost.
    const why = e instanceof Error ? e.message : String(e);
    if (view === active && !$("chat-error").textContent) showError(`Notifications stay ${box.checked ? "on" : "off"}: ${why}.`);
  } finally {
    box.disabled = false;
  }
}

// ---- Start -------------------------------------------------------------------------------------------

function openFromFragment(fragment: string): boolean {
  const match = /^#open=([^:]+):(.*)$/.exec(fragment);
  if (!match) return false;
  const [bridgeId, requestId] = [decodeURIComponent(match[1]!), decodeURIComponent(match[2]!)];
  history.replaceState(null, "", location.pathname + location.search);
  const view = views.get(bridgeId);
  if (!view) return false;
  focusPrompt = `${bridgeId}:${requestId}`;
  activate(view);
  const shown = view.promptEls.get(requestId);
  if (shown) {
    focusPrompt = "";
    shown.scrollIntoView({ block: "center" });
    shown.querySelector("button")?.focus();
  } else if (view.state === "connected") void refreshPending(view);
  return true;
}

function takeInviteFromAddress(): boolean {
  const found = readInvite(location.hash);
  const damaged = !found && /[#&](id|route)=/.test(location.hash);
  if (!found && !damaged) return false;
  // The routing token leaves the address bar and the history at once.
  history.replaceState(null, "", location.pathname + location.search);
  if (found) showPairing(found);
  else {
    active = null;
    $("link").hidden = true;
    show("welcome");
    $("welcome-error").textContent = "This invite link is incomplete or damaged. Scan the QR code that lanyard pair --remote shows again.";
  }
  return true;
}

/** After sleep, a frozen page or a lost network: check each link and catch up. */
function resumeAll() {
  for (const view of views.values()) {
    if (view.retryTimer !== null) clearTimeout(view.retryTimer);
    view.retryTimer = null;
    view.retryDelay = 0;
    if (!view.computer.unpaired) void recover(view);
  }
}

/** The offline notice: the browser's word first, then what the last call found. */
function showOffline(offline: boolean) {
  $("offline").hidden = !offline;
}

/** When the browser says it is offline, asks the relay (a HEAD of this page, which the worker leaves alone). */
async function checkOnline() {
  if (navigator.onLine) return showOffline(false);
  showOffline(true);
  showOffline(!(await fetch("/", { method: "HEAD", cache: "no-store" }).then(() => true, () => false)));
}

async function start() {
  $("pair-form").addEventListener("submit", submitPin);
  $("composer").addEventListener("submit", send);
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) ($("composer") as HTMLFormElement).requestSubmit();
  });
  $("stop").addEventListener("click", () => {
    const view = active;
    const run = view && [...view.runs.values()].reverse().find((r) => !r.done);
    if (view && run) call(view.computer, "agent.cancel", { runId: run.runId }).catch((e) => failed(view, e));
  });
  $("photo").addEventListener("click", () => $("photo-input").click());
  $("photo-input").addEventListener("change", pickPhoto);
  $("attachment-remove").addEventListener("click", () => clearPhoto());
  $("notify").addEventListener("change", toggleNotifications);
  $("new-chat").addEventListener("click", async () => {
    if (!active) return;
    await switchConversation(active, `phone-${randomKey()}`);
    $("message").focus();
  });
  $("conversation").addEventListener("change", (e) => active && void switchConversation(active, (e.target as HTMLSelectElement).value));
  $("forget").addEventListener("click", async () => {
    const view = active;
    if (!view) return;
    if (view.computer.push) await disablePush(view.computer, false).catch(() => undefined);
    await deleteComputer(view.computer.bridgeId);
    views.delete(view.computer.bridgeId);
    active = null;
    const next = views.values().next().value;
    if (next) activate(next);
    else {
      $("link").hidden = true;
      show("welcome");
      renderComputers();
    }
  });
  setUpVoice();
  addEventListener("online", () => (showOffline(false), resumeAll()));
  addEventListener("offline", () => {
    void checkOnline();
    for (const view of views.values()) if (!view.computer.unpaired) setLink(view, "reconnecting", "this phone is offline");
  });
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && resumeAll());
  document.addEventListener("resume", resumeAll);
  addEventListener("pageshow", (e) => e.persisted && resumeAll());
  addEventListener("hashchange", () => takeInviteFromAddress() || openFromFragment(location.hash));
  void checkOnline();

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => undefined);
    navigator.serviceWorker.addEventListener("message", (e) => {
      const data = e.data as { type?: string; bridgeId?: string; requestId?: string };
      if (data?.type === "open") openFromFragment(`#open=${encodeURIComponent(data.bridgeId ?? "")}:${encodeURIComponent(data.requestId ?? "")}`);
    });
    navigator.serviceWorker.startMessages();
  }

  for (const computer of await listComputers().catch(() => [])) newView(computer);
  if (!takeInviteFromAddress() && !openFromFragment(location.hash)) {
    const last = views.get(localStorage.getItem("lanyard.active") ?? "") ?? views.values().next().value;
    if (last) activate(last);
    else show("welcome");
  }
  renderComputers();
  for (const view of views.values()) if (view !== active && !view.computer.unpaired) void recover(view);
  setInterval(() => {
    for (const view of views.values()) if (view.state === "connected") void probe(view);
  }, PROBE_EVERY_MS);
  document.body.dataset.ready = "true";
}

void start();
