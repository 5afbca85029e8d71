//! The agent's prompts on a `lanyard-node` terminal, with real parts: the real `claude` (against the
//! scripted Messages API) asks the gateway before it runs a command; the prompt crosses the bridge to the
//! node binary, which prints it with its request id; the answer typed on the node's stdin decides whether
//! the command runs.

mod node_support;

use node_support::support::gw::eventually;
use node_support::support::gw::messages_api::{ApiRequest, Reply};
use node_support::*;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// The scripted model: every transcript asks for Bash (the first writes the canary, a later one `again`
/// another file); after the tool's result it says `done`.
fn script(request: &ApiRequest) -> Reply {
    if request.has_tool_result {
        return Reply::text(&["done"]);
    }
    let (id, file) = if request.last_user_text.contains("again") {
        ("toolu_perm_2", "node-denied.txt")
    } else {
        ("toolu_perm_1", "node-canary.txt")
    };
    Reply::ToolUse {
        id: id.into(),
        name: "Bash".into(),
        input: json!({ "command": format!("echo NODE-CANARY-7 > {file}"), "description": "Write the canary" }),
    }
}

/// The request id in a `[permission ID] …` line.
fn request_id(line: &str) -> String {
    let after = line.split_once("[permission ").unwrap_or_else(|| panic!("not a permission line: {line}")).1;
    after.split_once(']').unwrap().0.to_string()
}

/// A transcript's turn asks for Bash: `/allow` typed on the node runs it (the file is written in claude's
/// working directory); on a second transcript `/deny` keeps it from running and the model reads the
/// reason as an error. An unknown id and a late answer are refused in one line and the node keeps going.
#[tokio::test]
async fn permission_prompts_are_answered_from_the_node_terminal() {
    let Some(computer) = Computer::start(script, |_| {}).await else { return };
    let mut node = NodeProcess::pair_and_run(&computer, "Pocket", &[], &["--no-screen"]).await;
    computer.node_named("Pocket").await;
    let cwd = computer.gateway.claude_home.as_ref().expect("a claude gateway").path().to_path_buf();

    node.type_line("write the canary").await;
    let asked = node.stdout.find("[permission", WAIT).await;
    assert!(asked.contains("Bash: Run `echo NODE-CANARY-7 > node-canary.txt` (Write the canary)"), "{asked}");
    assert!(asked.contains("/allow") && asked.contains("/deny"), "{asked}");
    let first = request_id(&asked);
    node.type_line("/allow").await;
    node.stdout.find(&format!("[prompt closed {first}: allowed]"), WAIT).await;
    node.stdout.find("done", WAIT).await;
    let written = std::fs::read_to_string(cwd.join("node-canary.txt")).expect("the allowed command ran");
    assert_eq!(written.trim(), "NODE-CANARY-7");
    let (output, is_error) = computer.api.tool_result_text("toolu_perm_1").expect("the model got the result");
    assert!(!is_error, "{output}");

    node.type_line("write it again").await;
    let asked =
        eventually(WAIT, async || node.stdout.all().into_iter().filter(|l| l.contains("[permission")).nth(1)).await;
    let second = request_id(&asked);
    assert_ne!(first, second);
    // An id that fits no open prompt is refused; it is not taken as the open prompt's reason.
    node.type_line("/deny 1234abcd not this one").await;
    let refused = node.stdout.find("[answer refused", WAIT).await;
    assert!(refused.contains("no open prompt 1234abcd"), "{refused}");
    node.type_line("/deny not from the bus").await;
    node.stdout.find(&format!("[prompt closed {second}: denied]"), WAIT).await;
    let (output, is_error) = eventually(WAIT, async || computer.api.tool_result_text("toolu_perm_2")).await;
    assert!(is_error, "a denied tool is an error for the model: {output}");
    assert!(output.contains("not from the bus"), "{output}");
    assert!(!cwd.join("node-denied.txt").exists(), "a denied command must not run");

    // A second answer to a closed prompt: the computer's refusal, in one line; the node goes on.
    node.type_line(&format!("/allow {second}")).await;
    let refused = node.stdout.find("PROMPT_CLOSED", WAIT).await;
    assert!(refused.starts_with("[answer refused"), "{refused}");
    node.type_line("/pending").await;
    node.stdout.find("[pending: none]", WAIT).await;
    // Each turn's reply still streams to a line of its own.
    eventually(WAIT, async || (node.stdout.all().iter().filter(|l| *l == "done").count() == 2).then_some(())).await;
    assert!(node.stop().await.success());
    computer.stop().await;
}
