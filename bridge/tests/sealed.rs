//! The sealed HTTP contract's agent commands (`docs/protocol.md` §20), through the real relay Worker under
//! `wrangler dev` and the real claude against the scripted model: a sealed client streams turns, answers
//! permission prompts, questions and plans, stops a turn, follows a cut stream again with `agent.attach`,
//! reads its own conversations and nothing of another's, and sends an image; the bridge holds every
//! command to the ACL and the rate limit of a TLS node's call.

mod support;

use node_kit::protocol::{
    AgentEvent, AgentEventKind, AgentOutcome, AgentParams, AttachParams, Attachment, Decision, HistoryItem,
    HistoryParams, PromptResolution, PushSubscribeParams, PushSubscriptionKeys, RespondParams, RunPhase, RunStatus,
    Scope, method,
};
use node_kit::seal::{ChatFrame, Envelope, command};
use node_kit::sealed_client::{ChatStream, SealedError};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::gw::TestGateway;
use support::gw::eventually;
use support::gw::messages_api::{ApiRequest, COLOR_QUESTION, Gate, Reply, color_question};
use support::relay::{Away, texts};
use support::{caught_up_model, tee};

fn prompt(text: &str, session: &str) -> AgentParams {
    AgentParams { timeout_ms: Some(120_000), ..AgentParams::new(text).session(session) }
}

/// Reads frames up to and including the next prompt (permission, question or plan).
async fn next_prompt(stream: &mut ChatStream) -> AgentEvent {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match stream.next().await.expect("the stream ended before a prompt").expect("a frame") {
                ChatFrame::Agent { event } if event.kind.prompt_id().is_some() => return *event,
                ChatFrame::Done { .. } | ChatFrame::Error { .. } => panic!("the run ended before a prompt"),
                _ => {}
            }
        }
    })
    .await
    .expect("a prompt within 60 s")
}

/// Reads the stream to its end: the outcome of the `done` frame.
async fn outcome(stream: ChatStream) -> AgentOutcome {
    let frames = tokio::time::timeout(Duration::from_secs(60), stream.collect()).await.expect("the run ends");
    match frames.expect("every frame opens").pop() {
        Some(ChatFrame::Done { outcome }) => *outcome,
        other => panic!("the last frame is the outcome, not {other:?}"),
    }
}

fn request_id(event: &AgentEvent) -> String {
    event.kind.prompt_id().expect("a prompt").to_string()
}

/// The sealed error of a command: its status and `error` name.
fn refusal(error: SealedError) -> (u16, String) {
    match error {
        SealedError::Command { status, error } => (status, error.error),
        other => panic!("not a sealed refusal: {other:?}"),
    }
}

/// A model that asks for permission (`ALLOW-ME`, `DENY-ME`), asks a question (`ASK-ME`), presents a plan
/// (`PLAN-ME`), and otherwise answers in two pieces.
fn prompting_model(r: &ApiRequest) -> Reply {
    let answered = |id: &str| r.tool_result(id).is_some();
    let text = r.last_user_text.as_str();
    if answered("toolu_step") {
        Reply::text(&["built it"])
    } else if answered("toolu_plan") {
        tee("toolu_step", "PLANNED-STEP-9", "planned.txt")
    } else if answered("toolu_ask") {
        Reply::text(&["blue it is"])
    } else if answered("toolu_allow") || answered("toolu_deny") {
        Reply::text(&["done"])
    } else if text.contains("ALLOW-ME") {
        tee("toolu_allow", "CANARY-ALLOW-61", "allowed.txt")
    } else if text.contains("DENY-ME") {
        tee("toolu_deny", "CANARY-DENY-62", "denied.txt")
    } else if text.contains("ASK-ME") {
        color_question()
    } else if text.contains("PLAN-ME") {
        Reply::tool("toolu_plan", "ExitPlanMode", json!({ "plan": "# Plan\n1. Build it\n" }))
    } else {
        Reply::text(&["sealed ", "stream"])
    }
}

#[tokio::test]
async fn a_sealed_client_streams_turns_and_answers_permissions_questions_and_plans() {
    let Some(away) = Away::start(prompting_model).await else {
        return;
    };
    let mut client = away.sealed_client("Sealed phone", vec![Scope::Chat]).await;
    let cwd = away.gateway.claude_home.as_ref().unwrap().path().to_path_buf();

    // hello names the computer as pairing did, this client, its scopes and every command.
    let hello = client.hello().await.expect("hello");
    let name = bridge::mdns::MdnsConfig::default().display_name();
    assert_eq!((hello.computer.id, hello.computer.name.as_str()), (away.bridge.id, name.as_str()));
    assert_eq!(client.paired().computer_name, name);
    assert_eq!((hello.device.id, hello.device.name.as_str()), (client.paired().node_id, "Sealed phone"));
    assert_eq!(hello.scopes, vec![Scope::Chat]);
    assert_eq!(hello.commands, command::all());

    // The push commands reach the gateway's methods: its key, and its refusal of a loopback endpoint.
    let push = client.push_key().await.expect("push.key");
    assert_eq!(data_encoding::BASE64URL_NOPAD.decode(push.vapid_public_key.as_bytes()).unwrap().len(), 65);
    assert!(!push.subscribed);
    let keys = PushSubscriptionKeys { p256dh: "B".repeat(87), auth: "A".repeat(22) };
    let local = PushSubscribeParams { endpoint: "https://127.0.0.1/push".into(), keys };
    match client.push_subscribe(local).await.unwrap_err() {
        SealedError::Command { status: 400, error } => {
            assert_eq!(error.details.unwrap()["reason"], "endpoint_not_public")
        }
        other => panic!("{other:?}"),
    }

    // A turn streams: accepted, the deltas in order, the outcome.
    let frames = client.agent(prompt("hello there", "plain")).await.expect("accepted").collect().await.unwrap();
    assert!(matches!(frames.first(), Some(ChatFrame::Accepted { .. })), "{frames:?}");
    assert_eq!(texts(&frames), "sealed stream");
    assert!(matches!(frames.last(), Some(ChatFrame::Done { outcome }) if outcome.result == "sealed stream"));

    // A permission allowed: it was in the inbox, the tool runs and the model reads its output.
    let mut stream = client.agent(prompt("ALLOW-ME", "perm")).await.unwrap();
    let asked = next_prompt(&mut stream).await;
    let AgentEventKind::Permission { tool_name, input, .. } = &asked.kind else { panic!("{asked:?}") };
    assert_eq!((tool_name.as_str(), &input["command"]), ("Bash", &json!("echo CANARY-ALLOW-61 | tee allowed.txt")));
    let inbox = client.pending().await.expect("agent.pending");
    assert_eq!(inbox.prompts.iter().map(request_id).collect::<Vec<_>>(), [request_id(&asked)]);
    let allow = RespondParams::new(&asked.run_id, request_id(&asked), Decision::Allow);
    assert_eq!(client.respond(allow).await.unwrap().resolution, PromptResolution::Allowed);
    assert_eq!(outcome(stream).await.result, "done");
    assert_eq!(std::fs::read_to_string(cwd.join("allowed.txt")).unwrap().trim(), "CANARY-ALLOW-61");
    let (output, is_error) = away.api.tool_result_text("toolu_allow").expect("the model got the result");
    assert!(output.contains("CANARY-ALLOW-61") && !is_error, "{output}");
    assert!(client.pending().await.unwrap().prompts.is_empty(), "an answered prompt leaves the inbox");

    // A permission denied: the tool does not run, and the model reads the reason.
    let mut stream = client.agent(prompt("DENY-ME", "perm")).await.unwrap();
    let asked = next_prompt(&mut stream).await;
    let deny = RespondParams::new(&asked.run_id, request_id(&asked), Decision::Deny).message("Not from the bus");
    assert_eq!(client.respond(deny.clone()).await.unwrap().resolution, PromptResolution::Denied);
    outcome(stream).await;
    assert!(!cwd.join("denied.txt").exists(), "a denied tool must not run");
    let (output, is_error) = away.api.tool_result_text("toolu_deny").unwrap();
    assert!(is_error && output.contains("Not from the bus"), "{output}");
    // A second answer is refused, sealed, with the prompt's resolution.
    match client.respond(deny).await.unwrap_err() {
        SealedError::Command { status: 409, error } => {
            assert_eq!(error.error, "prompt_closed");
            assert_eq!(error.details.unwrap()["resolution"], "denied");
        }
        other => panic!("{other:?}"),
    }

    // A question: the option picked is what the model reads.
    let mut stream = client.agent(prompt("ASK-ME", "ask")).await.unwrap();
    let asked = next_prompt(&mut stream).await;
    let AgentEventKind::Question { questions, .. } = &asked.kind else { panic!("{asked:?}") };
    assert_eq!(questions[0].options.iter().map(|o| o.label.as_str()).collect::<Vec<_>>(), ["Red", "Blue"]);
    let pick = RespondParams::new(&asked.run_id, request_id(&asked), Decision::Allow).answer(COLOR_QUESTION, "Blue");
    client.respond(pick).await.unwrap();
    assert_eq!(outcome(stream).await.result, "blue it is");
    let (answer, _) = away.api.tool_result_text("toolu_ask").unwrap();
    assert!(answer.contains(&format!("\"{COLOR_QUESTION}\"=\"Blue\"")), "{answer}");

    // A plan, in the plan mode the owner set for this client: approved, then its step asked and allowed.
    let operator = away.gateway.operator().await;
    let policy = json!({ "nodeId": client.paired().node_id, "mode": "plan" });
    operator.request(method::PAIR_POLICY, policy).await.unwrap();
    let mut stream = client.agent(prompt("PLAN-ME", "plan")).await.unwrap();
    let planned = next_prompt(&mut stream).await;
    assert!(matches!(&planned.kind, AgentEventKind::Plan { .. }), "{planned:?}");
    client.respond(RespondParams::new(&planned.run_id, request_id(&planned), Decision::Allow)).await.unwrap();
    let step = next_prompt(&mut stream).await;
    assert!(matches!(&step.kind, AgentEventKind::Permission { tool_name, .. } if tool_name == "Bash"), "{step:?}");
    client.respond(RespondParams::new(&step.run_id, request_id(&step), Decision::Allow)).await.unwrap();
    assert_eq!(outcome(stream).await.result, "built it");
    let (approved, is_error) = away.api.tool_result_text("toolu_plan").unwrap();
    assert!(!is_error && approved.contains("approved"), "{approved}");
    assert_eq!(std::fs::read_to_string(cwd.join("planned.txt")).unwrap().trim(), "PLANNED-STEP-9");
}

#[tokio::test]
async fn a_sealed_cancel_stops_the_turn_within_a_second() {
    let pieces: Vec<String> = (0..80).map(|i| format!("w{i} ")).collect();
    let Some(away) =
        Away::start(move |_| Reply::Text { pieces: pieces.clone(), gap: Duration::from_millis(150) }).await
    else {
        return;
    };
    let mut client = away.sealed_client("phone", vec![Scope::Chat]).await;
    let mut stream = client.agent(prompt("STREAM SLOWLY", "slow")).await.unwrap();
    let mut deltas = 0;
    let mut run_id = String::new();
    while deltas < 3 {
        match stream.next().await.unwrap().unwrap() {
            ChatFrame::Accepted { run_id: id } => run_id = id,
            ChatFrame::Agent { event } if matches!(event.kind, AgentEventKind::TextDelta { .. }) => deltas += 1,
            _ => {}
        }
    }
    let asked = Instant::now();
    assert_eq!(client.cancel(&run_id).await.unwrap().was, RunPhase::Running);
    let stopped = outcome(stream).await;
    let took = asked.elapsed();
    assert_eq!(stopped.status, RunStatus::Cancelled);
    // Uninterrupted, the rest of the answer would take another 11 s.
    assert!(took < Duration::from_secs(1), "the turn ended {took:?} after the cancel was sent");
    eprintln!("sealed agent.cancel: the turn's last frame came {took:?} after the cancel was sent");
}

#[tokio::test]
async fn a_stream_cut_mid_turn_is_followed_again_with_attach_every_event_once_in_order() {
    let pieces: Vec<String> = (0..10).map(|i| format!("piece{i} ")).collect();
    let gate = Gate::closed();
    let Some(away) = Away::start(caught_up_model(pieces.clone(), gate.clone())).await else {
        return;
    };
    let mut client = away.sealed_client("phone", vec![Scope::Chat]).await;
    let mut stream = client.agent(prompt("TALK THEN ACT", "away")).await.unwrap();
    let Some(Ok(ChatFrame::Accepted { run_id })) = stream.next().await else { panic!("accepted first") };
    let mut text = String::new();
    while text.matches("piece").count() < 3 {
        gate.release_one();
        if let ChatFrame::Agent { event } = stream.next().await.unwrap().unwrap()
            && let AgentEventKind::TextDelta { text: piece } = event.kind
        {
            text.push_str(&piece);
        }
    }
    let seen = stream.last_seq();

    // The phone sleeps: its stream is cut, and the model writes on and then asks for permission.
    drop(stream);
    for _ in 3..pieces.len() {
        gate.release_one();
    }
    let asked = eventually(Duration::from_secs(30), async || {
        let inbox = client.pending().await.ok()?;
        inbox.prompts.into_iter().next()
    })
    .await;
    assert_eq!(asked.run_id, run_id, "agent.pending lists the prompt raised while the stream was cut");

    // Back: attach after the last event read gives every later event once, in order, then the outcome.
    let mut attached = client.attach(AttachParams::run(&run_id, seen)).await.expect("agent.attach");
    assert!(matches!(attached.next().await, Some(Ok(ChatFrame::Accepted { run_id: id })) if id == run_id));
    let mut seqs = Vec::new();
    let mut permissions = 0;
    let outcome = loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), attached.next()).await.expect("frames keep coming");
        match frame.expect("the stream ends with the outcome").unwrap() {
            ChatFrame::Agent { event } => {
                seqs.push(event.seq);
                match &event.kind {
                    AgentEventKind::TextDelta { text: piece } => text.push_str(piece),
                    AgentEventKind::Permission { summary, .. } => {
                        permissions += 1;
                        assert!(summary.contains("CAUGHT-UP-3"), "{summary}");
                        let allow = RespondParams::new(&run_id, request_id(&event), Decision::Allow);
                        client.respond(allow).await.unwrap();
                    }
                    _ => {}
                }
            }
            ChatFrame::Done { outcome } => break outcome,
            other => panic!("{other:?}"),
        }
    };
    assert!(seqs.first().is_some_and(|first| *first == seen + 1), "the replay starts right after {seen}: {seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "every event once, in order: {seqs:?}");
    assert_eq!(text, pieces.concat() + "finished", "every delta exactly once, in order");
    assert_eq!(permissions, 1, "the prompt raised while away is delivered once");
    assert_eq!(outcome.result, "finished");
    let cwd = away.gateway.claude_home.as_ref().unwrap().path();
    assert_eq!(std::fs::read_to_string(cwd.join("away.txt")).unwrap().trim(), "CAUGHT-UP-3");
}

/// The smallest PNG: one transparent pixel.
const PIXEL_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg==";

/// The images of every request the model got, as sent.
fn images_seen(requests: &[ApiRequest]) -> Vec<Value> {
    requests
        .iter()
        .flat_map(|r| r.body["messages"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["role"] == "user")
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["type"] == "image")
        .map(|b| b["source"].clone())
        .collect()
}

#[tokio::test]
async fn a_client_reads_its_own_conversations_and_its_image_reaches_the_model() {
    // claude puts text blocks of its own after an image, so the prompt is looked for in the whole request.
    let Some(away) =
        Away::start(|r| Reply::text(&["answer to ", if r.body.to_string().contains("first") { "one" } else { "two" }]))
            .await
    else {
        return;
    };
    let mut mine = away.sealed_client("phone", vec![Scope::Chat]).await;
    let image = Attachment { media_type: "image/png".into(), data: PIXEL_PNG.into() };
    outcome(mine.agent(prompt("the first question, with a picture", "one").attach(image)).await.unwrap()).await;
    outcome(mine.agent(prompt("the second question", "two")).await.unwrap()).await;
    let images = images_seen(&away.api.requests());
    assert_eq!(images.first(), Some(&json!({ "type": "base64", "media_type": "image/png", "data": PIXEL_PNG })));

    let sessions = mine.sessions().await.expect("agent.sessions").sessions;
    let keys: Vec<&str> = sessions.iter().map(|s| s.session_key.as_str()).collect();
    assert_eq!(keys, ["two", "one"], "latest activity first");
    let page = mine.history(HistoryParams { session_key: "one".into(), before: None, limit: None }).await.unwrap();
    let items: Vec<&HistoryItem> = page.entries.iter().map(|e| &e.item).collect();
    assert_eq!(
        items,
        [
            &HistoryItem::User { text: "the first question, with a picture".into(), attachments: 1 },
            &HistoryItem::Assistant { text: "answer to one".into() },
        ]
    );

    // Another sealed client of the same computer sees none of it, not even by the other's gateway key.
    let mut other = away.sealed_client("phone", vec![Scope::Chat]).await;
    assert!(other.sessions().await.unwrap().sessions.is_empty());
    assert!(other.pending().await.unwrap().prompts.is_empty());
    for key in ["one".to_string(), format!("node:{}:one", mine.paired().node_id)] {
        let theirs = other.history(HistoryParams { session_key: key, before: None, limit: None }).await;
        assert_eq!(refusal(theirs.unwrap_err()), (404, "not_found".to_string()));
    }
    let follow = AttachParams { run_id: None, session_key: Some("one".into()), after_seq: 0 };
    assert_eq!(refusal(other.attach(follow).await.unwrap_err()).0, 404);
}

/// The bytes of the sealed body that carries an envelope of `envelope_len` bytes under `counter`, as
/// `docs/protocol.md` §20 counts them: `{"counter":N,"sealed":"…"}` around the base64url of the envelope
/// and its 16-byte tag.
fn sealed_body_len(envelope_len: usize, counter: u64) -> usize {
    r#"{"counter":,"sealed":""}"#.len() + counter.to_string().len() + (4 * (envelope_len + 16)).div_ceil(3)
}

/// §20's sum: the largest image a body of 65536 bytes carries is what the relay takes, and a byte more is
/// refused by the relay (`413`) before the computer sees it.
#[tokio::test]
async fn the_relays_body_cap_bounds_an_image_as_documented() {
    let Some(away) = Away::start(|_| Reply::text(&["a big picture"])).await else {
        return;
    };
    let mut client = away.sealed_client("phone", vec![Scope::Chat]).await;
    let with_image = |bytes: usize| {
        let image = Attachment { media_type: "image/png".into(), data: format!("{PIXEL_PNG}{}", "A".repeat(bytes)) };
        let params = AgentParams { idempotency_key: "k".repeat(32), ..prompt("how big?", "big").attach(image) };
        Envelope { command: command::AGENT.into(), version: 1, payload: serde_json::to_value(params).unwrap() }
    };
    // Each byte more of the image's base64 is one byte more of the envelope's JSON.
    let base = serde_json::to_vec(&with_image(0)).unwrap().len();
    let envelope_len = |extra: usize| base + extra;
    let fits = (0..65536).rev().find(|&extra| sealed_body_len(envelope_len(extra), 1) <= 65536).unwrap();
    let largest = with_image(fits);
    assert_eq!(serde_json::to_vec(&largest).unwrap().len(), envelope_len(fits));
    let data_len = largest.payload["attachments"][0]["data"].as_str().unwrap().len();
    eprintln!("the largest image with a short prompt: {data_len} bytes of base64");

    let too_large = client.seal(&with_image(fits + 1));
    assert!(too_large.len() > 65536);
    let asked_before = away.api.requests().len();
    // The relay answers 413 by the Content-Length, without reading the body: an HTTP client still writing it
    // may see the connection close instead.
    match client.post(&too_large).await.unwrap_err() {
        SealedError::Refused { status: 413, .. } | SealedError::Transport(_) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(away.api.requests().len(), asked_before, "the oversize body reached the model");
    let body = client.seal(&largest);
    assert!((65534..=65536).contains(&body.len()), "{}", body.len());
    let answer = client.post(&body).await.expect("the largest image is taken").frames().unwrap();
    assert_eq!(outcome(answer).await.result, "a big picture");
}

/// `docs/security.md` 3.46: every sealed command runs through the bridge's ACL and its per-client rate
/// limit like a node's call; the refusals come back sealed, and no refused turn reaches the model.
#[tokio::test]
async fn sealed_commands_are_held_to_the_scopes_and_the_per_client_limit() {
    let one_a_minute = |config: &mut bridge::BridgeConfig| {
        config.limits.requests_per_node = bridge::ratelimit::Rate::per_minute(1, 1);
    };
    let Some(away) = Away::configured(|_| Reply::text(&["hello"]), one_a_minute).await else {
        return;
    };

    // A client paired for voice only may not type: neither `ai_chat` nor a chat `agent` turn runs.
    let mut voice_only = away.sealed_client("voice phone", vec![Scope::Voice]).await;
    let refused = voice_only.chat("kitchen", "may I chat?").await.unwrap_err();
    assert_eq!(refusal(refused), (403, "forbidden".to_string()));
    let mut voice_only = away.sealed_client("voice phone", vec![Scope::Voice]).await;
    let refused = voice_only.agent(prompt("may I type?", "kitchen")).await.unwrap_err();
    assert_eq!(refusal(refused), (403, "forbidden".to_string()));

    // Every command counts against the client's one call a minute: a turn, then an inbox, then a hello.
    let mut chatty = away.sealed_client("phone", vec![Scope::Chat]).await;
    outcome(chatty.agent(prompt("the first turn", "kitchen")).await.unwrap()).await;
    for limited in [
        chatty.chat("kitchen", "the second turn").await.unwrap_err(),
        chatty.pending().await.unwrap_err(),
        chatty.hello().await.unwrap_err(),
    ] {
        match limited {
            SealedError::Command { status: 429, error } => {
                assert_eq!(error.error, "rate_limited");
                assert!(error.retry_after_ms.is_some_and(|ms| ms > 0), "{error:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(away.api.requests_with("the first turn").len(), 1);
    for refused in ["may I chat?", "may I type?", "the second turn"] {
        assert!(away.api.requests_with(refused).is_empty(), "{refused:?} reached the model");
    }
}

/// `docs/security.md` 3.46: a client whose record grants no agent scope (a store from before scopes, a
/// scope of a newer version) is refused every agent command by the bridge's ACL, as a TLS node is.
#[tokio::test]
async fn a_client_without_an_agent_scope_is_refused_every_agent_command() {
    let Some(away) = Away::start(|_| Reply::text(&["hello"])).await else {
        return;
    };
    let mut client = away.sealed_client("phone", vec![Scope::Chat]).await;
    let Away { api: _api, gateway, bridge: _bridge, tap: _tap, relay: _relay } = away;
    let addr = gateway.addr;
    let home = gateway.stop_keeping_home().await;
    let store = gateway::home::paired_store_path(home.path());
    let mut record: Value = serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    record["nodes"][0]["scopes"] = json!([]);
    std::fs::write(&store, serde_json::to_vec(&record).unwrap()).unwrap();
    let _restarted = TestGateway::start_at(home, addr, |_| {}).await;

    let hello = eventually(Duration::from_secs(30), async || client.hello().await.ok()).await;
    assert!(hello.scopes.is_empty(), "{hello:?}");
    let run = "0123456789abcdef0123456789abcdef";
    let commands: [(&str, Value); 10] = [
        (method::PUSH_KEY, json!({})),
        (method::PUSH_SUBSCRIBE, json!({ "endpoint": "https://push.example/x", "keys": { "p256dh": "", "auth": "" } })),
        (method::PUSH_UNSUBSCRIBE, json!({})),
        (method::AGENT, json!({ "prompt": "hi", "idempotencyKey": "k1" })),
        (method::AGENT_ATTACH, json!({ "runId": run, "afterSeq": 0 })),
        (method::AGENT_RESPOND, json!({ "runId": run, "requestId": "r", "decision": "allow" })),
        (method::AGENT_CANCEL, json!({ "runId": run })),
        (method::AGENT_PENDING, json!({})),
        (method::AGENT_SESSIONS, json!({})),
        (method::AGENT_HISTORY, json!({ "sessionKey": "main" })),
    ];
    for (command, payload) in commands {
        let envelope = Envelope { command: command.into(), version: 1, payload };
        let refused = client.send(&envelope).await.unwrap_err();
        assert_eq!(refusal(refused), (403, "forbidden".to_string()), "{command}");
    }
}
