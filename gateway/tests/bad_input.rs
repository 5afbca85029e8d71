//! Bad input gets its documented error or close, and never disturbs a well-behaved client on another
//! connection.

mod support;

use futures_util::{SinkExt, StreamExt};
use node_kit::Client;
use node_kit::protocol::method;
use serde_json::{Value, json};
use std::time::Duration;
use support::TestGateway;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn raw(gateway: &TestGateway) -> Ws {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    tokio_tungstenite::connect_async_with_config(gateway.url.as_str(), Some(config), false).await.unwrap().0
}

fn connect_frame(token: &str) -> Value {
    json!({
        "type": "connect", "minProtocol": 1, "maxProtocol": 1,
        "client": {"instanceId": "raw-test", "mode": "operator", "platform": "test", "version": "0"},
        "auth": {"token": token}
    })
}

async fn send(ws: &mut Ws, value: &Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// The next JSON frame that is not an event (presence events come and go), skipping pings; `None` once
/// the server closed.
async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("the server answers") {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] != "event" {
                    return Some(frame);
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return None,
        }
    }
}

/// Waits for the close frame and returns its code.
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("the server closes") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

async fn hello(gateway: &TestGateway) -> Ws {
    let mut ws = raw(gateway).await;
    send(&mut ws, &connect_frame(&gateway.token)).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "hello-ok");
    ws
}

async fn health_works(ws: &mut Ws, id: &str) {
    send(ws, &json!({"type": "req", "id": id, "method": "health"})).await;
    loop {
        let frame = next_json(ws).await.expect("still connected");
        if frame["type"] == "res" {
            assert_eq!(frame["id"], id);
            assert_eq!(frame["ok"], true);
            return;
        }
    }
}

/// A well-behaved client that keeps calling `health` until told to stop, and reports how many answers it got.
fn bystander(client: Client) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<usize>) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut answers = 0;
        while stopped.try_recv().is_err() {
            client.request(method::HEALTH, Value::Null).await.expect("the bystander is never disturbed");
            answers += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        answers
    });
    (stop, task)
}

#[tokio::test]
async fn malformed_frames_get_invalid_request_and_the_connection_stays_usable() {
    let gateway = TestGateway::start(|_| {}).await;
    let (stop, watcher) = bystander(gateway.operator().await);
    let mut ws = hello(&gateway).await;

    for garbage in ["not json at all", r#"{"type":"req","id":"1","method":"hea"#, "[1,2,3]", r#"{"type":"mystery"}"#] {
        ws.send(Message::text(garbage)).await.unwrap();
        let frame = next_json(&mut ws).await.unwrap();
        assert_eq!(frame["type"], "error", "{garbage}");
        assert_eq!(frame["error"]["code"], "INVALID_REQUEST", "{garbage}");
    }
    ws.send(Message::binary(vec![0u8, 159, 146, 150])).await.unwrap();
    assert_eq!(next_json(&mut ws).await.unwrap()["error"]["code"], "INVALID_REQUEST");

    // Wrong types where the request id is readable: the answer is a res for that id.
    send(
        &mut ws,
        &json!({"type": "req", "id": "t1", "method": "agent", "params": {"prompt": 5, "idempotencyKey": "k"}}),
    )
    .await;
    let frame = next_json(&mut ws).await.unwrap();
    assert_eq!(
        (frame["type"].as_str(), frame["id"].as_str(), frame["ok"].as_bool()),
        (Some("res"), Some("t1"), Some(false))
    );
    assert_eq!(frame["error"]["code"], "INVALID_REQUEST");
    send(&mut ws, &json!({"type": "req", "id": "t2", "method": "agent", "params": {"prompt": "hi"}})).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["error"]["code"], "INVALID_REQUEST", "idempotencyKey is required");
    send(&mut ws, &json!({"type": "req", "id": 7, "method": "health"})).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "error", "a numeric id cannot be answered as a res");

    send(&mut ws, &json!({"type": "req", "id": "u1", "method": "screen.teleport"})).await;
    let frame = next_json(&mut ws).await.unwrap();
    assert_eq!(frame["error"]["code"], "UNKNOWN_METHOD");
    assert!(frame["error"]["details"]["supported"].as_array().unwrap().contains(&json!("health")));

    // A second connect on a live connection is not allowed either.
    send(&mut ws, &connect_frame(&gateway.token)).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["error"]["code"], "INVALID_REQUEST");

    health_works(&mut ws, "after").await;
    stop.send(()).unwrap();
    assert!(watcher.await.unwrap() > 0);
}

#[tokio::test]
async fn a_10_mb_frame_is_refused_with_payload_too_large() {
    let gateway = TestGateway::start(|_| {}).await;
    let (stop, watcher) = bystander(gateway.operator().await);
    let mut ws = hello(&gateway).await;

    let huge = json!({"type": "req", "id": "big", "method": "agent",
        "params": {"prompt": "x".repeat(10 * 1024 * 1024), "idempotencyKey": "k"}});
    let _ = ws.send(Message::text(huge.to_string())).await;
    let frame = next_json(&mut ws).await.expect("an error frame before the close");
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(frame["error"]["details"]["maxFrameBytes"], node_kit::protocol::MAX_FRAME_BYTES);
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));

    stop.send(()).unwrap();
    assert!(watcher.await.unwrap() > 0);
    // New connections are still welcome.
    health_works(&mut hello(&gateway).await, "fresh").await;
}

#[tokio::test]
async fn handshake_failures_are_answered_then_closed() {
    // Each case must send its `connect` within this deadline; wide enough for a loaded machine.
    let gateway = TestGateway::start(|c| c.handshake_timeout = Duration::from_secs(2)).await;
    let (stop, watcher) = bystander(gateway.operator().await);

    let cases: Vec<(Value, &str)> = vec![
        (connect_frame("wrong-token"), "UNAUTHORIZED"),
        (
            {
                let mut f = connect_frame("");
                f.as_object_mut().unwrap().remove("auth");
                f
            },
            "UNAUTHORIZED",
        ),
        (json!({"type": "req", "id": "1", "method": "health"}), "INVALID_REQUEST"),
        (
            {
                let mut f = connect_frame(&gateway.token);
                f["minProtocol"] = json!(5);
                f["maxProtocol"] = json!(9);
                f
            },
            "UNSUPPORTED_PROTOCOL",
        ),
        (
            {
                let mut f = connect_frame(&gateway.token);
                f["client"]["mode"] = json!("superuser");
                f
            },
            "INVALID_REQUEST",
        ),
    ];
    for (frame, code) in cases {
        let mut ws = raw(&gateway).await;
        send(&mut ws, &frame).await;
        let answer = next_json(&mut ws).await.unwrap();
        assert_eq!(answer["type"], "error");
        assert_eq!(answer["error"]["code"], code, "{frame}");
        assert_eq!(close_code(&mut ws).await, Some(CloseCode::Policy));
    }

    // No connect at all: closed after the handshake timeout.
    let mut silent = raw(&gateway).await;
    let answer = next_json(&mut silent).await.unwrap();
    assert_eq!(answer["error"]["code"], "TIMEOUT");
    assert_eq!(close_code(&mut silent).await, Some(CloseCode::Policy));

    stop.send(()).unwrap();
    assert!(watcher.await.unwrap() > 0);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_while_others_continue() {
    let gateway = TestGateway::start(|c| c.outbound_queue = 8).await;
    let (stop, watcher) = bystander(gateway.operator().await);

    // A client with a tiny receive buffer that sends requests and never reads the answers.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(gateway.url.trim_start_matches("ws://").parse().unwrap()).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(gateway.url.as_str(), MaybeTlsStream::Plain(stream)).await.unwrap();
    send(&mut ws, &connect_frame(&gateway.token)).await;
    let request = Message::text(json!({"type": "req", "id": "h", "method": "health"}).to_string());
    let mut dropped = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for _ in 0..200_000 {
        let sent = tokio::time::timeout(Duration::from_secs(2), ws.send(request.clone())).await;
        if !matches!(sent, Ok(Ok(()))) || tokio::time::Instant::now() > deadline {
            dropped = matches!(sent, Ok(Err(_)));
            break;
        }
    }
    assert!(dropped, "the gateway dropped the client that stopped reading");
    stop.send(()).unwrap();
    assert!(watcher.await.unwrap() > 0);
}

#[tokio::test]
async fn a_silent_peer_is_closed_by_the_keepalive() {
    // The watcher must answer pings in time too, so not too short for a loaded machine.
    let gateway = TestGateway::start(|c| c.keepalive_interval = Duration::from_secs(1)).await;
    let watcher = gateway.operator().await;
    // Connects, then never reads again: it never answers the gateway's pings (a half-open peer).
    let silent = hello(&gateway).await;
    let connections = async || {
        let health = watcher.request(method::HEALTH, Value::Null).await.unwrap();
        health["connections"].as_u64().unwrap()
    };
    assert_eq!(connections().await, 2);
    support::eventually(Duration::from_secs(15), async || (connections().await == 1).then_some(())).await;
    drop(silent);
}

#[tokio::test]
async fn wrong_tokens_slow_down_on_their_connection_and_the_right_one_still_works_at_once() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut guessing = raw(&gateway).await;
    let mut waits = Vec::new();
    for _ in 0..7 {
        let asked = std::time::Instant::now();
        send(&mut guessing, &connect_frame("wrong-token")).await;
        let answer = next_json(&mut guessing).await.expect("a refusal, and the connection stays open");
        assert_eq!(answer["error"]["code"], "UNAUTHORIZED");
        waits.push(asked.elapsed());
    }
    // Three are answered at once; from the fourth each answer waits 100 ms, doubling. (Were the first three
    // slowed too, they alone would take 700 ms.)
    let first_three: Duration = waits[..3].iter().sum();
    assert!(first_three < Duration::from_millis(500), "{waits:?}");
    for (wait, at_least) in waits[3..].iter().zip([100, 200, 400, 800]) {
        assert!(*wait >= Duration::from_millis(at_least), "{waits:?}");
    }
    // The owner's next connection is never slowed by someone else's guesses: slowed as an eighth guess from
    // the same address, its answer would wait 1.6 s.
    let asked = std::time::Instant::now();
    let mut owner = raw(&gateway).await;
    send(&mut owner, &connect_frame(&gateway.token)).await;
    assert_eq!(next_json(&mut owner).await.unwrap()["type"], "hello-ok");
    assert!(asked.elapsed() < Duration::from_millis(1000), "{:?}", asked.elapsed());
    // The refusals are counted, not logged one by one.
    let health = gateway.operator().await.request(method::HEALTH, Value::Null).await.unwrap();
    assert_eq!(health["refusedConnections"]["unauthorized"], 7, "{health}");

    // The wait stops growing at 2 s (doubling on, the ninth would wait 3.2 s), and the tenth wrong token
    // is refused and closes the connection.
    for at_least in [1600, 2000] {
        let asked = std::time::Instant::now();
        send(&mut guessing, &connect_frame("wrong-token")).await;
        assert_eq!(next_json(&mut guessing).await.expect("still open")["error"]["code"], "UNAUTHORIZED");
        waits.push(asked.elapsed());
        assert!(*waits.last().unwrap() >= Duration::from_millis(at_least), "{waits:?}");
    }
    assert!(waits[8] < Duration::from_millis(3000), "capped at 2 s: {waits:?}");
    send(&mut guessing, &connect_frame("wrong-token")).await;
    assert_eq!(next_json(&mut guessing).await.expect("the tenth is answered")["error"]["code"], "UNAUTHORIZED");
    assert_eq!(next_json(&mut guessing).await, None, "closed after the tenth wrong token");
}

/// What a client gets after it sends a Close: the server's Close echoing its code (RFC 6455 §5.5.1),
/// skipping anything sent before it; `None` if the connection ended without one.
async fn close_echo(ws: &mut Ws) -> Option<CloseCode> {
    ws.send(Message::Close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: CloseCode::Library(4001),
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("an answer in time") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn a_clients_close_is_answered_with_a_close() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut before_connect = raw(&gateway).await;
    assert_eq!(close_echo(&mut before_connect).await, Some(CloseCode::Library(4001)));

    let mut connected = raw(&gateway).await;
    send(&mut connected, &connect_frame(&gateway.token)).await;
    assert_eq!(next_json(&mut connected).await.unwrap()["type"], "hello-ok");
    assert_eq!(close_echo(&mut connected).await, Some(CloseCode::Library(4001)));
    gateway.stop().await;
}
