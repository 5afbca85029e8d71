//! `lanyard up`'s pairing prompt: each request as it arrives, one at a time, answered at the terminal.
//!
//! The prompt is an operator client of the gateway like `lanyard nodes`, so a request answered elsewhere
//! (another terminal, the admin page) shows up here as a `pair.resolved` event and is skipped.

use crate::commands::nodes::{Verdict, decide, describe_request};
use crate::commands::{connect, stdin_lines};
use node_kit::Client;
use node_kit::protocol::{EventFrame, PairOutcome, PairResolution, PendingPairing, event, now_ms};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::Path;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const FALLBACK: &str = "approve pairing requests with `lanyard nodes pending|approve|reject`";

/// The last line of a request shown, left open for the answer.
const QUESTION: &str = "Approve? Compare the code with the device. [y/N] ";

/// Asks about pairing requests on stdin/stdout until `stop`, stdin closes, or the gateway goes away.
/// Never fails `lanyard up`: without the prompt the servers still run and `lanyard nodes` still works.
pub(super) async fn approve_from_terminal(url: &str, home: &Path, stop: &CancellationToken) {
    let prompted = async {
        let client = connect(url, home).await?;
        let answers = stdin_lines()?;
        Prompter::new(client, io::stdout()).run(answers).await?;
        anyhow::Ok(())
    };
    tokio::select! {
        () = stop.cancelled() => {}
        done = prompted => if let Err(e) = done {
            println!("Cannot ask about pairing requests here ({e:#}); {FALLBACK}.");
        },
    }
    // Nothing is asked any more: the logs of the shutdown are plain lines.
    super::screen::asking(None);
}

struct Prompter<W> {
    client: Client,
    out: W,
    /// Requests not shown yet, oldest first.
    queue: VecDeque<PendingPairing>,
    /// The request the owner is being asked about.
    asking: Option<PendingPairing>,
}

impl<W: Write> Prompter<W> {
    fn new(client: Client, out: W) -> Self {
        Prompter { client, out, queue: VecDeque::new(), asking: None }
    }

    async fn run(&mut self, mut answers: mpsc::Receiver<String>) -> io::Result<()> {
        let mut events = self.client.subscribe();
        let client = self.client.clone();
        loop {
            self.ask_next()?;
            super::screen::asking(self.asking.is_some().then_some(QUESTION));
            tokio::select! {
                received = events.recv() => match received {
                    Ok(frame) => self.on_event(frame)?,
                    Err(RecvError::Lagged(missed)) => {
                        writeln!(self.out, "(missed {missed} events from the gateway; `lanyard nodes pending` lists every waiting request)")?;
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
                answer = answers.recv() => match answer {
                    Some(answer) => self.on_answer(&answer).await?,
                    None => {
                        writeln!(self.out, "stdin closed; {FALLBACK}.")?;
                        return Ok(());
                    }
                },
                () = client.closed() => return Ok(()),
            }
        }
    }

    /// Shows the next request that is still waiting, unless one is being asked about.
    fn ask_next(&mut self) -> io::Result<()> {
        while self.asking.is_none() {
            let Some(request) = self.queue.pop_front() else { break };
            if request.expires_at_ms <= now_ms() {
                writeln!(
                    self.out,
                    "The request from {} expired before you were asked; skipping it.",
                    request.request.device.name
                )?;
                continue;
            }
            self.show(&request, "Pairing request")?;
            self.asking = Some(request);
        }
        Ok(())
    }

    fn show(&mut self, request: &PendingPairing, title: &str) -> io::Result<()> {
        write!(self.out, "\n{title}: {}\n{QUESTION}", describe_request(request, now_ms()))?;
        self.out.flush()
    }

    fn on_event(&mut self, frame: EventFrame) -> io::Result<()> {
        // Payloads this build cannot read (a newer gateway) are left to `lanyard nodes pending`.
        match frame.event.as_str() {
            event::PAIR_REQUESTED => match serde_json::from_value(frame.payload) {
                Ok(request) => self.on_request(request),
                Err(_) => Ok(()),
            },
            event::PAIR_RESOLVED => match serde_json::from_value(frame.payload) {
                Ok(resolution) => self.on_resolved(resolution),
                Err(_) => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn on_request(&mut self, request: PendingPairing) -> io::Result<()> {
        // A retry from the same key keeps its request ID but brings a new code: the old one is now wrong.
        if let Some(asking) = &self.asking
            && asking.request_id == request.request_id
        {
            if asking.request.sas != request.request.sas {
                self.show(&request, "The device asked again, with a new code")?;
            }
            self.asking = Some(request);
        } else if let Some(queued) = self.queue.iter_mut().find(|q| q.request_id == request.request_id) {
            *queued = request;
        } else {
            self.queue.push_back(request);
        }
        Ok(())
    }

    fn on_resolved(&mut self, resolution: PairResolution) -> io::Result<()> {
        let what = match resolution.outcome {
            PairOutcome::Approved => "was approved elsewhere",
            PairOutcome::Rejected => "was rejected elsewhere",
            PairOutcome::Expired => "expired",
        };
        if let Some(asking) = self.asking.take_if(|a| a.request_id == resolution.request_id) {
            writeln!(self.out, "\nThe request from {} {what}; skipping it.", asking.request.device.name)?;
        } else if let Some(at) = self.queue.iter().position(|q| q.request_id == resolution.request_id)
            && let Some(queued) = self.queue.remove(at)
        {
            writeln!(self.out, "\nThe request from {} {what} before you were asked.", queued.request.device.name)?;
        }
        // Anything else is a request this prompt answered itself.
        Ok(())
    }

    async fn on_answer(&mut self, answer: &str) -> io::Result<()> {
        // Lines typed while nothing is asked are not answers to a request that shows up later.
        let Some(request) = self.asking.take() else { return Ok(()) };
        let verdict = match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Verdict::Approve(None),
            _ => Verdict::Reject,
        };
        match decide(&self.client, &request.request_id, verdict).await {
            Ok(outcome) => writeln!(self.out, "{outcome}"),
            Err(e) => writeln!(self.out, "Cannot answer the request from {}: {e:#}", request.request.device.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::gateway::home::{GatewayToken, bridge_token_path};
    use ::gateway::{Gateway, GatewayConfig};
    use certs::KeyId;
    use node_kit::protocol::{
        ClientMode, DeviceInfo, PairDecisionParams, PairSubmitParams, PairTicket, PairedNodeList, Scope, method,
    };
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// What the prompt printed, shared with the test that reads it.
    #[derive(Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push_str(&String::from_utf8_lossy(buf));
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Screen {
        async fn shows(&self, text: &str) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !self.0.lock().unwrap().contains(text) {
                assert!(Instant::now() < deadline, "never showed {text:?}; screen:\n{}", self.0.lock().unwrap());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// A pairing request as the bridge submits it, from its own address so the per-address cap stays out
    /// of the way.
    async fn submit(bridge: &Client, name: &str, sas: &str, address: &str) -> String {
        let params = PairSubmitParams {
            node_id: KeyId::of_spki(name.as_bytes()),
            device: DeviceInfo { name: name.into(), platform: "ios".into(), model: Some("iPhone15,2".into()) },
            scopes: vec![Scope::Chat, Scope::Voice],
            address: address.into(),
            sas: sas.into(),
        };
        let ticket = bridge.request(method::PAIR_SUBMIT, serde_json::to_value(params).unwrap()).await.unwrap();
        serde_json::from_value::<PairTicket>(ticket).unwrap().request_id
    }

    #[tokio::test]
    async fn asks_one_request_at_a_time_and_skips_those_answered_elsewhere() {
        let home = tempfile::tempdir().unwrap();
        let mut config = GatewayConfig::new(home.path().to_path_buf());
        config.bind = vec!["127.0.0.1:0".parse().unwrap()];
        let gateway = Gateway::bind(config).await.unwrap();
        let url = gateway.url();
        let stop = CancellationToken::new();
        let server = tokio::spawn(gateway.run(stop.clone().cancelled_owned()));

        let bridge_token = GatewayToken::load(&bridge_token_path(home.path())).unwrap();
        let bridge = Client::builder(&url)
            .token(bridge_token.expose())
            .mode(ClientMode::Bridge)
            .instance_id("bridge")
            .connect()
            .await
            .unwrap();
        let owner = connect(&url, home.path()).await.unwrap();
        let screen = Screen::default();
        let (answer, answers) = mpsc::channel(4);
        let mut prompter = Prompter::new(connect(&url, home.path()).await.unwrap(), screen.clone());
        let prompting = tokio::spawn(async move { prompter.run(answers).await });
        let decide_elsewhere = |method: &'static str, request_id: String| {
            let params = PairDecisionParams { request_id, scopes: None };
            owner.request(method, serde_json::to_value(params).unwrap())
        };

        // Typed before anything is asked: not an answer to what comes later.
        answer.send("y".into()).await.unwrap();
        while answer.capacity() < answer.max_capacity() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ada = submit(&bridge, "Ada's phone", "111111", "10.0.0.1:5000").await;
        screen.shows("Ada's phone (ios, iPhone15,2) at 10.0.0.1:5000").await;
        screen.shows("code:     111111").await;
        screen.shows(&format!("request:  {ada}")).await;
        screen.shows("[y/N] ").await;

        // Two more arrive while the first is asked about; one of them is answered elsewhere meanwhile.
        let bob = submit(&bridge, "Bob's tablet", "222222", "10.0.0.2:5000").await;
        let cy = submit(&bridge, "Cy's pi", "333333", "10.0.0.3:5000").await;
        decide_elsewhere(method::PAIR_REJECT, cy).await.unwrap();
        screen.shows("The request from Cy's pi was rejected elsewhere before you were asked.").await;
        // Ada's device retries: same request, new code, shown again.
        assert_eq!(submit(&bridge, "Ada's phone", "444444", "10.0.0.1:5001").await, ada);
        screen.shows("The device asked again, with a new code").await;
        screen.shows("code:     444444").await;

        answer.send("Y".into()).await.unwrap();
        screen.shows("approved: \"Ada's phone\" is paired as").await;
        screen.shows("with scopes chat,voice").await;
        screen.shows(&format!("request:  {bob}")).await;

        // The owner approves Bob elsewhere while the prompt waits: reported, then skipped.
        decide_elsewhere(method::PAIR_APPROVE, bob).await.unwrap();
        screen.shows("The request from Bob's tablet was approved elsewhere; skipping it.").await;

        // Anything but yes rejects.
        submit(&bridge, "Dee's watch", "555555", "10.0.0.4:5000").await;
        screen.shows("Dee's watch (ios").await;
        answer.send("".into()).await.unwrap();
        screen.shows("rejected: device").await;

        let paired = owner.request(method::PAIR_LIST, serde_json::Value::Null).await.unwrap();
        let mut names: Vec<_> = serde_json::from_value::<PairedNodeList>(paired)
            .unwrap()
            .nodes
            .into_iter()
            .map(|n| n.device.name)
            .collect();
        names.sort();
        assert_eq!(names, ["Ada's phone", "Bob's tablet"]);

        drop(answer);
        tokio::time::timeout(Duration::from_secs(5), prompting).await.unwrap().unwrap().unwrap();
        screen.shows("stdin closed; approve pairing requests with `lanyard nodes").await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    }
}
