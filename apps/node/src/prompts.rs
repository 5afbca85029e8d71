//! The agent's prompts on the terminal. While a transcript's turn runs, the agent may ask for permission to
//! use a tool, ask a question or present a plan; each is printed as a block carrying its request id, and
//! answered with a command on stdin (handled at once, even while the turn streams):
//!
//! - `/allow [ID]`, `/deny [ID] [reason…]`: a tool permission (a plan takes them too);
//! - `/answer [ID] N|text`: a question, by option number or in words; several questions are answered in
//!   order, separated by ` | `; a multi-select question takes `N,N`;
//! - `/approve [ID]`, `/reject [ID] [reason…]`: a plan;
//! - `/cancel`: stops the running turn (it ends with `[cancelled]`);
//! - `/pending`: lists the prompts still waiting for this node.
//!
//! The id may be left out while exactly one prompt is open, and may be shortened to a unique prefix (at
//! least [`MIN_PREFIX_BEFORE_TEXT`] characters in front of a reason or an answer). A refused answer is
//! one line, `[answer refused: CODE: message]`; nothing here ends the node.

use node_kit::ClientError;
use node_kit::node::Node;
use node_kit::protocol::{
    AgentEvent, AgentEventKind, Decision, ErrorCode, PromptResolution, Question, RespondParams, RunPhase,
};
use std::io::Write;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Shortest id prefix taken in front of free text (`/deny ab12 too risky`); `/allow ab` takes any prefix.
pub const MIN_PREFIX_BEFORE_TEXT: usize = 4;
/// Closed prompts remembered, so that a late answer by id gets the computer's `PROMPT_CLOSED`.
const CLOSED_KEPT: usize = 32;

/// The node's stdout, shared by streamed replies and prompt blocks so that a block never lands in the
/// middle of a reply's line.
pub struct Console {
    /// The last thing written did not end its line.
    mid_line: Mutex<bool>,
}

pub static CONSOLE: Console = Console { mid_line: Mutex::new(false) };

impl Console {
    /// A piece of a streamed reply, as it is.
    pub fn text(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut mid_line = self.mid_line.lock().expect("console lock");
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        *mid_line = !text.ends_with('\n');
    }

    /// Whole lines, starting on a line of their own.
    pub fn lines(&self, block: &str) {
        let mut mid_line = self.mid_line.lock().expect("console lock");
        let mut out = std::io::stdout().lock();
        if *mid_line {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "{block}");
        let _ = out.flush();
        *mid_line = false;
    }

    /// Ends a reply: closes its last line, or prints an empty line for a turn that printed nothing.
    pub fn end_reply(&self, printed: bool) {
        let mut mid_line = self.mid_line.lock().expect("console lock");
        if *mid_line || !printed {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out);
            let _ = out.flush();
        }
        *mid_line = false;
    }
}

/// A prompt waiting for an answer.
#[derive(Debug, Clone)]
struct Open {
    run_id: String,
    request_id: String,
    kind: AgentEventKind,
}

/// The turn running now and the prompts this node knows to be open: what `/cancel` stops and what an
/// answer without an id goes to.
#[derive(Default)]
pub struct Turns {
    state: Mutex<TurnsState>,
}

#[derive(Default)]
struct TurnsState {
    running: Option<String>,
    /// In the order they came.
    open: Vec<Open>,
    /// The latest closed ones, oldest first.
    closed: Vec<Open>,
}

impl TurnsState {
    fn close(&mut self, keep: impl Fn(&Open) -> bool) {
        let (kept, gone): (Vec<Open>, Vec<Open>) = std::mem::take(&mut self.open).into_iter().partition(keep);
        self.open = kept;
        self.closed.extend(gone);
        let over = self.closed.len().saturating_sub(CLOSED_KEPT);
        self.closed.drain(..over);
    }
}

impl Turns {
    fn lock(&self) -> std::sync::MutexGuard<'_, TurnsState> {
        self.state.lock().expect("turns lock")
    }

    pub fn started(&self, run_id: &str) {
        self.lock().running = Some(run_id.to_string());
    }

    /// The run ended: it has no prompts left either.
    pub fn finished(&self, run_id: &str) {
        let mut state = self.lock();
        if state.running.as_deref() == Some(run_id) {
            state.running = None;
        }
        state.close(|p| p.run_id != run_id);
    }

    fn running(&self) -> Option<String> {
        self.lock().running.clone()
    }

    /// Records a prompt of `run_id`; false when it is known already (a reattach hands open prompts out again).
    fn opened(&self, run_id: &str, kind: &AgentEventKind) -> bool {
        let Some(request_id) = kind.prompt_id() else { return false };
        let mut state = self.lock();
        if state.open.iter().chain(&state.closed).any(|p| p.request_id == request_id) {
            return false;
        }
        state.open.push(Open { run_id: run_id.to_string(), request_id: request_id.to_string(), kind: kind.clone() });
        true
    }

    fn closed(&self, request_id: &str) {
        self.lock().close(|p| p.request_id != request_id);
    }

    fn open(&self) -> Vec<Open> {
        self.lock().open.clone()
    }

    fn recently_closed(&self) -> Vec<Open> {
        self.lock().closed.clone()
    }

    /// Adds what `agent.pending` listed and this node did not know (prompts of a run it no longer streams).
    fn merge(&self, prompts: &[AgentEvent]) {
        for prompt in prompts {
            self.opened(&prompt.run_id, &prompt.kind);
        }
    }
}

/// Prints one event of a running turn; true when it printed something.
pub fn show(turns: &Turns, event: &AgentEvent) -> bool {
    match &event.kind {
        AgentEventKind::TextDelta { text } => {
            CONSOLE.text(text);
            !text.is_empty()
        }
        AgentEventKind::PromptClosed { request_id, resolution } => {
            turns.closed(request_id);
            CONSOLE.lines(&closed_line(request_id, *resolution));
            true
        }
        kind if turns.opened(&event.run_id, kind) => {
            CONSOLE.lines(&describe(kind));
            true
        }
        _ => false,
    }
}

fn closed_line(request_id: &str, resolution: PromptResolution) -> String {
    let resolution = match resolution {
        PromptResolution::Allowed => "allowed",
        PromptResolution::Denied => "denied",
        PromptResolution::TimedOut => "timed_out",
        PromptResolution::Withdrawn => "withdrawn",
    };
    format!("[prompt closed {request_id}: {resolution}]")
}

/// The block that shows a prompt and says how to answer it.
fn describe(kind: &AgentEventKind) -> String {
    match kind {
        AgentEventKind::Permission { request_id, tool_name, summary, .. } => {
            format!("[permission {request_id}] {tool_name}: {summary} — answer /allow or /deny [reason]")
        }
        AgentEventKind::Question { request_id, questions, .. } => match questions.as_slice() {
            [one] => {
                let how = if one.multi_select { "/answer N[,N…]" } else { "/answer N" };
                format!("[question {request_id}] {} — answer {how} (or /answer text)", question_line(one))
            }
            several => {
                let mut block = format!("[question {request_id}] {} questions:", several.len());
                for (n, question) in several.iter().enumerate() {
                    block.push_str(&format!("\n  {}. {}", n + 1, question_line(question)));
                    if question.multi_select {
                        block.push_str(" (several: N,N)");
                    }
                }
                block.push_str("\n— answer /answer A | B … (one per question, in order: an option number or text)");
                block
            }
        },
        AgentEventKind::Plan { request_id, plan, .. } => {
            let plan = if plan.trim().is_empty() { "(the agent sent no plan text)" } else { plan.trim_end() };
            format!("[plan {request_id}]\n{plan}\n— answer /approve or /reject [reason]")
        }
        other => format!("{other:?}"),
    }
}

/// `Which color? 1) Red — A red button 2) Blue`
fn question_line(question: &Question) -> String {
    let mut line = match question.header.as_deref().filter(|h| !h.trim().is_empty()) {
        Some(header) => format!("{header}: {}", question.question),
        None => question.question.clone(),
    };
    for (n, option) in question.options.iter().enumerate() {
        line.push_str(&format!(" {}) {}", n + 1, option.label));
        if let Some(description) = option.description.as_deref().filter(|d| !d.trim().is_empty()) {
            line.push_str(&format!(" — {description}"));
        }
    }
    line
}

/// A stdin command about the agent's prompts or its turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Steer {
    /// `/allow [ID]`, `/approve [ID]`: what follows the command.
    Allow(String),
    /// `/deny [ID] [reason…]`, `/reject [ID] [reason…]`.
    Deny(String),
    /// `/answer [ID] N|text`.
    Answer(String),
    Cancel,
    Pending,
}

/// `Some` when `line` (trimmed) is one of the prompt commands.
pub fn parse(line: &str) -> Option<Steer> {
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim().to_string();
    Some(match word {
        "/allow" | "/approve" => Steer::Allow(rest),
        "/deny" | "/reject" => Steer::Deny(rest),
        "/answer" => Steer::Answer(rest),
        "/cancel" => Steer::Cancel,
        "/pending" => Steer::Pending,
        _ => return None,
    })
}

/// Handles prompt commands one after the other, until the channel closes.
pub async fn steer(node: Node, turns: std::sync::Arc<Turns>, mut commands: mpsc::Receiver<Steer>) {
    while let Some(command) = commands.recv().await {
        if let Err(refusal) = handle(&node, &turns, command).await {
            CONSOLE.lines(&refusal);
        }
    }
}

async fn handle(node: &Node, turns: &Turns, command: Steer) -> Result<(), String> {
    let (prompt, text, decision) = match command {
        Steer::Cancel => return cancel(node, turns).await,
        Steer::Pending => return pending(node, turns).await,
        Steer::Allow(rest) => {
            let (prompt, text) = pick(node, turns, &rest, true).await?;
            if !text.is_empty() {
                return Err(refused(format!("/allow and /approve take only an id, not {text:?}")));
            }
            if matches!(prompt.kind, AgentEventKind::Question { .. }) {
                return Err(refused(format!("{} is a question: answer it with /answer N", prompt.request_id)));
            }
            (prompt, text, Decision::Allow)
        }
        Steer::Deny(rest) => {
            let (prompt, text) = pick(node, turns, &rest, false).await?;
            (prompt, text, Decision::Deny)
        }
        Steer::Answer(rest) => {
            let (prompt, text) = pick(node, turns, &rest, false).await?;
            if !matches!(prompt.kind, AgentEventKind::Question { .. }) {
                return Err(refused(format!(
                    "{} is not a question: answer it with /allow or /deny (/approve or /reject for a plan)",
                    prompt.request_id
                )));
            }
            (prompt, text, Decision::Allow)
        }
    };
    let mut params = RespondParams::new(&prompt.run_id, &prompt.request_id, decision);
    match (&prompt.kind, decision) {
        (AgentEventKind::Question { questions, .. }, Decision::Allow) => {
            for (question, label) in answers(questions, &text).map_err(refused)? {
                params = params.answer(question, label);
            }
        }
        (_, Decision::Deny) if !text.is_empty() => params = params.message(text),
        _ => {}
    }
    match node.respond(params).await {
        Ok(answered) => {
            // A prompt of a turn this node does not stream gets no closing event here: say it closed.
            if turns.running().as_deref() != Some(answered.run_id.as_str()) {
                turns.closed(&answered.request_id);
                CONSOLE.lines(&closed_line(&answered.request_id, answered.resolution));
            }
            Ok(())
        }
        Err(e) => {
            if matches!(e.code(), Some(ErrorCode::PromptClosed | ErrorCode::NotFound)) {
                turns.closed(&prompt.request_id);
            }
            Err(refused(error_text(&e)))
        }
    }
}

fn refused(why: impl std::fmt::Display) -> String {
    format!("[answer refused: {why}]")
}

/// `CODE: message` for the gateway's refusals, the error itself otherwise.
fn error_text(e: &ClientError) -> String {
    match e {
        ClientError::Remote(shape) | ClientError::Handshake(shape) => format!("{}: {}", shape.code, shape.message),
        other => other.to_string(),
    }
}

/// The prompt a command is about, and the text after its id. `rest` may start with an id (or a unique
/// prefix of one); without one, the single open prompt. Asks the gateway for its pending prompts when this
/// node knows of none that fits.
async fn pick(node: &Node, turns: &Turns, rest: &str, id_only: bool) -> Result<(Open, String), String> {
    let (token, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let fits = |p: &&Open| {
        !token.is_empty()
            && (p.request_id == token
                || (p.request_id.starts_with(token) && (id_only || token.len() >= MIN_PREFIX_BEFORE_TEXT)))
    };
    let names_a_prompt = !token.is_empty() && (id_only || looks_like_id(token));
    for asked in [false, true] {
        if asked {
            let listed = node.pending().await.map_err(|e| refused(error_text(&e)))?;
            turns.merge(&listed.prompts);
        }
        let open = turns.open();
        let mut matching: Vec<&Open> = open.iter().filter(fits).collect();
        // A prompt closed a moment ago, named by its id: the computer says how it closed.
        let closed = turns.recently_closed();
        if matching.is_empty() {
            let named = |p: &&Open| {
                p.request_id == token || (token.len() >= MIN_PREFIX_BEFORE_TEXT && p.request_id.starts_with(token))
            };
            matching = closed.iter().rev().filter(named).take(1).collect();
        }
        match matching.as_slice() {
            [one] => return Ok(((*one).clone(), after.trim().to_string())),
            [] => {}
            several => {
                return Err(refused(format!("{token:?} fits {} prompts; give more of the id", several.len())));
            }
        }
        // An id that fits no prompt is refused, never taken as the single open prompt's answer text.
        if names_a_prompt {
            continue;
        }
        match open.as_slice() {
            [one] => return Ok((one.clone(), rest.to_string())),
            [] => {}
            several => {
                let ids: Vec<&str> = several.iter().map(|p| p.request_id.as_str()).collect();
                return Err(refused(format!("{} prompts are open ({}); put the id first", ids.len(), ids.join(", "))));
            }
        }
    }
    Err(refused(if names_a_prompt { format!("no open prompt {token}") } else { "no prompt is open".to_string() }))
}

/// Whether a word in front of free text is meant as a request id (claude's ids are UUIDs): at least
/// [`MIN_PREFIX_BEFORE_TEXT`] hex digits and dashes, with a digit among them so that words like `face`
/// stay text.
fn looks_like_id(token: &str) -> bool {
    token.len() >= MIN_PREFIX_BEFORE_TEXT
        && token.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && token.chars().any(|c| c.is_ascii_digit())
}

/// A question's answers from `/answer` text: question → label. One question takes the whole text; several
/// take ` | `-separated parts in order. A number picks that option (`N,N` several, for a multi-select).
fn answers(questions: &[Question], text: &str) -> Result<Vec<(String, String)>, String> {
    if text.trim().is_empty() {
        return Err("answer with /answer N (an option's number) or /answer text".into());
    }
    let parts: Vec<&str> = if questions.len() == 1 { vec![text] } else { text.split('|').collect() };
    if parts.len() != questions.len() {
        return Err(format!(
            "{} questions need {} answers separated by \" | \", got {}",
            questions.len(),
            questions.len(),
            parts.len()
        ));
    }
    questions.iter().zip(parts).map(|(q, part)| Ok((q.question.clone(), answer(q, part.trim())?))).collect()
}

/// One question's answer: option numbers become their labels, anything else is the answer in words.
fn answer(question: &Question, part: &str) -> Result<String, String> {
    if part.is_empty() {
        return Err(format!("no answer for {:?}", question.question));
    }
    Ok(question.chosen(part)?.unwrap_or_else(|| part.to_string()))
}

async fn cancel(node: &Node, turns: &Turns) -> Result<(), String> {
    let Some(run_id) = turns.running() else { return Err("[cancel refused: no turn is running]".into()) };
    match node.cancel(run_id).await {
        Ok(cancelled) if cancelled.was == RunPhase::Finished => {
            CONSOLE.lines("[nothing to cancel: the turn had finished]");
            Ok(())
        }
        // The turn ends with status cancelled; its stream prints `[cancelled]`.
        Ok(_) => Ok(()),
        Err(e) => Err(format!("[cancel refused: {}]", error_text(&e))),
    }
}

async fn pending(node: &Node, turns: &Turns) -> Result<(), String> {
    let listed = node.pending().await.map_err(|e| format!("[pending refused: {}]", error_text(&e)))?;
    turns.merge(&listed.prompts);
    match listed.prompts.len() {
        0 => CONSOLE.lines("[pending: none]"),
        1 => CONSOLE.lines("[pending: 1 prompt]"),
        n => CONSOLE.lines(&format!("[pending: {n} prompts]")),
    }
    for prompt in &listed.prompts {
        CONSOLE.lines(&describe(&prompt.kind));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_kit::protocol::QuestionOption;
    use serde_json::json;

    fn question(text: &str, labels: &[&str], multi_select: bool) -> Question {
        Question {
            question: text.into(),
            header: None,
            options: labels.iter().map(|l| QuestionOption { label: l.to_string(), description: None }).collect(),
            multi_select,
        }
    }

    #[test]
    fn commands_are_told_from_transcripts() {
        assert_eq!(parse("/allow"), Some(Steer::Allow(String::new())));
        assert_eq!(parse("/approve p-1"), Some(Steer::Allow("p-1".into())));
        assert_eq!(parse("/deny p-1  too risky "), Some(Steer::Deny("p-1  too risky".into())));
        assert_eq!(parse("/reject"), Some(Steer::Deny(String::new())));
        assert_eq!(parse("/answer 2"), Some(Steer::Answer("2".into())));
        assert_eq!(parse("/cancel"), Some(Steer::Cancel));
        assert_eq!(parse("/pending"), Some(Steer::Pending));
        assert_eq!(parse("/allowance"), None);
        assert_eq!(parse("allow"), None);
    }

    #[test]
    fn an_unknown_id_in_front_of_text_is_told_from_the_text() {
        assert!(looks_like_id("30696ca7"));
        assert!(looks_like_id("30696ca7-1f2e-4b6a-9c1d-6f0e2a7b8c9d"));
        assert!(!looks_like_id("face"), "a hex word without a digit is text");
        assert!(!looks_like_id("2"), "an option number is text");
        assert!(!looks_like_id("1,2"));
        assert!(!looks_like_id("not now"));
    }

    #[test]
    fn answers_by_number_or_in_words() {
        let color = [question("Which color?", &["Red", "Blue"], false)];
        assert_eq!(answers(&color, "2").unwrap(), [("Which color?".to_string(), "Blue".to_string())]);
        assert_eq!(answers(&color, "green please").unwrap()[0].1, "green please");
        assert!(answers(&color, "3").unwrap_err().contains("no option 3"));
        assert!(answers(&color, "1,2").unwrap_err().contains("one option"));
        assert!(answers(&color, " ").is_err());

        let two = [question("Which color?", &["Red", "Blue"], false), question("Toppings?", &["A", "B", "C"], true)];
        let given = answers(&two, "1 | 1, 3").unwrap();
        assert_eq!(given[0].1, "Red");
        assert_eq!(given[1], ("Toppings?".to_string(), "A, C".to_string()));
        assert!(answers(&two, "1").unwrap_err().contains("2 answers"));
    }

    #[test]
    fn prompts_show_their_id_and_how_to_answer() {
        let permission = AgentEventKind::Permission {
            request_id: "p-1".into(),
            tool_name: "Bash".into(),
            summary: "Run `touch x` (Create x)".into(),
            input: json!({}),
            tool_use_id: None,
            expires_at_ms: 0,
        };
        assert_eq!(
            describe(&permission),
            "[permission p-1] Bash: Run `touch x` (Create x) — answer /allow or /deny [reason]"
        );
        let mut color = question("Which color?", &["Red", "Blue"], false);
        color.options[0].description = Some("A red button".into());
        let asked = AgentEventKind::Question { request_id: "q-1".into(), questions: vec![color], expires_at_ms: 0 };
        assert_eq!(
            describe(&asked),
            "[question q-1] Which color? 1) Red — A red button 2) Blue — answer /answer N (or /answer text)"
        );
        let plan = AgentEventKind::Plan { request_id: "r-1".into(), plan: "1. Do it\n".into(), expires_at_ms: 0 };
        assert_eq!(describe(&plan), "[plan r-1]\n1. Do it\n— answer /approve or /reject [reason]");
        assert_eq!(closed_line("p-1", PromptResolution::TimedOut), "[prompt closed p-1: timed_out]");
    }

    #[test]
    fn a_reattach_does_not_show_a_prompt_twice() {
        let turns = Turns::default();
        let plan = AgentEventKind::Plan { request_id: "r-1".into(), plan: String::new(), expires_at_ms: 0 };
        turns.started("run");
        assert!(turns.opened("run", &plan));
        assert!(!turns.opened("run", &plan));
        turns.finished("run");
        assert!(turns.open().is_empty() && turns.running().is_none());
    }
}
