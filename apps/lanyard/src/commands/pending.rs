//! `lanyard pending`: the agent's prompts waiting for an answer, from every run.

use super::nodes::table;
use clap::Args;
use node_kit::protocol::{AgentEvent, AgentEventKind, ellipsize};
use std::path::Path;

/// List the agent's prompts waiting for an answer: tools asking permission, questions and plans, of
/// every run (yours and your devices')
///
/// One line each: the run, the prompt's request ID, its kind, and what it asks. `lanyard agent` asks the
/// prompts of its own turn at the terminal; your phone shows them too.
#[derive(Args)]
pub struct PendingArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

pub async fn run(args: PendingArgs, url: &str, home: &Path) -> anyhow::Result<()> {
    let client = super::connect(url, home).await?;
    let pending = client.pending().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&pending)?);
        return Ok(());
    }
    if pending.prompts.is_empty() {
        println!("no prompts waiting for an answer");
        return Ok(());
    }
    let rows: Vec<[String; 4]> = pending.prompts.iter().filter_map(row).collect();
    println!("{}", table(["RUN", "REQUEST", "KIND", "ASKS"], &rows));
    Ok(())
}

/// A waiting prompt as one row; `None` for an event that is not a prompt.
fn row(prompt: &AgentEvent) -> Option<[String; 4]> {
    let (kind, asks) = match &prompt.kind {
        AgentEventKind::Permission { tool_name, summary, .. } => ("permission", format!("{tool_name}: {summary}")),
        AgentEventKind::Question { questions, .. } => {
            let first = questions.first().map(|q| q.question.as_str()).unwrap_or_default();
            match questions.len() {
                0 | 1 => ("question", first.to_string()),
                n => ("question", format!("{first} (and {} more)", n - 1)),
            }
        }
        AgentEventKind::Plan { plan, .. } => {
            let first = plan.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(no plan text)");
            ("plan", first.to_string())
        }
        _ => return None,
    };
    let request_id = prompt.kind.prompt_id().unwrap_or_default().to_string();
    Some([prompt.run_id.clone(), request_id, kind.to_string(), first_line(&asks, 100)])
}

/// The first line of `text`, cut to `max` characters.
fn first_line(text: &str, max: usize) -> String {
    ellipsize(text.lines().next().unwrap_or_default(), max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_prompt_is_one_line_saying_what_it_asks() {
        let event = |kind| AgentEvent { run_id: "r1".into(), session_key: "main".into(), seq: 3, kind };
        let plan = event(AgentEventKind::Plan {
            request_id: "p1".into(),
            plan: "\n# Plan\n1. Tests\n".into(),
            expires_at_ms: 0,
        });
        assert_eq!(row(&plan).unwrap(), ["r1", "p1", "plan", "# Plan"].map(String::from));
        let permission = event(AgentEventKind::Permission {
            request_id: "p2".into(),
            tool_name: "Bash".into(),
            summary: "Run `make`\nand more".into(),
            input: json!({}),
            tool_use_id: None,
            expires_at_ms: 0,
        });
        assert_eq!(row(&permission).unwrap()[3], "Bash: Run `make`");
        let closed = event(AgentEventKind::TextDelta { text: "hi".into() });
        assert!(row(&closed).is_none());
        assert_eq!(first_line(&"x".repeat(120), 100).chars().count(), 101);
    }
}
