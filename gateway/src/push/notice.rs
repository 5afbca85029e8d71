//! What a push says: `{"v":1,"kind","runId","requestId"?,"sessionKey","tool"?}`, padded to one length.
//! Nothing of a prompt's input, a question, a plan or a reply: whoever reads it learns that a prompt is
//! waiting, and which; the app fetches the rest over the sealed channel.

use crate::agent::prompts::{Prompt, PromptKind};
use crate::agent::runs::Party;
use certs::KeyId;
use node_kit::protocol::{MAX_ID_LEN, PushKind, PushNotice};

/// Bytes of every push's record before encryption: the notice, RFC 8188's delimiter and zero padding.
/// The longest notice (a 32-byte run ID, a 128-byte request ID and session key with every character
/// escaped, a 64-character tool name at 6 bytes a character) fits with room to spare.
pub(crate) const PADDED_LEN: usize = 1024;

/// The notice for a run of `party` (none for the owner's own runs, which no device subscribed to), and
/// the device it goes to. `prompt` is the prompt raised; `None` when the run ended.
pub(crate) fn notice(
    party: &Party,
    run_id: &str,
    session_key: &str,
    prompt: Option<&Prompt>,
) -> Option<(KeyId, PushNotice)> {
    let Party::Node(node) = party else { return None };
    let node_id: KeyId = node.parse().ok()?;
    let own_key = session_key.strip_prefix(&format!("node:{node}:")).unwrap_or(session_key);
    let (kind, tool) = match prompt.map(|p| &p.kind) {
        None => (PushKind::Done, None),
        Some(PromptKind::Permission) => (PushKind::Permission, prompt.map(|p| tool_name(&p.tool_name))),
        Some(PromptKind::Question(_)) => (PushKind::Question, None),
        Some(PromptKind::Plan(_)) => (PushKind::Plan, None),
    };
    // An ID no one can answer with (`agent.respond` takes at most MAX_ID_LEN bytes) is left out.
    let request_id = prompt.map(|p| p.request_id.clone()).filter(|id| id.len() <= MAX_ID_LEN);
    let notice = PushNotice {
        v: PushNotice::VERSION,
        kind,
        run_id: run_id.to_string(),
        request_id,
        session_key: own_key.to_string(),
        tool,
    };
    Some((node_id, notice))
}

fn tool_name(name: &str) -> String {
    name.chars().take(PushNotice::MAX_TOOL_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> KeyId {
        KeyId::from_digest([4; 32])
    }

    #[test]
    fn a_notice_names_the_prompt_and_nothing_of_its_content() {
        let party = Party::Node(node().to_string());
        let session = format!("node:{}:kitchen", node());
        let bash = Prompt::from_request("req-1", &json!({"tool_name": "Bash", "input": {"command": "cat SECRET"}}));
        let (to, permission) = notice(&party, "run-1", &session, Some(&bash)).unwrap();
        assert_eq!(to, node());
        assert_eq!(
            serde_json::to_value(&permission).unwrap(),
            json!({"v": 1, "kind": "permission", "runId": "run-1", "requestId": "req-1", "sessionKey": "kitchen", "tool": "Bash"})
        );
        let ask = Prompt::from_request(
            "req-2",
            &json!({"tool_name": "AskUserQuestion", "input": {"questions": [{"question": "SECRET?", "header": "h", "multiSelect": false, "options": []}]}}),
        );
        let question = serde_json::to_string(&notice(&party, "run-1", &session, Some(&ask)).unwrap().1).unwrap();
        assert!(question.contains(r#""kind":"question""#) && !question.contains("SECRET"), "{question}");
        let done = notice(&party, "run-1", &session, None).unwrap().1;
        assert_eq!(
            serde_json::to_value(&done).unwrap(),
            json!({"v": 1, "kind": "done", "runId": "run-1", "sessionKey": "kitchen"})
        );
        assert!(notice(&Party::Owner, "run-1", "main", None).is_none());
    }

    #[test]
    fn the_longest_notice_fits_the_padding() {
        let id = "\"".repeat(MAX_ID_LEN);
        let tool = "\u{1}".repeat(200);
        let prompt = Prompt::from_request(&id, &json!({"tool_name": tool}));
        let party = Party::Node(node().to_string());
        let session = format!("node:{}:{id}", node());
        let (_, longest) = notice(&party, &"f".repeat(32), &session, Some(&prompt)).unwrap();
        let size = serde_json::to_vec(&longest).unwrap().len();
        assert!(size < PADDED_LEN, "{size}");
        let too_long = Prompt::from_request(&"x".repeat(MAX_ID_LEN + 1), &json!({"tool_name": "Bash"}));
        assert_eq!(notice(&party, "r", &session, Some(&too_long)).unwrap().1.request_id, None);
    }
}
