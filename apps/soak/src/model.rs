//! The scripted model the soak's claude talks to: every turn's prompt names its device, its number and
//! its kind, and the model answers from that alone, so the soak knows every delta a turn must deliver.
//!
//! A turn streams numbered pieces (`[t12 a03]`); a turn with a tool then calls it (Bash, which asks for
//! permission; AskUserQuestion; the device's own screen snapshot) and, once claude sends the tool's result,
//! streams more pieces and a verdict saying what it saw: whether the tool ran, which answer came back, or
//! whether the picture is the device's. The device checks the whole text it received against
//! [`expected_text`]; the model counts each tool result it is sent, to prove every answer reached it once.

use crate::support::messages_api::{ApiRequest, Gate, Reply};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a turn asks of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TurnKind {
    /// Text only.
    Text,
    /// A voice transcript (the voice channel); text only.
    Voice,
    /// A Bash command that needs the device's permission.
    Permission,
    /// AskUserQuestion.
    Question,
    /// The agent takes a snapshot of the device's screen.
    Snapshot,
}

impl TurnKind {
    pub const ALL: [TurnKind; 5] =
        [TurnKind::Text, TurnKind::Voice, TurnKind::Permission, TurnKind::Question, TurnKind::Snapshot];

    pub fn name(self) -> &'static str {
        match self {
            TurnKind::Text => "text",
            TurnKind::Voice => "voice",
            TurnKind::Permission => "permission",
            TurnKind::Question => "question",
            TurnKind::Snapshot => "snapshot",
        }
    }

    fn parse(name: &str) -> Option<TurnKind> {
        TurnKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether the turn calls a tool and so has a second model step.
    pub fn has_tool(self) -> bool {
        matches!(self, TurnKind::Permission | TurnKind::Question | TurnKind::Snapshot)
    }
}

/// Pieces streamed before the tool call (or as the whole answer of a text turn).
const FIRST_PIECES: usize = 12;
/// Pieces streamed after the tool result, before the verdict.
const SECOND_PIECES: usize = 4;
/// The pause between pieces of a text answer: a turn streams for a while, so devices drop mid-way.
const PIECE_GAP: Duration = Duration::from_millis(60);

/// The options of every soak question.
pub const OPTIONS: [&str; 3] = ["Red", "Green", "Blue"];

/// The prompt of turn `turn` of kind `kind` from device `device`.
pub fn prompt(device: usize, turn: u64, kind: TurnKind) -> String {
    format!("soak d{device} t{turn} {}", kind.name())
}

fn parse_prompt(text: &str) -> Option<(usize, u64, TurnKind)> {
    let mut words = text.trim().strip_prefix("soak ")?.split(' ');
    let device = words.next()?.strip_prefix('d')?.parse().ok()?;
    let turn = words.next()?.strip_prefix('t')?.parse().ok()?;
    Some((device, turn, TurnKind::parse(words.next()?)?))
}

/// The question of turn `turn`.
pub fn question(turn: u64) -> String {
    format!("Soak turn {turn}: which colour?")
}

/// The tool call id of turn `turn` (one tool call per turn).
pub fn tool_use_id(turn: u64) -> String {
    format!("toolu_soak_{turn}")
}

fn pieces(turn: u64, step: char, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("[t{turn} {step}{i:02}]")).collect()
}

/// What the model says it saw of the tool's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The permission was granted and the command ran.
    Ran,
    /// The permission was refused (the tool result is an error).
    Refused,
    /// The question came back answered with this label.
    Answered(String),
    /// The snapshot is the device's own picture.
    ImageMatches,
    /// Anything else (the text says what).
    Other(String),
}

impl Verdict {
    fn text(&self) -> String {
        match self {
            Verdict::Ran => " tool ran".into(),
            Verdict::Refused => " tool refused".into(),
            Verdict::Answered(label) => format!(" answered {label}"),
            Verdict::ImageMatches => " image matches".into(),
            Verdict::Other(what) => format!(" unexpected: {what}"),
        }
    }
}

/// Every text delta turn `turn` must deliver, in order, when the model saw `verdict` (`None` for a turn
/// without a tool).
pub fn expected_text(turn: u64, verdict: Option<&Verdict>) -> String {
    let mut text: String = pieces(turn, 'a', FIRST_PIECES).concat();
    if let Some(verdict) = verdict {
        text.extend(pieces(turn, 'b', SECOND_PIECES));
        text.push_str(&verdict.text());
    }
    text
}

/// A 1×1 PNG whose colour is the device's number: a snapshot from the wrong device shows at once.
pub fn device_png(device: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, 1, 1);
    encoder.set_color(png::ColorType::Rgb);
    let pixel = [(device & 0xff) as u8, ((device >> 8) & 0xff) as u8, 0x5a];
    encoder.write_header().expect("a PNG header").write_image_data(&pixel).expect("a PNG pixel");
    bytes
}

/// How many times the model was sent each tool call's result, and requests it did not expect.
#[derive(Default)]
pub struct ModelLog {
    pub tool_results: HashMap<String, u32>,
    pub unexpected: Vec<String>,
}

/// The script for [`crate::support::messages_api::MessagesApi::start`], recording into `log`.
pub fn script(log: Arc<Mutex<ModelLog>>) -> impl Fn(&ApiRequest) -> Reply + Send + Sync + 'static {
    move |request| {
        let Some((device, turn, kind)) = current_turn(request) else {
            let mut log = log.lock().expect("model log lock");
            log.unexpected.push(request.last_user_text.chars().take(120).collect());
            return Reply::text(&["ok"]);
        };
        if !request.has_tool_result {
            return first_step(turn, kind);
        }
        let id = tool_use_id(turn);
        let verdict = match request.tool_result(&id) {
            Some(result) => {
                *log.lock().expect("model log lock").tool_results.entry(id.clone()).or_default() += 1;
                verdict_of(kind, device, &result)
            }
            None => Verdict::Other(format!("no result for {id}")),
        };
        let mut text = pieces(turn, 'b', SECOND_PIECES);
        text.push(verdict.text());
        Reply::Text { pieces: text, gap: PIECE_GAP }
    }
}

fn first_step(turn: u64, kind: TurnKind) -> Reply {
    let pieces = pieces(turn, 'a', FIRST_PIECES);
    let (name, input) = match kind {
        TurnKind::Text | TurnKind::Voice => return Reply::Text { pieces, gap: PIECE_GAP },
        TurnKind::Permission => (
            "Bash",
            json!({ "command": format!("echo soak-{turn} | tee soak-{turn}.txt"), "description": "Write the soak marker" }),
        ),
        TurnKind::Question => (
            "AskUserQuestion",
            json!({ "questions": [{ "question": question(turn), "header": "Colour", "multiSelect": false,
                "options": OPTIONS.map(|label| json!({ "label": label, "description": label })) }] }),
        ),
        TurnKind::Snapshot => ("mcp__lanyard__screen_snapshot", json!({})),
    };
    // The gate lets every piece through at once: only the text-only turns stream slowly.
    let gate = Gate::closed();
    for _ in 0..pieces.len() {
        gate.release_one();
    }
    Reply::GatedThenTool { pieces, gate, id: tool_use_id(turn), name: name.into(), input }
}

/// The soak turn a request belongs to: the latest user message that is a soak prompt (the last user
/// message itself holds only the tool result in a turn's second step).
fn current_turn(request: &ApiRequest) -> Option<(usize, u64, TurnKind)> {
    let messages = request.body["messages"].as_array()?;
    messages.iter().rev().filter(|m| m["role"] == "user").find_map(|message| match &message["content"] {
        Value::String(text) => parse_prompt(text),
        Value::Array(blocks) => blocks.iter().rev().filter_map(|b| b["text"].as_str()).find_map(parse_prompt),
        _ => None,
    })
}

fn verdict_of(kind: TurnKind, device: usize, result: &Value) -> Verdict {
    let is_error = result["is_error"].as_bool().unwrap_or(false);
    let text = match &result["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(""),
        _ => String::new(),
    };
    let short = |text: &str| text.chars().take(80).collect::<String>().replace(['[', ']'], "");
    match kind {
        TurnKind::Permission if is_error => Verdict::Refused,
        TurnKind::Permission => Verdict::Ran,
        TurnKind::Question if !is_error => {
            match OPTIONS.into_iter().find(|label| text.contains(&format!("=\"{label}\""))) {
                Some(label) => Verdict::Answered(label.into()),
                None => Verdict::Other(short(&text)),
            }
        }
        TurnKind::Snapshot if !is_error => {
            let want = data_encoding::BASE64.encode(&device_png(device));
            let images = result["content"].as_array().into_iter().flatten().filter(|p| p["type"] == "image");
            let datas: Vec<&str> = images.filter_map(|p| p["source"]["data"].as_str()).collect();
            match datas.as_slice() {
                [data] if *data == want => Verdict::ImageMatches,
                [] => Verdict::Other(format!("no image: {}", short(&text))),
                _ => Verdict::Other("another image".into()),
            }
        }
        _ => Verdict::Other(short(&text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_parse_back() {
        for kind in TurnKind::ALL {
            assert_eq!(parse_prompt(&prompt(17, 4242, kind)), Some((17, 4242, kind)));
        }
        assert_eq!(parse_prompt("soak d1 t2 dance"), None);
        assert_eq!(parse_prompt("hello"), None);
    }

    #[test]
    fn each_device_has_its_own_picture() {
        assert_ne!(device_png(1), device_png(257));
        assert_eq!(device_png(3), device_png(3));
    }
}
