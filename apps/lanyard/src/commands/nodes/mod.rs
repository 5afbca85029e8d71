//! `lanyard nodes …`: the paired devices, and the pairing requests waiting for the owner.

mod display;
mod paired;
mod requests;

pub(crate) use display::{describe_request, scopes, table, time_left};
pub(crate) use paired::find;
pub(crate) use requests::{Verdict, decide};

use clap::Subcommand;
use node_kit::ClientError;
use node_kit::protocol::{ErrorCode, PermissionMode, Scope};
use std::path::Path;

/// See and manage the devices ("nodes") paired with this computer, and answer their pairing requests
#[derive(Subcommand)]
pub enum NodesCommand {
    /// List the paired devices: which are connected now, their scopes and agent policy, and when each was
    /// last seen
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show the pairing requests waiting for your decision, with the code each device shows on its screen
    Pending {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Approve a pairing request, after checking the device shows the same code
    ///
    /// Compare the code the device shows with the one `lanyard nodes pending` shows: a different code
    /// means someone is in the middle, so reject it.
    Approve {
        /// The request's ID, from `lanyard nodes pending`
        request_id: String,

        /// Grant only these of the scopes the device asked for, comma-separated (chat, voice) [default:
        /// all it asked for]
        #[arg(long, value_delimiter = ',', value_parser = parse_scope, value_name = "SCOPES")]
        scopes: Option<Vec<Scope>>,
    },
    /// Reject a pairing request: the device is told no and nothing about it is kept
    Reject {
        /// The request's ID, from `lanyard nodes pending`
        request_id: String,
    },
    /// Give a paired device another name
    Rename {
        /// The device's ID (or its first characters, or its name), from `lanyard nodes list`
        node: String,

        /// The new name
        name: String,
    },
    /// Unpair a device: forget its key and close its live connections at once
    ///
    /// The device has to pair again, with your approval, to come back.
    Revoke {
        /// The device's ID (or its first characters, or its name), from `lanyard nodes list`
        node: String,
    },
    /// Show or set what a paired device's agent turns may do: its permission mode, and the tools that
    /// run or are refused without asking
    ///
    /// With no options, shows the device's policy. `--allow` and `--deny` replace their list with the
    /// patterns given (repeat them for several), in claude's permission rule syntax: `Edit`,
    /// `Bash(npm test:*)`, `WebFetch(domain:example.com)`. What is left out stays as it was. A device can
    /// never be given bypassPermissions: its turns always ask, or follow your rules. Its next turn runs
    /// under the new policy.
    Policy {
        /// The device's ID (or its first characters, or its name), from `lanyard nodes list`
        node: String,

        /// default (every tool that needs permission asks), acceptEdits (file edits run unasked) or plan
        /// (the agent plans first and asks to go ahead)
        #[arg(long, value_parser = parse_mode, value_name = "MODE")]
        mode: Option<PermissionMode>,

        /// A tool pattern that runs without asking; replaces the allowed list
        #[arg(long = "allow", value_name = "PATTERN", conflicts_with = "clear_allow")]
        allow: Vec<String>,

        /// A tool pattern refused without asking; replaces the denied list
        #[arg(long = "deny", value_name = "PATTERN", conflicts_with = "clear_deny")]
        deny: Vec<String>,

        /// Empty the allowed list
        #[arg(long)]
        clear_allow: bool,

        /// Empty the denied list
        #[arg(long)]
        clear_deny: bool,

        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: NodesCommand, url: &str, home: &Path) -> anyhow::Result<()> {
    let client = super::connect(url, home).await?;
    match command {
        NodesCommand::List { json } => paired::list(&client, json).await,
        NodesCommand::Pending { json } => requests::pending(&client, json).await,
        NodesCommand::Approve { request_id, scopes } => {
            println!("{}", decide(&client, &request_id, Verdict::Approve(scopes)).await?);
            Ok(())
        }
        NodesCommand::Reject { request_id } => {
            println!("{}", decide(&client, &request_id, Verdict::Reject).await?);
            Ok(())
        }
        NodesCommand::Rename { node, name } => paired::rename(&client, &node, name).await,
        NodesCommand::Revoke { node } => paired::revoke(&client, &node).await,
        NodesCommand::Policy { node, mode, allow, deny, clear_allow, clear_deny, json } => {
            // A list is replaced when given, emptied when cleared, and kept otherwise.
            let list = |patterns: Vec<String>, clear: bool| match (clear, patterns.is_empty()) {
                (true, _) => Some(Vec::new()),
                (false, true) => None,
                (false, false) => Some(patterns),
            };
            let change = paired::PolicyChange {
                mode,
                allowed_tools: list(allow, clear_allow),
                denied_tools: list(deny, clear_deny),
            };
            paired::policy(&client, &node, change, json).await
        }
    }
}

/// A permission mode by the name claude takes; `bypassPermissions` is refused with the reason.
fn parse_mode(text: &str) -> Result<PermissionMode, String> {
    text.parse()
}

/// A scope by its wire name, so the CLI accepts exactly what the protocol does.
pub(crate) fn parse_scope(text: &str) -> Result<Scope, String> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_ascii_lowercase())).map_err(|_| {
        let all: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown scope {text:?}; the scopes are {}", all.join(" and "))
    })
}

/// A refusal from the gateway, explained with what to do next when the code says what went wrong.
fn explain(error: ClientError) -> anyhow::Error {
    let ClientError::Remote(shape) = &error else {
        return anyhow::anyhow!(error);
    };
    let hint = match shape.code {
        ErrorCode::PairingExpired => {
            "requests wait 5 minutes and are answered once; `lanyard nodes pending` lists the ones waiting now"
        }
        ErrorCode::NotPaired => "`lanyard nodes list` shows the paired devices and their IDs",
        _ => return anyhow::anyhow!(error),
    };
    anyhow::anyhow!("{}: {hint}", shape.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_modes_are_checked_before_any_call() {
        assert_eq!(parse_scope(" Voice"), Ok(Scope::Voice));
        assert!(parse_scope("admin").unwrap_err().contains("chat and voice"));
        assert_eq!(parse_mode("acceptEdits"), Ok(PermissionMode::AcceptEdits));
        assert!(parse_mode("bypassPermissions").unwrap_err().contains("never"));
    }
}
