//! `node_kit::sealed_client` against a computer that lies: a stand-in for the relay and the computer on
//! loopback runs the computer's real side of the PIN exchange and then answers `pair/confirm` honestly or
//! not. The client takes only a pairing answer that names the invite's bridge key and the ID the exchange
//! made (`docs/security.md` 3.46).

use certs::{Identity, KeyId};
use node_kit::connection_string::RelayInvite;
use node_kit::pin::{self, PinKeys};
use node_kit::protocol::{DeviceInfo, PairPinChallenge, PairPinConfirmParams, PairPinParams, Scope};
use node_kit::seal::{Direction, Paired, SealKey, SealedBody};
use node_kit::sealed_client::{SealedClient, SealedError};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PIN: &str = "482913";

/// What the stand-in puts in its pairing answer.
#[derive(Clone, Copy)]
enum Answer {
    Honest,
    AnotherBridgeKey,
    AnotherId,
}

/// The stand-in computer's state: its identity and the keys of the exchange in progress.
struct Computer {
    bridge: Identity,
    answer: Answer,
    keys: Mutex<Option<PinKeys>>,
}

impl Computer {
    fn route(&self, path: &str, body: &[u8]) -> Vec<u8> {
        match path {
            "/v1/pair/start" => {
                let start: PairPinParams = serde_json::from_slice(body).unwrap();
                let message = data_encoding::BASE64URL_NOPAD.decode(start.message.as_bytes()).unwrap();
                let (answer, keys) = pin::answer(PIN, None, &self.bridge.id(), &message).unwrap();
                let challenge = PairPinChallenge {
                    message: data_encoding::BASE64URL_NOPAD.encode(&answer),
                    confirmation: data_encoding::BASE64URL_NOPAD.encode(&keys.bridge_confirmation()),
                };
                *self.keys.lock().unwrap() = Some(keys);
                serde_json::to_vec(&challenge).unwrap()
            }
            "/v1/pair/confirm" => {
                let confirm: PairPinConfirmParams = serde_json::from_slice(body).unwrap();
                let keys = self.keys.lock().unwrap().take().unwrap();
                let confirmation = data_encoding::BASE64URL_NOPAD.decode(confirm.confirmation.as_bytes()).unwrap();
                keys.check_node(&confirmation).unwrap();
                let (bridge_key, node_id) = match self.answer {
                    Answer::Honest => (self.bridge.public_key(), keys.client_id()),
                    Answer::AnotherBridgeKey => (Identity::generate().public_key(), keys.client_id()),
                    Answer::AnotherId => (self.bridge.public_key(), KeyId::from_digest([7; 32])),
                };
                let paired = Paired {
                    token: "token".into(),
                    node_id,
                    bridge_public_key: data_encoding::BASE64URL_NOPAD.encode(&bridge_key),
                    relay_url: None,
                    scopes: vec![Scope::Chat],
                    computer_name: "Stand-in".into(),
                };
                let key = SealKey::new(keys.seal_key());
                let sealed = SealedBody { counter: None, sealed: key.seal_json(Direction::ToClient, 0, 0, &paired) };
                serde_json::to_vec(&sealed).unwrap()
            }
            other => panic!("no route {other}"),
        }
    }
}

/// One HTTP/1.1 request on `tcp`, answered `200` with JSON and closed.
async fn serve(mut tcp: TcpStream, computer: Arc<Computer>) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    let (head_end, length) = loop {
        let read = tcp.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the client closed mid-request");
        request.extend_from_slice(&buffer[..read]);
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).unwrap().trim().parse().unwrap();
            break (end + 4, length);
        }
    };
    while request.len() < head_end + length {
        let read = tcp.read(&mut buffer).await.unwrap();
        request.extend_from_slice(&buffer[..read]);
    }
    let path = String::from_utf8_lossy(&request).split(' ').nth(1).unwrap().to_string();
    let body = computer.route(&path, &request[head_end..head_end + length]);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(&[head.as_bytes(), &body].concat()).await.unwrap();
}

/// Pairs a client with a stand-in computer that answers as `answer` says.
async fn pair(answer: Answer) -> Result<SealedClient, SealedError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_url = format!("http://{}", listener.local_addr().unwrap());
    let computer = Arc::new(Computer { bridge: Identity::generate(), answer, keys: Mutex::new(None) });
    let invite = RelayInvite { relay_url, bridge_id: computer.bridge.id(), routing: "routing".into(), name: None };
    let server = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            serve(tcp, computer.clone()).await;
        }
    });
    let device = DeviceInfo { name: "phone".into(), platform: "test".into(), model: None };
    let paired = SealedClient::pair(&invite, PIN, device, vec![Scope::Chat]).await;
    server.abort();
    paired
}

#[tokio::test]
async fn the_client_takes_only_the_invites_bridge_key_and_the_id_its_exchange_made() {
    let honest = pair(Answer::Honest).await.expect("an honest computer pairs");
    assert_eq!(honest.paired().token, "token");
    for liar in [Answer::AnotherBridgeKey, Answer::AnotherId] {
        assert!(matches!(pair(liar).await, Err(SealedError::Tampered)));
    }
}
