// Pairing by invite and PIN (docs/protocol.md §19, §20): door 3's SPAKE2 over two POSTs, then the checks
// that the computer that answered is the one the invite names.
import { CallError, type ErrorBody, classify, json, post } from "./client.js";
import { b64url, fromB64url, fromUtf8, keyIdBytes, keyIdText, sameBytes } from "./crypto/bytes.js";
import { SEALED_CLIENT_IDENTITY, bridgeIdOf, pinKeys } from "./crypto/pin.js";
import { TO_CLIENT, open } from "./crypto/seal.js";
import { startA } from "./crypto/spake2.js";
import type { Computer } from "./store.js";

export interface Invite {
  bridgeId: string;
  route: string;
  /** Display only, untrusted. */
  name: string;
}

/** The invite in an address's fragment: `#id=BRIDGE_ID&route=ROUTING[&name=NAME]`; null if there is none. */
export function readInvite(fragment: string): Invite | null {
  const params = new URLSearchParams(fragment.replace(/^#/, ""));
  const id = params.get("id");
  const route = params.get("route");
  const bytes = id ? keyIdBytes(id) : null;
  // A routing token is 32 bytes in base64url: 43 characters.
  if (!bytes || !route || !/^[A-Za-z0-9_-]{43}$/.test(route)) return null;
  return { bridgeId: keyIdText(bytes), route, name: (params.get("name") ?? "").slice(0, 64) };
}

export interface Paired {
  token: string;
  node_id: string;
  bridge_public_key: string;
  relay_url: string | null;
  scopes: string[];
  computer_name?: string;
}

/** What the pairing gives, before it is stored. */
export type NewComputer = Omit<Computer, "nextCounter" | "sessionKey" | "push" | "unpaired" | "pairedAtMs">;

/**
 * Pairs with the invite's computer by its PIN. Throws CallError: `refused` with `code` `pairing_pin_wrong`
 * (and `details.triesLeft`), `pairing_code_invalid`, …; `offline`; `tampered` when the answer is not the
 * invite's computer's.
 */
export async function pair(invite: Invite, pin: string, device: { name: string; model?: string }): Promise<NewComputer> {
  const side = startA(pin, SEALED_CLIENT_IDENTITY, keyIdBytes(invite.bridgeId)!, crypto.getRandomValues(new Uint8Array(64)));
  const call = async (route: string, body: unknown) => {
    const response = await post(route, invite.bridgeId, invite.route, JSON.stringify(body));
    const answer = (await json(response)) as Record<string, unknown>;
    if (response.status !== 200) throw classify(response.status, answer as ErrorBody);
    return answer;
  };
  const start = { message: b64url(side.message), name: device.name, platform: "web", model: device.model, scopes: ["chat", "voice"] };
  const challenge = await call("pair/start", start);
  const k = side.finish(fromB64url(String(challenge.message)) ?? new Uint8Array(0));
  const keys = k && pinKeys(k);
  const theirs = fromB64url(String(challenge.confirmation));
  if (!keys || !theirs || !sameBytes(keys.bridgeConfirmation, theirs)) {
    // A wrong PIN (or not the computer). Confirm with random bytes, which tell nothing of this side's
    // key, so that the computer answers how many tries are left.
    await call("pair/confirm", { confirmation: b64url(crypto.getRandomValues(new Uint8Array(32))) });
    throw new CallError("refused", "the PIN did not match", 403, "pairing_pin_wrong");
  }
  const answer = await call("pair/confirm", { confirmation: b64url(keys.nodeConfirmation) });
  const opened = open(keys.sealKey, TO_CLIENT, 0n, 0n, String(answer.sealed));
  if (!opened) throw new CallError("tampered", "the pairing answer did not open under the PIN's key");
  const paired = JSON.parse(fromUtf8(opened)) as Paired;
  const bridgeKey = fromB64url(paired.bridge_public_key);
  if (!bridgeKey || bridgeKey.length !== 32 || bridgeIdOf(bridgeKey) !== invite.bridgeId || paired.node_id !== keys.clientId) {
    throw new CallError("tampered", "the computer that answered is not the one the invite names");
  }
  return {
    bridgeId: invite.bridgeId,
    name: paired.computer_name || invite.name || "Computer",
    relayOrigin: location.origin,
    token: paired.token,
    sealKey: b64url(keys.sealKey),
    nodeId: paired.node_id,
    scopes: paired.scopes,
  };
}

