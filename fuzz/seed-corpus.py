#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus (fuzz/corpus/TARGET/) from the protocol docs' examples and node-kit's
test vectors. Run it again when those change; each seed is named by its SHA-1, as libFuzzer names inputs."""

import base64
import hashlib
import json
import re
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
seeds: dict[str, set[bytes]] = {}


def seed(target: str, data: bytes | str) -> None:
    seeds.setdefault(target, set()).add(data.encode() if isinstance(data, str) else data)


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


protocol = (ROOT / "docs" / "protocol.md").read_text()
examples = []
for block in re.findall(r"```json\n(.*?)```", protocol, re.S) + re.findall(r"`(\{[^`\n]*\})`", protocol):
    try:
        examples.append(json.loads(block))
    except ValueError:
        continue
frames = [e for e in examples if isinstance(e, dict) and "type" in e]

for frame in frames:
    text = json.dumps(frame, separators=(",", ":"))
    seed("frame", text)
    seed("frame_head", text)
    if frame["type"] == "req" and isinstance(frame.get("method"), str):
        params = frame.get("params")
        seed("method_params", frame["method"] + "\n" + json.dumps(params, separators=(",", ":")))
        if frame["method"] == "node.invoke" and isinstance(params, dict) and "command" in params:
            seed("node_command", params["command"] + "\n" + json.dumps(params.get("params"), separators=(",", ":")))

for command, params in [
    ("screen.show", None), ("screen.hide", {}), ("screen.navigate", {"url": "https://example.org"}),
    ("screen.eval", {"javaScript": "1+1"}), ("screen.snapshot", {"maxWidth": 800, "quality": 80, "format": "jpeg"}),
    ("screen.setMode", {"mode": "canvas"}), ("lamp.on", {"level": 3}),
]:
    seed("node_command", command + "\n" + json.dumps(params))

vectors = [json.loads((ROOT / "node-kit/tests/vectors" / name).read_text()) for name in ("rust.json", "from-web.json")]
bridge_ids = [v["bridgeId"] for vs in vectors for v in vs["spake2"]]
route = "A" * 43

# The pairing dialogue, with the vectors' SPAKE2 messages and confirmations.
for vs in vectors:
    for v in vs["spake2"]:
        device = {"name": "Ada's phone", "platform": "ios", "model": "iPhone", "scopes": ["chat", "voice"]}
        seed("method_params", "pair.pin\n" + json.dumps({"message": v["messageA"], **device}))
        seed("method_params", "pair.pin.confirm\n" + json.dumps({"confirmation": v["nodeConfirmation"]}))
        seed("method_params", "pair.pin\n" + json.dumps({
            "nodeId": v["bridgeId"], "bridgeId": v["bridgeId"], "routingHash": "ab" * 32, "message": v["messageA"],
            **device}))
        seed("sealed_body", json.dumps({"message": v["messageA"], **device}))
        seed("sealed_body", json.dumps({"confirmation": v["nodeConfirmation"]}))
        for message in ("messageA", "messageB"):
            seed("pin", v[message])
            seed("pin", unb64(v[message]))
        seed("pin", v["nodeConfirmation"])
seed("method_params", "pair.request\n" + json.dumps(
    {"name": "Ada's phone", "platform": "android", "scopes": ["chat"], "nonceCommitment": "a7" * 32}))
seed("method_params", "pair.confirm\n" + json.dumps({"nonce": "ff" * 32}))
seed("method_params", "pair.wait\n{}")
seed("method_params", "pair.redeem\n" + json.dumps(
    {"code": "nmpq4ou4fvhv5ct3nrou4pzkdm", "name": "n", "platform": "linux", "scopes": ["voice"]}))
seed("method_params", "pair.submit\n" + json.dumps({
    "nodeId": bridge_ids[0], "name": "n", "platform": "linux", "scopes": ["chat"], "address": "10.0.0.2",
    "sas": "593249"}))
seed("method_params", "seal.open\n" + json.dumps({"routingHash": "ab" * 32, "counter": 1, "sealed": "klWZhk-7Wl93UgclQOgnvQ"}))
seed("method_params", "agent\n" + json.dumps({"prompt": "hi", "idempotencyKey": "k1", "channel": "voice",
                                                  "attachments": [{"mediaType": "image/png", "data": "iVBORw0KGgo="}]}))

# Sealed bodies and the envelopes in them.
for vs in vectors:
    for v in vs["seal"]:
        counter, frame = int(v["counter"]), int(v["frame"])
        seed("seal_open", struct.pack(">BQQ", v["direction"], counter, frame) + v["sealed"].encode())
        seed("sealed_body", json.dumps({"counter": counter, "sealed": v["sealed"]}))
        seed("sealed_body", v["plaintext"])
seed("sealed_body", json.dumps({"command": "ai_chat", "version": 1,
                                "payload": {"conversation_id": "c1", "message": "hello"}}))
seed("sealed_body", json.dumps({"command": "agent.attach", "version": 1, "payload": {"runId": "r", "afterSeq": 3}}))

# Connection strings and invites, as the docs write them.
for line in re.findall(r"^lanyard://\S+$", protocol, re.M):
    if "HOST" not in line:
        seed("connection_string", line)
for bridge_id in bridge_ids:
    seed("connection_string", f"lanyard://adas-mac.local:18790?id={bridge_id}&code=abc234")
    seed("relay_invite", f"https://relay.example.workers.dev/#id={bridge_id}&route={route}")
    seed("relay_invite", f"https://example.net/lanyard/#id={bridge_id}&route={route}&name=Ada%27s%20Mac%20%E2%98%95")
    seed("relay_invite", f"lanyard+https://relay.example.workers.dev?id={bridge_id}&route={route}")
    seed("relay_invite", f"http://127.0.0.1:8787/#id={bridge_id}&route={route}")

# The relay link's frames (docs/relay.md): OPEN, DATA, CLOSE.
token_hash = hashlib.sha256(b"routing token").hexdigest()
seed("relay_frame", b"\x01\x00\x00\x00\x07" + json.dumps({"tokenHash": token_hash}).encode())
for route_name in ("pair/start", "pair/confirm", "chat", "admin"):
    seed("relay_frame", b"\x01\x00\x00\x01\x00" + json.dumps({"tokenHash": token_hash, "http": route_name}).encode())
seed("relay_frame", b"\x02\x00\x00\x00\x07" + b"\x16\x03\x01\x02\x00\x01")
seed("relay_frame", b"\x02\x00\x00\x01\x00" + json.dumps({"status": 200, "contentType": "text/event-stream"}).encode())
seed("relay_frame", b"\x03\x00\x00\x00\x07")
seed("relay_frame", b"\x03\x00\x00\x00\x07revoked")
seed("relay_frame", b"\x03\x00\x00\x00\x07" + "é".encode() * 70)

# The console's requests.
head = "Host: 127.0.0.1:18790\nOrigin: http://127.0.0.1:18790\nCookie: a=1; lanyard_console=abc\n"
seed("console_json", head + "Content-Type: application/json\n\n" + json.dumps({"method": "pair.approve",
                                                                              "params": {"requestId": "r"}}))
seed("console_json", head + "Content-Type: application/json\n\n" + json.dumps({"remote": True}))
seed("console_json", "Host: localhost:18790\nContent-Type: text/plain\n\n{}")

for target, items in seeds.items():
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    for data in items:
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    print(f"{target}: {len(items)} seeds")
