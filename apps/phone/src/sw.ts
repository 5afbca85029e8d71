// The service worker. At scope `/` it keeps the app's shell for offline starts. At scope
// `/push/BRIDGE_ID/` (one registration per computer) it shows that computer's pushes, and answers a
// permission prompt from the notification's Allow / Deny, sealed, at most once per prompt.
/// <reference lib="webworker" />
import { CallError, call } from "./client.js";
import { claimAnswer, getComputer, releaseAnswer } from "./store.js";

declare const self: ServiceWorkerGlobalScope;
declare const SHELL_VERSION: string;

const SHELL = ["/", "/app.js", "/app.css", "/manifest.webmanifest", "/icon.svg", "/icon-192.png", "/icon-512.png", "/icon-180.png"];
const CACHE = `lanyard-shell-${SHELL_VERSION}`;
const scopePath = new URL(self.registration.scope).pathname;
const isShell = scopePath === "/";
/** The computer this registration is for (its scope is `/push/BRIDGE_ID/`), or "" for the shell's. */
const bridgeId = decodeURIComponent(/^\/push\/([^/]+)\/$/.exec(scopePath)?.[1] ?? "");

self.addEventListener("install", (event) => {
  // Each file on its own: one that fails to load leaves the rest of the shell cached, and the worker still installs.
  const shell = () => caches.open(CACHE).then((cache) => Promise.all(SHELL.map((path) => cache.add(path).catch(() => undefined))));
  event.waitUntil((isShell ? shell() : Promise.resolve()).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  const old = caches.keys().then((keys) => Promise.all(keys.filter((k) => isShell && k !== CACHE && k.startsWith("lanyard-shell-")).map((k) => caches.delete(k))));
  event.waitUntil(old.then(() => self.clients.claim()));
});

// The shell: from the network when it answers (so an update shows at once), else from the cache. The
// relay's API (/v1/…) is never cached or touched.
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (!isShell || event.request.method !== "GET" || url.origin !== location.origin || url.pathname.startsWith("/v1/")) return;
  const path = event.request.mode === "navigate" ? "/" : url.pathname;
  if (!SHELL.includes(path)) return;
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          void caches.open(CACHE).then((cache) => cache.put(path, copy));
        }
        return response;
      })
      .catch(async () => (await caches.match(path)) ?? Response.error()),
  );
});

/** The push payload (docs/protocol.md, "Web Push"): the least that is useful. */
interface Push {
  v: number;
  kind: "permission" | "question" | "plan" | "done";
  runId: string;
  requestId?: string;
  sessionKey: string;
  tool?: string;
}

const BODIES: Record<Push["kind"], (push: Push) => string> = {
  permission: (push) => `Wants to use ${push.tool || "a tool"}. Allow it?`,
  question: () => "Has a question for you.",
  plan: () => "Has a plan for you to approve.",
  done: () => "Finished its turn.",
};

self.addEventListener("push", (event) => {
  event.waitUntil(
    (async () => {
      let push: Push;
      try {
        push = event.data!.json() as Push;
      } catch {
        return;
      }
      if (!bridgeId || !(push.kind in BODIES)) return;
      const computer = await getComputer(bridgeId);
      // A push reaches only a registration this phone subscribed for the computer; turning
      // notifications off drops the subscription with the registration.
      if (!computer || computer.unpaired) return;
      const options: NotificationOptions & { actions?: { action: string; title: string }[] } = {
        body: BODIES[push.kind](push),
        tag: `${bridgeId}:${push.requestId ?? push.runId}`,
        icon: "/icon-192.png",
        data: { bridgeId, ...push },
      };
      if (push.kind === "permission" && push.requestId) {
        options.actions = [
          { action: "allow", title: "Allow" },
          { action: "deny", title: "Deny" },
        ];
      }
      await self.registration.showNotification(computer.name, options);
    })(),
  );
});

async function answer(push: Push & { bridgeId: string }, decision: "allow" | "deny"): Promise<boolean> {
  const computer = await getComputer(push.bridgeId);
  if (!computer || computer.unpaired || !push.requestId) return false;
  if (!(await claimAnswer(push.bridgeId, push.requestId))) return true;
  try {
    await call(computer, "agent.respond", { runId: push.runId, requestId: push.requestId, decision });
    return true;
  } catch (e) {
    // Closed already (answered elsewhere, timed out): nothing more to do. Anything else: let the app try.
    if (e instanceof CallError && (e.code === "prompt_closed" || e.code === "not_found")) return true;
    await releaseAnswer(push.bridgeId, push.requestId);
    return false;
  }
}

async function openApp(push: Push & { bridgeId: string }) {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const open = { type: "open", bridgeId: push.bridgeId, requestId: push.requestId ?? "" };
  const existing = windows.find((w) => new URL(w.url).origin === location.origin);
  if (existing) {
    existing.postMessage(open);
    await existing.focus();
    return;
  }
  await self.clients.openWindow(`/#open=${encodeURIComponent(push.bridgeId)}:${encodeURIComponent(push.requestId ?? "")}`);
}

self.addEventListener("notificationclick", (event) => {
  const push = event.notification.data as Push & { bridgeId: string };
  event.notification.close();
  event.waitUntil(
    (async () => {
      if ((event.action === "allow" || event.action === "deny") && push.kind === "permission") {
        if (await answer(push, event.action)) return;
      }
      await openApp(push);
    })(),
  );
});
