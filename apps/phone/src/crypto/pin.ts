// What Lanyard makes of SPAKE2's K (docs/protocol.md §19, §20): confirmations, the seal key and the client
// ID, each an HMAC-SHA256 under K over an ASCII label; and the bridge ID a bridge key hashes to.
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, fromHex, keyIdText, utf8 } from "./bytes.js";

/** SPAKE2 identity A of a keyless client of the sealed contract. */
export const SEALED_CLIENT_IDENTITY = utf8("lanyard-http-client-v2");
const ED25519_SPKI_HEADER = fromHex("302a300506032b6570032100");

export interface PinKeys {
  bridgeConfirmation: Uint8Array;
  nodeConfirmation: Uint8Array;
  sealKey: Uint8Array;
  /** The client's ID in key-ID text. */
  clientId: string;
}

export function pinKeys(k: Uint8Array): PinKeys {
  const tag = (label: string) => hmac(sha256, k, utf8(label));
  return {
    bridgeConfirmation: tag("lanyard-pin-v1 bridge confirms"),
    nodeConfirmation: tag("lanyard-pin-v1 node confirms"),
    sealKey: tag("lanyard-pin-v1 seal key"),
    clientId: keyIdText(tag("lanyard-pin-v1 client id")),
  };
}

/** The bridge ID (key-ID text) of an Ed25519 public key: SHA-256 of its SPKI. */
export const bridgeIdOf = (publicKey: Uint8Array): string => keyIdText(sha256(concat(ED25519_SPKI_HEADER, publicKey)));
