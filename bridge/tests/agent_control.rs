//! Claude Code driven from a node, with real parts: the real claude (against the scripted Messages API)
//! asks the gateway before running tools; the prompts reach a paired node through the bridge's mutual TLS;
//! the node answers them, answers questions, approves plans, interrupts turns, loses its link mid-turn and
//! catches up, reads its conversations back, and sends images.

mod support;

use node_kit::node::{Backoff, Node};
use node_kit::protocol::{
    AgentEvent, AgentEventKind, AgentParams, AttachParams, Attachment, Decision, ErrorCode, HistoryItem, HistoryParams,
    PromptResolution, RespondParams, RunPhase, RunStatus, Scope, method,
};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::gw::messages_api::{ApiRequest, COLOR_QUESTION, Gate, MessagesApi, Reply, color_question};
use support::gw::{TestGateway, claude_binary, eventually};
use support::{Cable, TestBridge, caught_up_model, gateway_requests, pair, remote, tee};

/// The computer: the scripted API, a gateway running the real claude against it, a bridge in front.
struct Computer {
    api: MessagesApi,
    gateway: TestGateway,
    bridge: TestBridge,
}

impl Computer {
    async fn start(
        script: impl Fn(&ApiRequest) -> Reply + Send + Sync + 'static,
        configure: impl FnOnce(&mut gateway::GatewayConfig),
    ) -> Option<Computer> {
        let claude = claude_binary()?;
        let api = MessagesApi::start(script).await;
        let gateway = TestGateway::with_claude(claude, &api, configure).await;
        let bridge = TestBridge::start(&gateway, |_| {}).await;
        Some(Computer { api, gateway, bridge })
    }

    /// claude's working directory: where its tools write.
    fn cwd(&self) -> PathBuf {
        self.gateway.claude_home.as_ref().expect("a claude gateway").path().to_path_buf()
    }

    /// A node paired by approval and connected through the bridge at `address` (the bridge's own, or a
    /// middlebox in front of it).
    async fn node_at(&self, address: String) -> Node {
        let (identity, mut paired) = pair(&self.bridge, &self.gateway, &[Scope::Chat, Scope::Voice]).await;
        paired.address = address;
        let backoff = Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(300) };
        Node::builder(identity, paired).backoff(backoff).connect().await.expect("the node connects")
    }

    async fn node(&self) -> Node {
        self.node_at(self.bridge.address()).await
    }
}

fn prompt(text: &str, session: &str) -> AgentParams {
    AgentParams { timeout_ms: Some(120_000), ..AgentParams::new(text).session(session) }
}

/// The run's events up to and including the next prompt (permission, question or plan).
async fn next_prompt(run: &mut node_kit::AgentRun) -> AgentEvent {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let event = run.next().await.expect("the run ended before it asked anything");
            if event.kind.prompt_id().is_some() {
                return event;
            }
        }
    })
    .await
    .expect("a prompt within 60 s")
}

fn request_id(event: &AgentEvent) -> String {
    event.kind.prompt_id().expect("a prompt").to_string()
}

#[tokio::test]
async fn a_node_allows_and_denies_a_tool_and_the_model_sees_each_outcome() {
    let Some(computer) = Computer::start(
        |r| match (r.last_user_text.as_str(), r.has_tool_result) {
            (_, true) => Reply::text(&["done"]),
            (text, _) if text.contains("ALLOW-ME") => tee("toolu_allow", "CANARY-ALLOW-51", "allowed.txt"),
            _ => tee("toolu_deny", "CANARY-DENY-52", "denied.txt"),
        },
        |_| {},
    )
    .await
    else {
        return;
    };
    let node = computer.node().await;

    let mut run = node.agent(prompt("ALLOW-ME", "perm")).await.unwrap();
    let asked = next_prompt(&mut run).await;
    let AgentEventKind::Permission { tool_name, summary, input, .. } = &asked.kind else { panic!("{asked:?}") };
    assert_eq!(tool_name, "Bash");
    assert!(summary.starts_with("Run `echo CANARY-ALLOW-51 | tee allowed.txt`"), "{summary}");
    assert_eq!(input["command"], "echo CANARY-ALLOW-51 | tee allowed.txt");
    let answered = node.respond(RespondParams::new(run.run_id(), request_id(&asked), Decision::Allow)).await.unwrap();
    assert_eq!(answered.resolution, PromptResolution::Allowed);
    assert_eq!(run.outcome().await.unwrap().result, "done");
    let written = std::fs::read_to_string(computer.cwd().join("allowed.txt")).expect("the allowed tool ran");
    assert_eq!(written.trim(), "CANARY-ALLOW-51");
    let (output, is_error) = computer.api.tool_result_text("toolu_allow").expect("the model got the result");
    assert!(output.contains("CANARY-ALLOW-51") && !is_error, "{output}");

    let mut run = node.agent(prompt("DENY-ME", "perm")).await.unwrap();
    let asked = next_prompt(&mut run).await;
    let deny = RespondParams::new(run.run_id(), request_id(&asked), Decision::Deny).message("Not from the bus, thanks");
    node.respond(deny).await.unwrap();
    run.outcome().await.unwrap();
    assert!(!computer.cwd().join("denied.txt").exists(), "a denied tool must not run");
    let (output, is_error) = computer.api.tool_result_text("toolu_deny").unwrap();
    assert!(is_error);
    assert!(output.contains("Not from the bus, thanks"), "{output}");
}

/// The permission mode claude recorded for the turn asked `prompt` (it writes its transcript lazily).
async fn permission_mode(computer: &Computer, prompt: &str) -> String {
    eventually(Duration::from_secs(10), async || computer.gateway.permission_mode_of(prompt)).await
}

#[tokio::test]
async fn questions_and_plans_are_answered_from_the_node() {
    let Some(computer) = Computer::start(
        |r| {
            let answered = |id: &str| r.tool_result(id).is_some();
            if answered("toolu_step") {
                Reply::text(&["built it"])
            } else if answered("toolu_plan2") {
                tee("toolu_step", "PLANNED-STEP-9", "planned.txt")
            } else if answered("toolu_plan1") {
                Reply::tool("toolu_plan2", "ExitPlanMode", json!({ "plan": "# Plan\n1. Tests\n2. Alpha\n" }))
            } else if answered("toolu_ask") {
                Reply::text(&["blue it is"])
            } else if r.last_user_text.contains("PLAN-ME") {
                Reply::tool("toolu_plan1", "ExitPlanMode", json!({ "plan": "# Plan\n1. Alpha\n" }))
            } else {
                color_question()
            }
        },
        |_| {},
    )
    .await
    else {
        return;
    };
    let node = computer.node().await;

    // A question: the option the person picked is exactly what the model reads.
    let mut run = node.agent(prompt("ASK-ME", "ask")).await.unwrap();
    let asked = next_prompt(&mut run).await;
    let AgentEventKind::Question { questions, .. } = &asked.kind else { panic!("{asked:?}") };
    assert_eq!(questions[0].question, COLOR_QUESTION);
    assert_eq!(questions[0].options.iter().map(|o| o.label.as_str()).collect::<Vec<_>>(), ["Red", "Blue"]);
    let wrong = RespondParams::new(run.run_id(), request_id(&asked), Decision::Allow).answer("Which size?", "Big");
    assert_eq!(remote(node.respond(wrong).await.unwrap_err()).code, ErrorCode::InvalidRequest);
    let pick = RespondParams::new(run.run_id(), request_id(&asked), Decision::Allow).answer(COLOR_QUESTION, "Blue");
    node.respond(pick).await.unwrap();
    assert_eq!(run.outcome().await.unwrap().result, "blue it is");
    // claude ran the node's turn in the default mode, as claude itself recorded it: asking, not bypassing.
    assert_eq!(permission_mode(&computer, "ASK-ME").await, "default");
    let (answer, _) = computer.api.tool_result_text("toolu_ask").unwrap();
    assert!(answer.contains(&format!("\"{COLOR_QUESTION}\"=\"Blue\"")), "{answer}");

    // A plan, in the plan mode the owner set for this node: rejected with a reason, then approved.
    let operator = computer.gateway.operator().await;
    let node_id = node.client().unwrap().hello().paired.clone().unwrap().node_id;
    let set = operator.request(method::PAIR_POLICY, json!({ "nodeId": node_id, "mode": "plan" })).await.unwrap();
    assert_eq!(set["policy"]["mode"], "plan");
    let mut run = node.agent(prompt("PLAN-ME", "plan")).await.unwrap();
    let first = next_prompt(&mut run).await;
    assert_eq!(permission_mode(&computer, "PLAN-ME").await, "plan", "the owner's policy reached claude");
    assert!(matches!(&first.kind, AgentEventKind::Plan { .. }), "{first:?}");
    let reject =
        RespondParams::new(run.run_id(), request_id(&first), Decision::Deny).message("Plan rejected: add tests first");
    node.respond(reject).await.unwrap();
    let second = next_prompt(&mut run).await;
    let AgentEventKind::Plan { plan, .. } = &second.kind else { panic!("{second:?}") };
    // claude 2.1.332 sends the plan only when the model wrote a plan file.
    assert!(plan.is_empty() || plan.contains("1. Tests"), "{plan}");
    node.respond(RespondParams::new(run.run_id(), request_id(&second), Decision::Allow)).await.unwrap();
    // Out of plan mode, the next step asks like any other, and runs once allowed.
    let step = next_prompt(&mut run).await;
    assert!(matches!(&step.kind, AgentEventKind::Permission { tool_name, .. } if tool_name == "Bash"), "{step:?}");
    node.respond(RespondParams::new(run.run_id(), request_id(&step), Decision::Allow)).await.unwrap();
    assert_eq!(run.outcome().await.unwrap().result, "built it");
    let (reason, is_error) = computer.api.tool_result_text("toolu_plan1").unwrap();
    assert!(is_error && reason.contains("Plan rejected: add tests first"), "{reason}");
    let (approved, is_error) = computer.api.tool_result_text("toolu_plan2").unwrap();
    assert!(!is_error && approved.contains("approved"), "{approved}");
    assert_eq!(std::fs::read_to_string(computer.cwd().join("planned.txt")).unwrap().trim(), "PLANNED-STEP-9");
}

#[tokio::test]
async fn unanswered_prompts_expire_and_only_the_party_may_answer() {
    let Some(computer) = Computer::start(
        |r| match (r.last_user_text.as_str(), r.has_tool_result) {
            (_, true) => Reply::text(&["done"]),
            (text, _) if text.contains("WAIT-ME") => tee("toolu_wait", "WAITED", "waited.txt"),
            _ => tee("toolu_share", "SHARED-7", "shared.txt"),
        },
        |config| config.agent.prompt_timeout = Duration::from_secs(3),
    )
    .await
    else {
        return;
    };
    let node = computer.node().await;
    let stranger = computer.node().await;
    let operator = computer.gateway.operator().await;

    // Nobody answers: denied after the (shortened) timeout, and the model is told why.
    let started = Instant::now();
    let mut run = node.agent(prompt("WAIT-ME", "wait")).await.unwrap();
    let asked = next_prompt(&mut run).await;
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let AgentEventKind::PromptClosed { resolution, .. } = run.next().await.unwrap().kind {
                return resolution;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(closed, PromptResolution::TimedOut);
    assert!(started.elapsed() >= Duration::from_secs(3));
    let late = node.respond(RespondParams::new(run.run_id(), request_id(&asked), Decision::Allow)).await.unwrap_err();
    let late = remote(late);
    assert_eq!(late.code, ErrorCode::PromptClosed);
    assert_eq!(late.details.unwrap()["resolution"], "timed_out");
    run.outcome().await.unwrap();
    let (told, is_error) = computer.api.tool_result_text("toolu_wait").unwrap();
    assert!(is_error && told.contains("Nobody answered"), "{told}");
    assert!(!computer.cwd().join("waited.txt").exists());

    // Another paired node may not answer; the owner may, from any operator connection; then the node's
    // own answer comes second and is told so.
    let mut owner_events = operator.subscribe();
    let mut stranger_events = stranger.client().unwrap().subscribe();
    let mut run = node.agent(prompt("SHARE-ME", "share")).await.unwrap();
    let asked = next_prompt(&mut run).await;
    let id = request_id(&asked);
    let forbidden = stranger.respond(RespondParams::new(run.run_id(), &id, Decision::Allow)).await.unwrap_err();
    assert_eq!(remote(forbidden).code, ErrorCode::Forbidden);
    assert_eq!(remote(stranger.cancel(run.run_id()).await.unwrap_err()).code, ErrorCode::Forbidden);
    let follow = AttachParams { run_id: Some(run.run_id().to_string()), session_key: None, after_seq: 0 };
    assert_eq!(remote(stranger.attach(follow).await.unwrap_err()).code, ErrorCode::Forbidden);
    assert!(stranger.pending().await.unwrap().prompts.is_empty());
    let inbox = operator.request(method::AGENT_PENDING, Value::Null).await.unwrap();
    assert_eq!(inbox["prompts"][0]["requestId"], id.as_str());
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let event = owner_events.recv().await.unwrap();
            if event.event == "agent" && event.payload["kind"] == "permission" {
                return event.payload;
            }
        }
    })
    .await
    .expect("the owner hears of the prompt");
    assert_eq!(seen["requestId"], id.as_str());
    let allow = json!({ "runId": run.run_id(), "requestId": id, "decision": "allow" });
    operator.request(method::AGENT_RESPOND, allow).await.unwrap();
    let second = node.respond(RespondParams::new(run.run_id(), &id, Decision::Deny)).await.unwrap_err();
    assert_eq!(remote(second).code, ErrorCode::PromptClosed);
    let run_id = run.run_id().to_string();
    run.outcome().await.unwrap();
    assert_eq!(std::fs::read_to_string(computer.cwd().join("shared.txt")).unwrap().trim(), "SHARED-7");
    // The other node heard nothing of the run: not its prompt, its closing or its text. An answer on its
    // link comes after every event sent to it before, so by now any would have arrived.
    stranger.request(method::HEALTH, Value::Null).await.unwrap();
    let heard: Vec<_> = std::iter::from_fn(|| stranger_events.try_recv().ok()).collect();
    assert!(heard.iter().all(|e| e.event != "agent" && !e.payload.to_string().contains(&run_id)), "{heard:?}");
}

/// claude's pid for the gateway session of `node`'s conversation `session`.
async fn claude_pid(computer: &Computer, node: &Node, session: &str) -> u64 {
    let node_id = node.client().unwrap().hello().paired.clone().unwrap().node_id;
    let key = format!("node:{node_id}:{session}");
    let health = computer.gateway.operator().await.request(method::HEALTH, Value::Null).await.unwrap();
    let sessions = health["agent"]["sessions"].as_array().unwrap().clone();
    let session = sessions.iter().find(|s| s["sessionKey"] == key.as_str()).expect("the session is up");
    session["pid"].as_u64().expect("claude is running")
}

#[tokio::test]
async fn an_interrupt_stops_the_turn_and_the_same_claude_answers_the_next() {
    let pieces: Vec<String> = (0..80).map(|i| format!("w{i} ")).collect();
    let Some(computer) = Computer::start(
        move |r| {
            if r.last_user_text.contains("AFTER") {
                Reply::text(&["second turn ok"])
            } else {
                Reply::Text { pieces: pieces.clone(), gap: Duration::from_millis(150) }
            }
        },
        |_| {},
    )
    .await
    else {
        return;
    };
    let node = computer.node().await;
    let mut run = node.agent(prompt("STREAM SLOWLY", "slow")).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(run.next_event().await, Some(AgentEventKind::TextDelta { .. })));
    }
    let asked = Instant::now();
    let cancelled = node.cancel(run.run_id()).await.unwrap();
    assert_eq!(cancelled.was, RunPhase::Running);
    let outcome = run.outcome().await.unwrap();
    let took = asked.elapsed();
    assert_eq!(outcome.status, RunStatus::Cancelled);
    // Uninterrupted, the rest of the answer would take another 11 s.
    assert!(took < Duration::from_secs(5), "the turn ended {took:?} after the cancel");
    let pid = claude_pid(&computer, &node, "slow").await;

    let next = node.agent(prompt("AFTER the interrupt", "slow")).await.unwrap().outcome().await.unwrap();
    assert_eq!((next.status, next.result.as_str()), (RunStatus::Ok, "second turn ok"));
    assert_eq!(claude_pid(&computer, &node, "slow").await, pid, "the same claude process answered");
    let again = node.cancel(next.run_id).await.unwrap();
    assert_eq!(again.was, RunPhase::Finished);
}

#[tokio::test]
async fn a_node_cut_off_mid_turn_catches_up_and_answers_what_was_asked_meanwhile() {
    let pieces: Vec<String> = (0..10).map(|i| format!("piece{i} ")).collect();
    let gate = Gate::closed();
    let Some(computer) = Computer::start(caught_up_model(pieces.clone(), gate.clone()), |_| {}).await else {
        return;
    };
    let cable = Cable::start(computer.bridge.address()).await;
    let node = computer.node_at(cable.addr.clone()).await;
    let mut run = node.agent(prompt("TALK THEN ACT", "away")).await.unwrap();
    let mut text = String::new();
    for _ in 0..3 {
        gate.release_one();
        let Some(AgentEventKind::TextDelta { text: piece }) = run.next_event().await else { panic!("a delta") };
        text.push_str(&piece);
    }
    let seen_before_the_cut = run.last_seq();

    // The link dies while the model goes on writing and then asks for permission.
    let mut link = node.link();
    cable.cut();
    link.wait_for(|l| matches!(l, node_kit::node::Link::Reconnecting(_))).await.unwrap();
    for _ in 3..pieces.len() {
        gate.release_one();
    }
    let operator = computer.gateway.operator().await;
    eventually(Duration::from_secs(30), async || {
        let inbox = operator.request(method::AGENT_PENDING, Value::Null).await.ok()?;
        (inbox["prompts"].as_array()?.len() == 1).then_some(())
    })
    .await;

    // Back on the network: the run reattaches after the last event it handed out, by itself.
    let mut permissions = 0;
    let mut deltas_after = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(60), run.next()).await.expect("events keep coming")
    {
        assert!(event.seq > seen_before_the_cut);
        match event.kind {
            AgentEventKind::TextDelta { text: piece } => {
                deltas_after.push(event.seq);
                text.push_str(&piece);
            }
            AgentEventKind::Permission { ref summary, .. } => {
                permissions += 1;
                assert!(summary.contains("CAUGHT-UP-3"));
                node.respond(RespondParams::new(run.run_id(), request_id(&event), Decision::Allow)).await.unwrap();
            }
            _ => {}
        }
    }
    assert_eq!(text, pieces.concat() + "finished", "every delta exactly once, in order");
    assert!(deltas_after.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(permissions, 1, "the prompt raised while away is delivered once");
    let outcome = run.outcome().await.unwrap();
    assert_eq!(outcome.result, "finished");
    assert_eq!(std::fs::read_to_string(computer.cwd().join("away.txt")).unwrap().trim(), "CAUGHT-UP-3");

    // A second device of the owner attaches to the finished run and replays it from the start.
    let replay = operator
        .attach(node_kit::protocol::AttachParams {
            run_id: Some(outcome.run_id.clone()),
            session_key: None,
            after_seq: 0,
        })
        .await
        .unwrap();
    assert!(replay.attach_info().unwrap().missed.is_none());
    let replayed = replay.outcome().await.unwrap();
    assert_eq!(replayed.result, "finished");
}

#[tokio::test]
async fn a_node_sees_its_own_sessions_and_history_and_nothing_of_another() {
    let Some(computer) = Computer::start(
        |r| Reply::text(&["answer to ", if r.last_user_text.contains("first") { "one" } else { "two" }]),
        |_| {},
    )
    .await
    else {
        return;
    };
    let node = computer.node().await;
    let other = computer.node().await;
    node.agent(prompt("the first question, about builds", "one")).await.unwrap().outcome().await.unwrap();
    node.agent(prompt("the second question", "two")).await.unwrap().outcome().await.unwrap();
    node.agent(prompt("the first one again", "one")).await.unwrap().outcome().await.unwrap();
    other.agent(prompt("a private matter", "mine")).await.unwrap().outcome().await.unwrap();

    let sessions = node.sessions().await.unwrap().sessions;
    let keys: Vec<&str> = sessions.iter().map(|s| s.session_key.as_str()).collect();
    assert_eq!(keys, ["one", "two"], "latest activity first, and only this node's");
    assert_eq!(sessions[0].title, "the first question, about builds");
    assert_eq!(sessions[0].turns, 2);
    assert!(!sessions[0].running);

    let page = node.history(HistoryParams { session_key: "one".into(), before: None, limit: Some(3) }).await.unwrap();
    assert_eq!(page.total, 4);
    let items: Vec<&HistoryItem> = page.entries.iter().map(|e| &e.item).collect();
    assert_eq!(items[0], &HistoryItem::Assistant { text: "answer to one".into() });
    assert_eq!(items[1], &HistoryItem::User { text: "the first one again".into(), attachments: 0 });
    assert_eq!(page.next_before, Some(1));
    let earlier =
        node.history(HistoryParams { session_key: "one".into(), before: page.next_before, limit: None }).await.unwrap();
    assert_eq!(
        earlier.entries[0].item,
        HistoryItem::User { text: "the first question, about builds".into(), attachments: 0 }
    );
    assert_eq!(earlier.next_before, None);

    let theirs = node.history(HistoryParams { session_key: "mine".into(), before: None, limit: None }).await;
    assert_eq!(remote(theirs.unwrap_err()).code, ErrorCode::NotFound);
    assert_eq!(other.sessions().await.unwrap().sessions.len(), 1);

    // Naming the other node's conversation by its gateway key reaches a conversation of this node's own:
    // the model sees nothing of the other's, and the other's is untouched.
    let other_id = other.client().unwrap().hello().paired.clone().unwrap().node_id;
    let their_key = format!("node:{other_id}:mine");
    let by_name = HistoryParams { session_key: their_key.clone(), before: None, limit: None };
    assert_eq!(remote(node.history(by_name).await.unwrap_err()).code, ErrorCode::NotFound);
    node.agent(prompt("the second try, at their key", &their_key)).await.unwrap().outcome().await.unwrap();
    let asked = computer.api.requests_with("at their key");
    assert!(!asked.is_empty() && asked.iter().all(|r| !r.body.to_string().contains("a private matter")));
    let their_sessions = other.sessions().await.unwrap().sessions;
    assert_eq!((their_sessions.len(), their_sessions[0].turns), (1, 1), "{their_sessions:?}");

    // Reusing the other node's idempotency key runs this node's own turn, never hands back the other's.
    let key = "the-same-idempotency-key";
    let theirs = AgentParams { idempotency_key: key.into(), ..prompt("another private matter", "mine") };
    let their_outcome = other.agent(theirs).await.unwrap().outcome().await.unwrap();
    let ours = AgentParams { idempotency_key: key.into(), ..prompt("the first, under their key", "one") };
    let our_outcome = node.agent(ours).await.unwrap().outcome().await.unwrap();
    assert_eq!(our_outcome.result, "answer to one");
    assert_ne!(our_outcome.run_id, their_outcome.run_id);
}

/// The smallest PNG: one transparent pixel.
const PIXEL_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg==";

#[tokio::test]
async fn an_image_reaches_the_model_and_an_oversize_one_stops_at_the_bridge() {
    let Some(computer) = Computer::start(|_| Reply::text(&["a pixel"]), |_| {}).await else { return };
    let node = computer.node().await;
    let image = Attachment { media_type: "image/png".into(), data: PIXEL_PNG.into() };
    let run = node.agent(prompt("what is in this picture?", "look").attach(image)).await.unwrap();
    assert_eq!(run.outcome().await.unwrap().result, "a pixel");
    // The image travels in the prompt's user message (claude 2.1.332 adds text blocks of its own after it).
    let requests = computer.api.requests();
    let images: Vec<&Value> = requests
        .iter()
        .flat_map(|r| r.body["messages"].as_array().into_iter().flatten())
        .filter(|m| m["role"] == "user")
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .filter(|b| b["type"] == "image")
        .collect();
    assert!(!images.is_empty(), "no image reached the model");
    assert_eq!(images[0]["source"], json!({ "type": "base64", "media_type": "image/png", "data": PIXEL_PNG }));

    let asked_before = gateway_requests(&computer.gateway, method::AGENT).await;
    let huge =
        Attachment { media_type: "image/png".into(), data: "A".repeat(node_kit::protocol::MAX_ATTACHMENT_BYTES + 4) };
    let refused = node.agent(prompt("and this one?", "look").attach(huge)).await.unwrap_err();
    let refused = remote(refused);
    assert_eq!(refused.code, ErrorCode::PayloadTooLarge);
    assert_eq!(gateway_requests(&computer.gateway, method::AGENT).await, asked_before, "never reached the gateway");
    node.request(method::HEALTH, Value::Null).await.expect("the link is still up");
}

/// The computer stops mid-turn (Ctrl-C of `lanyard up`, a crash) and comes back: the node's run ends with
/// an error that says so, not the gateway's "no run …" for the run the restart forgot.
#[tokio::test]
async fn a_turn_lost_to_a_restart_of_the_computer_says_so() {
    let gate = Gate::closed();
    let script_gate = gate.clone();
    let pieces = vec!["the first half ".to_string(), "the second half".to_string()];
    let script = move |_: &ApiRequest| Reply::Gated { pieces: pieces.clone(), gate: script_gate.clone() };
    let Some(computer) = Computer::start(script, |_| {}).await else {
        return;
    };
    let node = computer.node().await;
    let Computer { api: _api, gateway, bridge: _bridge } = computer;
    let mut run = node.agent(prompt("tell me a long story", "restart")).await.unwrap();
    gate.release_one();
    loop {
        match tokio::time::timeout(Duration::from_secs(60), run.next_event()).await.expect("the first half") {
            Some(AgentEventKind::TextDelta { .. }) => break,
            Some(_) => {}
            None => panic!("the run ended before its first delta"),
        }
    }

    let addr = gateway.addr;
    let home = gateway.stop_keeping_home().await;
    let _restarted = TestGateway::start_at(home, addr, |_| {}).await;
    let lost = tokio::time::timeout(Duration::from_secs(60), run.outcome()).await.expect("no hang").unwrap_err();
    assert_eq!(lost.code(), Some(ErrorCode::NotFound), "{lost}");
    assert!(lost.to_string().contains("the computer stopped during this turn"), "{lost}");
}
