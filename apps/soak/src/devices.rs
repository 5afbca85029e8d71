//! The soak's devices: paired node-kit clients that connect on the LAN (pinned TLS from a loopback address
//! of their own) or through the relay (the same TLS session inside the relay's WebSocket), drop, come back
//! and move between the two at random, and meanwhile send presence beacons, serve their screen's snapshot,
//! and run agent turns whose prompts they answer. Each turn is checked as it ends: every event handed out
//! once, in sequence, across every reconnect (`agent.attach` after the last event seen), the text exactly
//! what the model wrote, every prompt answered once. An operator asks random devices for snapshots.
//!
//! Every loop is bounded: the load stops starting new things at `load_ends`, and a turn still running then
//! has until `hard_stop` to finish.

use crate::ledger::Book;
use crate::model::{self, TurnKind, Verdict};
use certs::{Identity, KeyId, Pin};
use futures_util::future::BoxFuture;
use node_kit::protocol::{
    AgentChannel, AgentEvent, AgentEventKind, AgentParams, AttachParams, Decision, ErrorCode, ErrorShape, EventFrame,
    ImageFormat, NodeAdvert, NodeCommandRequest, NodeInvokeParams, NodeInvokeResult, PresenceBeacon, PromptResolution,
    RespondParams, RoutingToken, RunStatus, SnapshotResult, command, event, method,
};
use node_kit::relay::{RelayError, RelayRoute};
use node_kit::{AgentRun, Client, ClientError, CommandHandler};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep, timeout};

pub use node_kit::node::Path;

/// Time for one connect (TCP or the relay's WebSocket, TLS, WebSocket, `connect`, `hello-ok`) on a
/// loaded two-core machine.
const CONNECT_WITHIN: Duration = Duration::from_secs(45);
/// Time for one call's answer.
const CALL_WITHIN: Duration = Duration::from_secs(45);
/// The longest wait for a turn's next event (a claude process starting on a busy machine is the slow part).
const EVENT_WITHIN: Duration = Duration::from_secs(150);
/// A relayed connect may be refused for an unknown token this long after the token was issued: the
/// bridge passes the new token set to its relay object in the background.
const TOKEN_SETTLES: Duration = Duration::from_secs(30);
/// Reconnects one turn may take before it counts as lost.
const MAX_REATTACHES: u32 = 40;

/// What every device shares.
pub struct World {
    pub bridge: SocketAddr,
    pub bridge_id: KeyId,
    pub load_ends: Instant,
    pub hard_stop: Instant,
    /// Agent turns that may run at once (each one a claude process at work).
    pub turn_slots: Arc<Semaphore>,
    pub next_turn: AtomicU64,
    pub connected: AtomicU64,
    pub book: Book,
}

/// A device's screen: always its own one-pixel picture.
struct Screen {
    device: usize,
    world: Arc<World>,
}

impl CommandHandler for Screen {
    fn handle(&self, request: NodeCommandRequest) -> BoxFuture<'static, Result<Value, ErrorShape>> {
        let answer = if request.command == command::SCREEN_SNAPSHOT {
            self.world.book.count("snapshots served by devices");
            let shot = SnapshotResult {
                format: ImageFormat::Png,
                width: 1,
                height: 1,
                base64: data_encoding::BASE64.encode(&model::device_png(self.device)),
            };
            Ok(serde_json::to_value(shot).expect("snapshots serialise"))
        } else {
            Err(ErrorShape::new(ErrorCode::UnknownCommand, format!("the soak's devices do not do {}", request.command)))
        };
        Box::pin(async move { answer })
    }
}

fn advert() -> NodeAdvert {
    NodeAdvert { caps: vec!["screen".into()], commands: vec![command::SCREEN_SNAPSHOT.into()] }
}

/// One connection, with a recorder that reads every event frame on it as it arrives: the connection's
/// frame sequence must have no gap, and no agent event may come twice (or, after an attach, from at or
/// before the attach's `afterSeq`).
struct Conn {
    client: Client,
    path: Path,
    /// Per run: the latest event sequence number seen on this connection (or attached after).
    floors: Arc<Mutex<HashMap<String, u64>>>,
    recorder: tokio::task::JoinHandle<()>,
}

impl Conn {
    fn new(client: Client, path: Path, world: Arc<World>, device: usize) -> Conn {
        let floors: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let mut events = client.subscribe();
        let runs = floors.clone();
        let recorder = tokio::spawn(async move {
            let mut frame_seq = 0;
            loop {
                let frame: EventFrame = match events.recv().await {
                    Ok(frame) => frame,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        world.book.fail(format!("device {device}: its event recorder fell {n} frames behind"));
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                // The first frame read sets the baseline: frames sent before the recorder subscribed are not its.
                if frame_seq != 0 && frame.seq != frame_seq + 1 {
                    world.book.fail(format!("device {device}: connection event seq {} after {frame_seq}", frame.seq));
                }
                frame_seq = frame.seq;
                if frame.event != event::AGENT {
                    continue;
                }
                let Ok(agent) = serde_json::from_value::<AgentEvent>(frame.payload) else {
                    world.book.fail(format!("device {device}: an unreadable agent event"));
                    continue;
                };
                let mut runs = runs.lock().expect("floors lock");
                let floor = runs.entry(agent.run_id.clone()).or_insert(0);
                if agent.seq <= *floor {
                    world.book.fail(format!(
                        "device {device}: run {} event {} sent again on one connection (after {})",
                        agent.run_id, agent.seq, floor
                    ));
                } else {
                    *floor = agent.seq;
                }
            }
        });
        Conn { client, path, floors, recorder }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.client.close();
        self.recorder.abort();
    }
}

pub struct Device {
    index: usize,
    identity: Arc<Identity>,
    rng: fastrand::Rng,
    route: Option<(RelayRoute, Instant)>,
    screen: Arc<dyn CommandHandler>,
    conn: Option<Conn>,
    world: Arc<World>,
}

/// The `index`-th device's own loopback address (127.2.0.1, 127.2.0.2, …): the bridge limits handshakes
/// per address, and 200 phones on a LAN have 200 addresses.
fn source(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 2, (index / 250) as u8, (index % 250) as u8 + 1))
}

/// Whether `e` says the connection went away (rather than the server refusing the call).
fn link_gone(e: &ClientError) -> bool {
    matches!(e, ClientError::Closed | ClientError::NotConnected)
}

impl Device {
    pub fn new(index: usize, identity: Arc<Identity>, seed: u64, world: Arc<World>) -> Device {
        let screen = Arc::new(Screen { device: index, world: world.clone() });
        Device { index, identity, rng: fastrand::Rng::with_seed(seed), route: None, screen, conn: None, world }
    }

    /// The device's life until the load ends.
    pub async fn live(mut self) {
        // Devices arrive over the first 20 seconds, as phones would after the computer starts.
        self.pause_between(0, 20_000).await;
        while Instant::now() < self.world.load_ends {
            if self.live_client().is_none() && !self.reconnect(Path::Lan).await {
                self.pause(Duration::from_secs(2)).await;
                continue;
            }
            match self.rng.u32(0..100) {
                0..=29 => self.pause_between(3_000, 20_000).await,
                30..=44 => self.beacon().await,
                45..=54 => {
                    // Out of reach for a while (a lift, a tunnel), then back on whichever path works.
                    self.world.book.count("drops");
                    self.disconnect();
                    self.pause_between(500, 10_000).await;
                }
                55..=64 => {
                    self.world.book.count("moves between paths");
                    let other = match self.conn.as_ref().map(|c| c.path) {
                        Some(Path::Lan) => Path::Relay,
                        _ => Path::Lan,
                    };
                    self.reconnect(other).await;
                }
                _ => {
                    let kind = match self.rng.u32(0..100) {
                        0..=19 => TurnKind::Text,
                        20..=34 => TurnKind::Voice,
                        35..=59 => TurnKind::Permission,
                        60..=84 => TurnKind::Question,
                        _ => TurnKind::Snapshot,
                    };
                    match self.world.turn_slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            self.turn(kind).await;
                            drop(slot);
                        }
                        // Every agent slot is taken: the device waits a little, as a person would.
                        Err(_) => self.pause_between(1_000, 5_000).await,
                    }
                }
            }
        }
        self.disconnect();
    }

    /// Sleeps between `min_ms` and `max_ms` milliseconds, at random, but not past the end of the load.
    async fn pause_between(&mut self, min_ms: u64, max_ms: u64) {
        let wait = Duration::from_millis(self.rng.u64(min_ms..max_ms));
        self.pause(wait).await;
    }

    /// Sleeps `wait`, but not past the end of the load.
    async fn pause(&self, wait: Duration) {
        let until = (Instant::now() + wait).min(self.world.load_ends.max(Instant::now()));
        tokio::time::sleep_until(until).await;
    }

    fn live_client(&mut self) -> Option<Client> {
        match &self.conn {
            Some(conn) if conn.client.is_closed() => {
                // Only the device ends its connections: one that ended otherwise was cut by something.
                let why = conn.client.last_error().map(|e| e.to_string()).unwrap_or_else(|| "no reason given".into());
                self.world
                    .book
                    .fail(format!("device {}: its {:?} connection ended by itself ({why})", self.index, conn.path));
                self.disconnect();
                None
            }
            Some(conn) => Some(conn.client.clone()),
            None => None,
        }
    }

    fn disconnect(&mut self) {
        if self.conn.take().is_some() {
            self.world.connected.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Connects on `want` (the relay only once the device has a routing token), trying the LAN when the
    /// relay fails. Whether it is connected.
    async fn reconnect(&mut self, want: Path) -> bool {
        self.disconnect();
        let paths: &[Path] = match (want, &self.route) {
            (Path::Relay, Some(_)) => &[Path::Relay, Path::Lan],
            _ => &[Path::Lan],
        };
        for &path in paths {
            if self.connect(path).await {
                return true;
            }
        }
        false
    }

    async fn connect(&mut self, path: Path) -> bool {
        let world = self.world.clone();
        let builder = Client::bridge(world.bridge.to_string(), &self.identity, Pin::Key(world.bridge_id))
            .expect("an Ed25519 identity makes a TLS configuration")
            .node_with(advert(), self.screen.clone())
            .platform("soak")
            .handshake_timeout(CONNECT_WITHIN);
        let builder = match (path, &self.route) {
            (Path::Relay, Some((route, _))) => builder.relay(route.clone()),
            _ => builder.local_address(source(self.index)),
        };
        let client = match timeout(CONNECT_WITHIN, builder.connect()).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                self.connect_failed(path, &e);
                return false;
            }
            Err(_) => {
                world.book.connect_failed(format!("{path:?}: no answer within {CONNECT_WITHIN:?}"));
                world.book.fail(format!("device {}: connect on {path:?} took over {CONNECT_WITHIN:?}", self.index));
                return false;
            }
        };
        if client.hello().paired.is_none() {
            world.book.fail(format!("device {}: the bridge does not know it as paired", self.index));
            return false;
        }
        world.book.count(match path {
            Path::Lan => "connects on the LAN",
            Path::Relay => "connects through the relay",
        });
        world.connected.fetch_add(1, Ordering::Relaxed);
        self.conn = Some(Conn::new(client.clone(), path, world.clone(), self.index));
        if path == Path::Lan && self.route.is_none() {
            self.fetch_token(&client).await;
        }
        true
    }

    fn connect_failed(&self, path: Path, e: &ClientError) {
        let book = &self.world.book;
        let settling = self.route.as_ref().is_some_and(|(_, issued)| issued.elapsed() < TOKEN_SETTLES);
        if path == Path::Relay && matches!(e, ClientError::Relay(RelayError::UnknownToken)) && settling {
            book.connect_failed("Relay: token not at the relay yet (expected in its first 30 s)".into());
            return;
        }
        book.connect_failed(format!("{path:?}: {e}"));
        book.fail(format!("device {}: connect on {path:?} failed: {e}", self.index));
    }

    /// At home: a routing token for the relay (`tunnel.token`), as node-kit's own node gets one.
    async fn fetch_token(&mut self, client: &Client) {
        let answer = timeout(CALL_WITHIN, client.request(method::TUNNEL_TOKEN, json!({}))).await;
        match answer.map(|a| a.map(serde_json::from_value::<RoutingToken>)) {
            Ok(Ok(Ok(RoutingToken { token, relay_url: Some(url) }))) => {
                self.world.book.count("routing tokens issued");
                let route = RelayRoute { url, bridge_id: self.world.bridge_id, token };
                self.route = Some((route, Instant::now()));
            }
            other => self.world.book.fail(format!("device {}: no routing token: {other:?}", self.index)),
        }
    }

    /// A presence beacon (`system-event`).
    async fn beacon(&mut self) {
        let Some(client) = self.live_client() else { return };
        let beacon = PresenceBeacon {
            text: Some("soak".into()),
            last_input_seconds: Some(self.rng.u64(0..600)),
            ..Default::default()
        };
        let params = serde_json::to_value(beacon).expect("beacons serialise");
        match timeout(CALL_WITHIN, client.request(method::SYSTEM_EVENT, params)).await {
            Ok(Ok(_)) => self.world.book.count("system-events answered"),
            Ok(Err(e)) => self.world.book.fail(format!("device {}: system-event failed: {e}", self.index)),
            Err(_) => {
                self.world.book.fail(format!("device {}: system-event unanswered in {CALL_WITHIN:?}", self.index))
            }
        }
    }
}

/// What a device plans to do to a turn and what it has seen of it.
struct Turn {
    number: u64,
    kind: TurnKind,
    params: AgentParams,
    run_id: Option<String>,
    /// The latest event sequence number handed out.
    last_seq: u64,
    text: String,
    /// Permission: allow or deny. Question: the label to pick.
    decision: Decision,
    label: &'static str,
    /// Drop the link after this many events (once).
    drop_after: Option<u32>,
    /// Drop the link when the first prompt arrives, before answering it (once).
    drop_before_answer: bool,
    events: u32,
    prompts_seen: HashSet<String>,
    /// Prompts whose answer the gateway accepted.
    answered: HashSet<String>,
    /// Prompts answered on a link that dropped before the answer's reply came: the answer may have landed.
    maybe_answered: HashSet<String>,
    closed: HashMap<String, PromptResolution>,
}

enum Step {
    Go,
    DropLink,
}

impl Device {
    async fn turn(&mut self, kind: TurnKind) {
        let number = self.world.next_turn.fetch_add(1, Ordering::Relaxed);
        let mut params = AgentParams::new(model::prompt(self.index, number, kind)).session("soak");
        if kind == TurnKind::Voice {
            params.channel = AgentChannel::Voice;
        }
        let rng = &mut self.rng;
        let mut turn = Turn {
            number,
            kind,
            params,
            run_id: None,
            last_seq: 0,
            text: String::new(),
            decision: if rng.u32(0..100) < 60 { Decision::Allow } else { Decision::Deny },
            label: model::OPTIONS[rng.usize(0..model::OPTIONS.len())],
            // The agent's snapshot needs the device there when it asks; other turns lose their link at random.
            drop_after: (kind != TurnKind::Snapshot && rng.bool()).then(|| rng.u32(1..14)),
            drop_before_answer: kind.has_tool() && kind != TurnKind::Snapshot && rng.u32(0..100) < 40,
            events: 0,
            prompts_seen: HashSet::new(),
            answered: HashSet::new(),
            maybe_answered: HashSet::new(),
            closed: HashMap::new(),
        };
        self.world.book.count(match kind {
            TurnKind::Voice => "voice lines sent",
            _ => "agent turns sent",
        });
        let outcome = self.follow(&mut turn).await;
        self.world.book.turn_finished(number);
        if let Err(why) = outcome.and_then(|result| check(&turn, &result)) {
            self.world.book.fail(format!("device {} turn {number} ({}): {why}", self.index, kind.name()));
        } else {
            self.world.book.with(|l| {
                *l.turns_ok.entry(kind).or_default() += 1;
                if kind.has_tool() {
                    l.tool_turns_ok.push(number);
                }
            });
        }
    }

    /// Runs the turn to its outcome across drops and path moves: the final `res` payload's result text.
    async fn follow(&mut self, turn: &mut Turn) -> Result<String, String> {
        let mut reattaches = 0;
        loop {
            if Instant::now() > self.world.hard_stop {
                return Err("did not finish before the soak's end".into());
            }
            let Some(run) = self.run(turn).await? else {
                reattaches += 1;
                if reattaches > MAX_REATTACHES {
                    return Err(format!("lost its link {MAX_REATTACHES} times"));
                }
                let path = if self.rng.bool() { Path::Lan } else { Path::Relay };
                if !self.reconnect(path).await {
                    sleep(Duration::from_secs(1)).await;
                }
                continue;
            };
            match self.read(turn, run).await? {
                Some(result) => return Ok(result),
                None => {
                    reattaches += 1;
                    self.world.book.count("turns followed onto a new link");
                }
            }
        }
    }

    /// Starts the turn (again with the same idempotency key, when the first try's answer was lost) or
    /// attaches to it after the last event seen. `None` when the link is not there.
    async fn run(&mut self, turn: &mut Turn) -> Result<Option<AgentRun>, String> {
        let Some(client) = self.live_client() else { return Ok(None) };
        if turn.run_id.is_none() {
            match timeout(CALL_WITHIN, client.agent(turn.params.clone())).await {
                Ok(Ok(run)) if run.is_duplicate() => {
                    // The first try did start the turn (its answer was lost with the link): attach to it.
                    self.world.book.count("agent calls retried with the same idempotency key");
                    turn.run_id = Some(run.run_id().to_string());
                }
                Ok(Ok(run)) => {
                    turn.run_id = Some(run.run_id().to_string());
                    return Ok(Some(run));
                }
                Ok(Err(e)) if link_gone(&e) => return Ok(None),
                Ok(Err(e)) => return Err(format!("agent refused: {e}")),
                Err(_) => return Err(format!("agent not acknowledged within {CALL_WITHIN:?}")),
            }
        }
        let run_id = turn.run_id.clone().expect("set above");
        if let Some(conn) = &self.conn {
            conn.floors.lock().expect("floors lock").insert(run_id.clone(), turn.last_seq);
        }
        match timeout(CALL_WITHIN, client.attach(AttachParams::run(&run_id, turn.last_seq))).await {
            Ok(Ok(run)) => {
                self.world.book.count("agent.attach catch-ups");
                let info =
                    run.attach_info().cloned().unwrap_or_else(|| unreachable!("an attach's ack says what it holds"));
                if let Some(missed) = info.missed {
                    return Err(format!(
                        "attach after {} missed events {}..={}",
                        turn.last_seq, missed.from, missed.to
                    ));
                }
                for prompt in &info.pending {
                    let id = prompt.kind.prompt_id().unwrap_or_default();
                    if turn.answered.contains(id) {
                        return Err(format!("prompt {id} still pending after its answer was accepted"));
                    }
                }
                Ok(Some(run))
            }
            Ok(Err(e)) if link_gone(&e) => Ok(None),
            Ok(Err(e)) => Err(format!("attach after {} refused: {e}", turn.last_seq)),
            Err(_) => Err(format!("attach not acknowledged within {CALL_WITHIN:?}")),
        }
    }

    /// Reads the run until its outcome (`Some(result text)`) or until the link drops (`None`).
    async fn read(&mut self, turn: &mut Turn, mut run: AgentRun) -> Result<Option<String>, String> {
        loop {
            let event = match timeout(EVENT_WITHIN, run.next()).await {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(_) => return Err(format!("no event for {EVENT_WITHIN:?} after event {}", turn.last_seq)),
            };
            if let Step::DropLink = self.on_event(turn, event).await? {
                self.world.book.count("links dropped mid-turn");
                self.disconnect();
            }
        }
        match run.outcome().await {
            Ok(outcome) if outcome.status == RunStatus::Ok => Ok(Some(outcome.result)),
            Ok(outcome) => Err(format!("ended {:?}: {}", outcome.status, outcome.result)),
            Err(e) if link_gone(&e) => Ok(None),
            Err(e) => Err(format!("failed: {e}")),
        }
    }

    async fn on_event(&mut self, turn: &mut Turn, event: AgentEvent) -> Result<Step, String> {
        let prompt_id = event.kind.prompt_id().map(str::to_string);
        let resent_prompt =
            prompt_id.as_ref().is_some_and(|id| turn.prompts_seen.contains(id)) && event.seq <= turn.last_seq;
        if !resent_prompt {
            if event.seq != turn.last_seq + 1 {
                return Err(format!("event {} handed out after event {}", event.seq, turn.last_seq));
            }
            turn.last_seq = event.seq;
            turn.events += 1;
        }
        match &event.kind {
            AgentEventKind::TextDelta { text } => {
                self.world.book.count("text deltas delivered");
                turn.text.push_str(text);
            }
            AgentEventKind::PromptClosed { request_id, resolution } => {
                turn.closed.insert(request_id.clone(), *resolution);
            }
            kind => {
                if let Some(id) = prompt_id {
                    if turn.prompts_seen.insert(id.clone()) {
                        self.world.book.prompt_seen(&id, turn.number, self.index);
                        self.world.book.count(match kind {
                            AgentEventKind::Question { .. } => "questions raised",
                            _ => "permission prompts raised",
                        });
                    }
                    if turn.answered.contains(&id) {
                        return Err(format!("prompt {id} handed out again after its answer was accepted"));
                    }
                    if std::mem::take(&mut turn.drop_before_answer) {
                        return Ok(Step::DropLink);
                    }
                    return self.answer(turn, &id, kind).await;
                }
            }
        }
        if turn.drop_after == Some(turn.events) {
            turn.drop_after = None;
            return Ok(Step::DropLink);
        }
        Ok(Step::Go)
    }

    async fn answer(&mut self, turn: &mut Turn, request_id: &str, kind: &AgentEventKind) -> Result<Step, String> {
        let Some(client) = self.live_client() else { return Ok(Step::Go) };
        let run_id = turn.run_id.clone().expect("a run that raised a prompt has an id");
        let params = match kind {
            AgentEventKind::Question { questions, .. } => {
                let question = questions.first().ok_or("a question prompt with no question")?;
                RespondParams::new(run_id, request_id, Decision::Allow).answer(&question.question, turn.label)
            }
            _ if turn.decision == Decision::Deny => {
                RespondParams::new(run_id, request_id, Decision::Deny).message("the soak says no")
            }
            _ => RespondParams::new(run_id, request_id, Decision::Allow),
        };
        match timeout(CALL_WITHIN, client.respond(params)).await {
            Ok(Ok(result)) => {
                turn.answered.insert(request_id.to_string());
                self.world.book.prompt_answered(request_id);
                let want = match (kind, turn.decision) {
                    (AgentEventKind::Permission { .. }, Decision::Deny) => PromptResolution::Denied,
                    _ => PromptResolution::Allowed,
                };
                if result.resolution != want {
                    return Err(format!("prompt {request_id} answered {want:?} resolved {:?}", result.resolution));
                }
                Ok(Step::Go)
            }
            Ok(Err(ClientError::Remote(e)))
                if e.code == ErrorCode::PromptClosed && turn.maybe_answered.contains(request_id) =>
            {
                // An answer sent on a link that dropped did land.
                self.world.book.count("answers found already landed after a drop");
                turn.answered.insert(request_id.to_string());
                self.world.book.prompt_answered(request_id);
                Ok(Step::Go)
            }
            Ok(Err(e)) if link_gone(&e) => {
                turn.maybe_answered.insert(request_id.to_string());
                Ok(Step::Go)
            }
            Ok(Err(e)) => Err(format!("answer to {request_id} refused: {e}")),
            Err(_) => Err(format!("answer to {request_id} unacknowledged within {CALL_WITHIN:?}")),
        }
    }
}

/// The turn's whole text, its final result and its prompts' ends, against what the model wrote and what the
/// device answered.
fn check(turn: &Turn, result: &str) -> Result<(), String> {
    let verdict = match turn.kind {
        TurnKind::Text | TurnKind::Voice => None,
        TurnKind::Permission if turn.decision == Decision::Deny => Some(Verdict::Refused),
        TurnKind::Permission => Some(Verdict::Ran),
        TurnKind::Question => Some(Verdict::Answered(turn.label.into())),
        TurnKind::Snapshot => Some(Verdict::ImageMatches),
    };
    let want = model::expected_text(turn.number, verdict.as_ref());
    if turn.text != want {
        return Err(format!("text deltas {:?}, expected {:?}", turn.text, want));
    }
    // The result is the model's last message: the end of the text.
    if result.is_empty() || !want.ends_with(result) {
        return Err(format!("result {result:?} is not the end of {want:?}"));
    }
    let asks = matches!(turn.kind, TurnKind::Permission | TurnKind::Question);
    if asks && turn.prompts_seen.len() != 1 {
        return Err(format!("{} prompts raised, expected 1", turn.prompts_seen.len()));
    }
    let resolution = match turn.kind {
        TurnKind::Permission if turn.decision == Decision::Deny => PromptResolution::Denied,
        _ => PromptResolution::Allowed,
    };
    for id in &turn.prompts_seen {
        if !turn.answered.contains(id) {
            return Err(format!("prompt {id} never answered (closed {:?})", turn.closed.get(id)));
        }
        if turn.closed.get(id) != Some(&resolution) {
            return Err(format!("prompt {id} closed {:?}, answered {resolution:?}", turn.closed.get(id)));
        }
    }
    Ok(())
}

/// The owner asks random devices for their screen (`node.invoke screen.snapshot`) until the load ends:
/// every picture must be the device's own; a device away at that moment is an expected answer.
pub async fn operator(world: Arc<World>, gateway_url: String, token: String, node_ids: Vec<String>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut operator: Option<Client> = None;
    while Instant::now() < world.load_ends {
        sleep(Duration::from_millis(rng.u64(1_000..4_000))).await;
        let client = match operator.as_ref().filter(|c| !c.is_closed()) {
            Some(client) => client.clone(),
            None => match timeout(CALL_WITHIN, Client::builder(&gateway_url).token(&token).connect()).await {
                Ok(Ok(client)) => operator.insert(client).clone(),
                other => {
                    world.book.fail(format!("the operator could not connect: {other:?}"));
                    continue;
                }
            },
        };
        let device = rng.usize(0..node_ids.len());
        let params = NodeInvokeParams {
            node_id: node_ids[device].clone(),
            command: command::SCREEN_SNAPSHOT.into(),
            params: json!({}),
            idempotency_key: node_kit::client::random_id(),
            timeout_ms: Some(30_000),
        };
        let params = serde_json::to_value(params).expect("invoke params serialise");
        match timeout(CALL_WITHIN, client.request(method::NODE_INVOKE, params)).await {
            Ok(Ok(answer)) => {
                let shot = serde_json::from_value::<NodeInvokeResult>(answer)
                    .ok()
                    .and_then(|r| serde_json::from_value::<SnapshotResult>(r.payload).ok());
                let want = data_encoding::BASE64.encode(&model::device_png(device));
                match shot {
                    Some(shot) if shot.base64 == want => {
                        world.book.count("operator snapshots, the device's own picture")
                    }
                    other => world.book.fail(format!("operator snapshot of device {device}: {other:?}")),
                }
            }
            Ok(Err(ClientError::Remote(e))) if e.code == ErrorCode::NodeNotConnected => {
                world.book.count("operator snapshots of a device away (NODE_NOT_CONNECTED)")
            }
            Ok(Err(e)) => world.book.fail(format!("operator snapshot of device {device}: {e}")),
            Err(_) => world.book.fail(format!("operator snapshot of device {device}: no answer in {CALL_WITHIN:?}")),
        }
    }
}
