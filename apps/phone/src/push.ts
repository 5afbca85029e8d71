// Push notifications, per computer: a service-worker registration of its own (scope /push/BRIDGE_ID/), so
// the registration that receives a push names the computer, subscribed with that computer's VAPID key.
// The subscription travels sealed to the computer, which sends the pushes itself.
import { call } from "./client.js";
import { fromB64url } from "./crypto/bytes.js";
import { type Computer, updateComputer } from "./store.js";

export const pushScope = (bridgeId: string): string => `/push/${encodeURIComponent(bridgeId)}/`;

export const pushSupported = (): boolean => "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;

async function registration(bridgeId: string): Promise<ServiceWorkerRegistration> {
  const scope = pushScope(bridgeId);
  const registered = await navigator.serviceWorker.register("/sw.js", { scope });
  if (registered.active) return registered;
  const worker = registered.installing ?? registered.waiting;
  await new Promise<void>((resolve, reject) => {
    const settle = () => {
      if (!worker || worker.state === "activated") resolve();
      else if (worker.state === "redundant") reject(new Error("The notification worker did not install."));
    };
    worker?.addEventListener("statechange", settle);
    settle();
  });
  return registered;
}

/** Asks for permission, subscribes with the computer's key and hands the subscription to the computer. */
export async function enablePush(computer: Computer): Promise<void> {
  if ((await Notification.requestPermission()) !== "granted") throw new Error("Notifications are blocked for this site in the browser's settings.");
  const { vapidPublicKey } = await call<{ vapidPublicKey: string }>(computer, "push.key");
  const key = fromB64url(vapidPublicKey);
  if (!key || key.length !== 65) throw new Error("The computer's push key is not a P-256 key.");
  const registered = await registration(computer.bridgeId);
  const existing = await registered.pushManager.getSubscription();
  await existing?.unsubscribe();
  const subscription = await registered.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key as BufferSource });
  const { endpoint, keys } = subscription.toJSON();
  // The computer takes base64url without padding; some browsers pad.
  const unpadded = (text = "") => text.replace(/=+$/, "");
  await call(computer, "push.subscribe", { endpoint, keys: { p256dh: unpadded(keys?.p256dh), auth: unpadded(keys?.auth) } });
  await updateComputer(computer.bridgeId, { push: true });
}

/** Tells the computer to stop, and drops this phone's subscription and registration for it. */
export async function disablePush(computer: Computer, tellComputer = true): Promise<void> {
  // The computer first: if it cannot be told, nothing changes here and the switch stays on.
  if (tellComputer) await call(computer, "push.unsubscribe");
  await updateComputer(computer.bridgeId, { push: false });
  const scope = pushScope(computer.bridgeId);
  const registered = (await navigator.serviceWorker.getRegistrations()).find((r) => new URL(r.scope).pathname === scope);
  await (await registered?.pushManager.getSubscription())?.unsubscribe();
  await registered?.unregister();
}
