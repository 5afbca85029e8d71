//! The owner's CLI in control of the agent: `lanyard agent` asks its turn's permission prompts at the
//! terminal and answers them from stdin (or lets the phone answer, or stops the turn on Ctrl-C), the real
//! claude running against the scripted Messages API; `lanyard pending` lists what waits; `lanyard nodes
//! policy` sets what a paired device's turns may do.

#[path = "../../../gateway/tests/support/mod.rs"]
mod support;

use certs::Identity;
use node_kit::protocol::{AgentEventKind, Decision, RespondParams, method};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::messages_api::{ApiRequest, MessagesApi, Reply};
use support::{TestGateway, claude_binary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `lanyard --url GATEWAY ARGS` with the gateway's home, its stdin, stdout and stderr piped.
fn command(gateway: &TestGateway, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lanyard"));
    command
        .arg("--url")
        .arg(&gateway.url)
        .args(args)
        .env("LANYARD_HOME", gateway.home.path())
        .env_remove("LANYARD_GATEWAY_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A `lanyard` command that ran to its end with nothing on stdin.
async fn lanyard(gateway: &TestGateway, args: &[&str]) -> Output {
    let child = command(gateway, args).stdin(Stdio::null()).spawn().unwrap();
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.expect("lanyard finishes").unwrap()
}

/// A `lanyard` command that must succeed; its stdout.
async fn lanyard_ok(gateway: &TestGateway, args: &[&str]) -> String {
    let out = lanyard(gateway, args).await;
    assert!(out.status.success(), "lanyard {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A running `lanyard`, its stderr watched as it comes (a prompt has no newline after it), typed to.
struct Running {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::task::JoinHandle<String>,
    stderr: Arc<Mutex<String>>,
    stderr_done: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(gateway: &TestGateway, args: &[&str]) -> Running {
        let mut child = command(gateway, args).spawn().unwrap();
        let stdin = child.stdin.take();
        let mut out = child.stdout.take().unwrap();
        let stdout = tokio::spawn(async move {
            let mut bytes = Vec::new();
            out.read_to_end(&mut bytes).await.unwrap();
            text(&bytes)
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let seen = stderr.clone();
        let stderr_done = tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buffer).await {
                seen.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Running { child, stdin, stdout, stderr, stderr_done }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr shows `phrase`.
    async fn shows(&self, phrase: &str) {
        let shown = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if self.stderr().contains(phrase) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(shown.is_ok(), "lanyard did not show {phrase:?}; stderr so far:\n{}", self.stderr());
    }

    async fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        assert!(std::process::Command::new("kill").args([name, &pid]).status().unwrap().success());
    }

    /// Waits for the exit (stdin left as it is); the status, stdout and stderr.
    async fn finish(mut self) -> (ExitStatus, String, String) {
        let status = tokio::time::timeout(Duration::from_secs(90), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("lanyard did not finish; stderr so far:\n{}", self.stderr()))
            .unwrap();
        let stdout = self.stdout.await.unwrap();
        self.stderr_done.await.unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        (status, stdout, stderr)
    }
}

/// `lanyard agent PROMPT --session SESSION` with `input` typed and stdin then closed.
async fn agent(gateway: &TestGateway, prompt: &str, session: &str, input: &str) -> (ExitStatus, String, String) {
    let mut running = Running::start(gateway, &["agent", prompt, "--session", session, "--timeout", "120"]);
    if !input.is_empty() {
        running.stdin.as_mut().unwrap().write_all(input.as_bytes()).await.unwrap();
    }
    running.close_stdin();
    running.finish().await
}

/// A Bash call that writes `canary` to `file` in claude's working directory.
fn write_canary(id: &str, canary: &str, file: &str) -> Reply {
    Reply::tool(id, "Bash", json!({ "command": format!("echo {canary} > {file}"), "description": "Write the canary" }))
}

/// The scripted model: each marker in the prompt asks for its own Bash call; once the tool's result (or
/// its denial) is back, the model says "done". A prompt saying AGAIN is answered with text, whatever an
/// interrupted turn left in the same message.
fn script(r: &ApiRequest) -> Reply {
    let asked = r.last_user_text.as_str();
    if asked.contains("AGAIN") {
        Reply::text(&["still here"])
    } else if r.has_tool_result {
        Reply::text(&["done"])
    } else if asked.contains("ALLOW-ME") {
        write_canary("toolu_allow", "CANARY-xyz", "canary.txt")
    } else if asked.contains("DENY-ME") {
        write_canary("toolu_deny", "CANARY-denied", "denied.txt")
    } else if asked.contains("REASON-ME") {
        write_canary("toolu_reason", "CANARY-reason", "reason.txt")
    } else if asked.contains("EOF-ME") {
        write_canary("toolu_eof", "CANARY-eof", "eof.txt")
    } else if asked.contains("PHONE-ME") {
        write_canary("toolu_phone", "CANARY-phone", "phone.txt")
    } else if asked.contains("STOP-ME") {
        write_canary("toolu_stop", "CANARY-stop", "stop.txt")
    } else {
        Reply::text(&["hello"])
    }
}

/// The scripted API and a gateway running the real claude against it; `None` skips (outside CI).
async fn computer() -> Option<(MessagesApi, TestGateway)> {
    let claude = claude_binary()?;
    let api = MessagesApi::start(script).await;
    let gateway = TestGateway::with_claude(claude, &api, |_| {}).await;
    Some((api, gateway))
}

fn cwd(gateway: &TestGateway) -> PathBuf {
    gateway.claude_home.as_ref().expect("a claude gateway").path().to_path_buf()
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

#[tokio::test]
async fn agent_asks_at_the_terminal_and_the_answer_decides_whether_the_tool_runs() {
    let Some((api, gateway)) = computer().await else { return };
    let dir = cwd(&gateway);

    // `y`: the tool runs, and the model gets its result.
    let (status, stdout, stderr) = agent(&gateway, "ALLOW-ME", "allow", "y\n").await;
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "done\n", "{stderr}");
    assert!(stderr.contains("[permission] Bash: Run `echo CANARY-xyz > canary.txt`"), "{stderr}");
    assert!(stderr.contains("Allow? [y/N] "), "{stderr}");
    assert_eq!(read(&dir, "canary.txt").expect("the allowed tool ran").trim(), "CANARY-xyz");
    let (output, is_error) = api.tool_result_text("toolu_allow").expect("the model got the result");
    assert!(!is_error, "{output}");

    // `n`, typed once asked: the tool does not run, and the model reads the denial.
    let mut running = Running::start(&gateway, &["agent", "DENY-ME", "--session", "deny"]);
    running.shows("Allow? [y/N] ").await;
    running.type_line("n").await;
    let (status, stdout, stderr) = running.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "done\n", "{stderr}");
    assert!(read(&dir, "denied.txt").is_none(), "a denied tool must not run");
    let (output, is_error) = api.tool_result_text("toolu_deny").expect("the model got the denial");
    assert!(is_error, "{output}");

    // `n REASON`: the model reads the reason.
    let (status, _, stderr) = agent(&gateway, "REASON-ME", "reason", "n not now, use make\n").await;
    assert!(status.success(), "{stderr}");
    assert!(read(&dir, "reason.txt").is_none());
    let (output, is_error) = api.tool_result_text("toolu_reason").unwrap();
    assert!(is_error && output.contains("not now, use make"), "{output}");

    // Nothing on stdin: denied, and said so.
    let (status, stdout, stderr) = agent(&gateway, "EOF-ME", "eof", "").await;
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "done\n", "{stderr}");
    assert!(stderr.contains("stdin is closed"), "{stderr}");
    assert!(read(&dir, "eof.txt").is_none());
    assert!(api.tool_result_text("toolu_eof").unwrap().1);
}

#[tokio::test]
async fn a_prompt_answered_elsewhere_is_dropped_and_pending_lists_it_until_then() {
    let Some((_api, gateway)) = computer().await else { return };
    assert_eq!(lanyard_ok(&gateway, &["pending"]).await, "no prompts waiting for an answer\n");

    // stdin stays open and empty: the person at the terminal never answers.
    let running = Running::start(&gateway, &["agent", "PHONE-ME", "--session", "phone"]);
    running.shows("Allow? [y/N] ").await;
    let operator = gateway.operator().await;
    let waiting = operator.pending().await.unwrap().prompts;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let prompt = &waiting[0];
    let request_id = prompt.kind.prompt_id().unwrap().to_string();
    assert!(matches!(&prompt.kind, AgentEventKind::Permission { tool_name, .. } if tool_name == "Bash"));

    let listed = lanyard_ok(&gateway, &["pending"]).await;
    assert!(listed.starts_with("RUN "), "{listed}");
    let row = listed.lines().find(|l| l.contains(&request_id)).unwrap_or_else(|| panic!("{listed}"));
    assert!(row.starts_with(&prompt.run_id), "{row}");
    assert!(row.contains("permission") && row.contains("Bash: Run `echo CANARY-phone > phone.txt`"), "{row}");
    let json: Value = serde_json::from_str(&lanyard_ok(&gateway, &["pending", "--json"]).await).unwrap();
    assert_eq!(json["prompts"][0]["requestId"], request_id.as_str());

    // The phone (any operator connection) answers first.
    operator.respond(RespondParams::new(&prompt.run_id, &request_id, Decision::Allow)).await.unwrap();
    let (status, stdout, stderr) = running.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "done\n", "{stderr}");
    assert!(stderr.contains("answered elsewhere"), "{stderr}");
    assert_eq!(read(&cwd(&gateway), "phone.txt").expect("the tool ran").trim(), "CANARY-phone");
    assert_eq!(lanyard_ok(&gateway, &["pending"]).await, "no prompts waiting for an answer\n");
}

#[tokio::test]
async fn ctrl_c_stops_the_turn_and_exits_130() {
    let Some((_api, gateway)) = computer().await else { return };
    let running = Running::start(&gateway, &["agent", "STOP-ME", "--session", "stop"]);
    running.shows("Allow? [y/N] ").await;
    running.signal("-INT");
    let (status, _, stderr) = running.finish().await;
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("(cancelled)"), "{stderr}");
    assert!(read(&cwd(&gateway), "stop.txt").is_none(), "the stopped turn's tool must not run");

    // The conversation goes on with the next turn.
    let (status, stdout, stderr) = agent(&gateway, "AGAIN after the stop", "stop", "").await;
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "still here\n", "{stderr}");
}

/// The `nodes list` row of `node_id`, split into its cells.
async fn list_row(gateway: &TestGateway, node_id: &str) -> Vec<String> {
    let listed = lanyard_ok(gateway, &["nodes", "list"]).await;
    let header: Vec<&str> =
        listed.lines().next().unwrap().split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header[..6], ["ID", "NAME", "PLATFORM", "SCOPES", "POLICY", "LAST SEEN"], "{listed}");
    let row = listed.lines().find(|l| l.starts_with(node_id)).unwrap_or_else(|| panic!("{listed}"));
    row.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()
}

async fn stored_policy(gateway: &TestGateway) -> Value {
    let list = gateway.operator().await.request(method::PAIR_LIST, Value::Null).await.unwrap();
    list["nodes"][0]["policy"].clone()
}

#[tokio::test]
async fn nodes_policy_sets_the_mode_and_tool_patterns_and_never_bypass() {
    let gateway = TestGateway::start(|_| {}).await;
    let identity = Identity::generate();
    let node_id = identity.id().to_string();
    gateway.pair_node(identity.id(), "Ada's phone").await;

    // No options: the policy as it is, the default.
    let shown = lanyard_ok(&gateway, &["nodes", "policy", &node_id]).await;
    assert!(shown.starts_with(&format!("\"Ada's phone\" ({node_id}) runs its agent turns with:\n")), "{shown}");
    assert!(shown.contains("mode:    default") && shown.contains("allowed: none"), "{shown}");
    assert_eq!(list_row(&gateway, &node_id).await[4], "default");

    // By name: acceptEdits, two patterns allowed and one denied.
    let set = lanyard_ok(
        &gateway,
        &["nodes", "policy", "Ada's phone", "--mode", "acceptEdits", "--allow", "Bash(npm test:*)", "--allow", "Edit"],
    )
    .await;
    assert!(set.contains("now runs its agent turns with"), "{set}");
    assert!(set.contains("mode:    acceptEdits") && set.contains("allowed: Bash(npm test:*), Edit"), "{set}");
    let set = lanyard_ok(&gateway, &["nodes", "policy", &node_id.to_lowercase(), "--deny", "WebFetch"]).await;
    assert!(set.contains("mode:    acceptEdits") && set.contains("denied:  WebFetch"), "{set}");
    assert_eq!(list_row(&gateway, &node_id).await[4], "acceptEdits +2/-1");
    assert_eq!(
        stored_policy(&gateway).await,
        json!({ "mode": "acceptEdits", "allowedTools": ["Bash(npm test:*)", "Edit"], "deniedTools": ["WebFetch"] })
    );
    let listed: Value = serde_json::from_str(&lanyard_ok(&gateway, &["nodes", "list", "--json"]).await).unwrap();
    assert_eq!(listed["nodes"][0]["policy"]["mode"], "acceptEdits");

    // Cleared lists, and the JSON form.
    let set = lanyard_ok(&gateway, &["nodes", "policy", &node_id, "--clear-deny", "--json"]).await;
    let set: Value = serde_json::from_str(&set).unwrap();
    assert_eq!(set["nodeId"], node_id.as_str());
    assert_eq!(set["policy"], json!({ "mode": "acceptEdits", "allowedTools": ["Bash(npm test:*)", "Edit"] }));
    lanyard_ok(&gateway, &["nodes", "policy", &node_id, "--clear-allow", "--mode", "plan"]).await;
    assert_eq!(list_row(&gateway, &node_id).await[4], "plan");

    // bypassPermissions is refused before any call, and says why; nothing changes.
    let out = lanyard(&gateway, &["nodes", "policy", &node_id, "--mode", "bypassPermissions"]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("a node can never be given bypassPermissions"), "{}", text(&out.stderr));
    assert_eq!(stored_policy(&gateway).await, json!({ "mode": "plan" }));

    // Contradictions and unknown devices are refused too.
    let out = lanyard(&gateway, &["nodes", "policy", &node_id, "--allow", "Edit", "--clear-allow"]).await;
    assert!(!out.status.success());
    let out = lanyard(&gateway, &["nodes", "policy", "Bob's phone", "--mode", "plan"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no paired device has the name \"Bob's phone\" or an ID starting with it"),
        "{}",
        text(&out.stderr)
    );
    let stranger = Identity::generate().id().to_string();
    let out = lanyard(&gateway, &["nodes", "policy", &stranger]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not paired"), "{}", text(&out.stderr));
    gateway.stop().await;
}

#[tokio::test]
async fn the_new_flags_explain_themselves_and_bad_images_are_refused_before_connecting() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lanyard"))
            .args(args)
            .env("LANYARD_HOME", home.path())
            .env_remove("LANYARD_GATEWAY_URL")
            .output()
            .unwrap()
    };
    for (args, phrase) in [
        (vec!["agent", "--help"], "--image <FILE>"),
        (vec!["agent", "--help"], "prompts are still asked on stderr"),
        (vec!["agent", "--help"], "Ctrl-C stops the turn"),
        (vec!["pending", "--help"], "prompts waiting for an answer"),
        (vec!["nodes", "policy", "--help"], "--mode <MODE>"),
        (vec!["nodes", "policy", "--help"], "--clear-allow"),
        (vec!["nodes", "policy", "--help"], "never be given bypassPermissions"),
        (vec!["gateway", "--help"], "--prompt-timeout <SECS>"),
        (vec!["up", "--help"], "--prompt-timeout <SECS>"),
    ] {
        let out = run(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains(phrase), "{args:?}: {}", text(&out.stdout));
    }

    let pdf = home.path().join("notes.pdf");
    std::fs::write(&pdf, b"%PDF-1.7\n").unwrap();
    let out = run(&["agent", "look", "--image", pdf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let error = text(&out.stderr);
    assert!(error.contains("notes.pdf is not a PNG, JPEG, GIF or WebP image"), "{error}");
    let out = run(&["agent", "look", "--image", "/nonexistent/shot.png"]);
    assert!(text(&out.stderr).contains("cannot read the image /nonexistent/shot.png"), "{}", text(&out.stderr));
    let out = run(&["gateway", "--prompt-timeout", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
