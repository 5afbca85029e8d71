//! `lanyard agent "PROMPT"`: one turn of the agent, streamed to stdout as it arrives, with the turn's
//! permission prompts, questions and plans asked on stderr and answered on stdin.

use super::Exit;
use anyhow::{Context, anyhow, bail};
use clap::Args;
use data_encoding::BASE64;
use node_kit::protocol::{
    ATTACHMENT_MEDIA_TYPES, AgentEvent, AgentEventKind, AgentParams, Attachment, Decision, ErrorCode,
    GATEWAY_SHUTTING_DOWN, MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS, MAX_ATTACHMENTS_TOTAL_BYTES, PromptResolution,
    Question, RespondParams, RunStatus, ellipsize,
};
use node_kit::{Client, ClientError};
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// The exit status of a turn stopped with Ctrl-C, as a shell reports a process ended by SIGINT.
const INTERRUPTED: u8 = 130;

/// Send a prompt to the agent and stream its answer to stdout as it arrives. Tool use is reported on
/// stderr. Turns in the same --session continue one conversation.
///
/// When the agent wants to use a tool that needs permission, asks a question or presents a plan, you
/// are asked on stderr and answer with a line on stdin (a terminal or a pipe): `y` allows, anything else
/// denies, and `n REASON` denies with a reason the model reads; a question takes an option's number or
/// your own words. A prompt answered elsewhere first (on your phone, say) is dropped here. With stdin
/// closed, every prompt is denied. Ctrl-C stops the turn (exit status 130); a second Ctrl-C quits at
/// once.
#[derive(Args)]
pub struct AgentArgs {
    /// What to ask
    prompt: String,

    /// Conversation to continue
    #[arg(long, default_value = "main", value_name = "KEY")]
    session: String,

    /// Give up on the turn after this many seconds [default: the gateway's turn timeout]
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,

    /// Send an image with the prompt (PNG, JPEG, GIF or WebP); repeat for several, at most 4
    #[arg(long = "image", value_name = "FILE")]
    images: Vec<PathBuf>,

    /// Print the events and the outcome as JSON lines instead of text; prompts are still asked on stderr
    /// and answered from stdin
    #[arg(long)]
    json: bool,
}

pub async fn run(args: AgentArgs, url: &str, home: &Path) -> anyhow::Result<()> {
    // A wrong file is refused before anything is sent.
    let attachments = images(&args.images)?;
    let client = super::connect(url, home).await?;
    let mut params = AgentParams::new(args.prompt).session(args.session);
    params.timeout_ms = args.timeout.map(|s| s.saturating_mul(1000));
    params.attachments = attachments;
    let mut run = client.agent(params).await?;
    let run_id = run.run_id().to_string();
    let mut out = Output { json: args.json, wrote_text: false, mid_line: false };
    let mut prompts = Prompts::new(client.clone(), run_id.clone());
    let mut interrupts = Interrupts::new().context("cannot watch for Ctrl-C")?;
    let mut stopping = false;
    loop {
        prompts.ask_next(&mut out).await?;
        tokio::select! {
            event = run.next() => match event {
                Some(event) => {
                    out.event(&event)?;
                    prompts.on_event(event.kind, &mut out)?;
                }
                None => break,
            },
            line = prompts.line(), if prompts.waiting() => prompts.on_line(line, &mut out).await?,
            () = interrupts.recv() => {
                if stopping {
                    out.end_line()?;
                    eprintln!("(quit without waiting for the turn to stop)");
                    return Err(Exit(INTERRUPTED).into());
                }
                stopping = true;
                out.end_line()?;
                eprintln!("(stopping the turn; Ctrl-C again to quit at once)");
                if let Err(e) = client.cancel(&run_id).await {
                    eprintln!("cannot stop the turn: {e}");
                }
            }
        }
    }
    let outcome = match run.outcome().await {
        Ok(outcome) => outcome,
        Err(e) => {
            out.end_line()?;
            let stopped = match &e {
                ClientError::Closed | ClientError::Connect { .. } => true,
                ClientError::Remote(shape) => shape.message == GATEWAY_SHUTTING_DOWN,
                _ => false,
            };
            if stopped {
                bail!(
                    "the computer stopped during this turn (the gateway went away before the answer was finished); \
                     start `lanyard up` again and ask again"
                );
            }
            return Err(e.into());
        }
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&outcome)?)?;
    } else if out.wrote_text {
        writeln!(stdout)?;
    } else if outcome.status != RunStatus::Cancelled {
        // No deltas streamed (an older claude, say): print the result whole.
        writeln!(stdout, "{}", outcome.result)?;
    }
    stdout.flush()?;
    if outcome.status == RunStatus::Cancelled {
        eprintln!("(cancelled)");
        return Err(Exit(INTERRUPTED).into());
    }
    Ok(())
}

/// The images of `--image`, read, typed by their first bytes, and checked against the protocol's limits.
fn images(paths: &[PathBuf]) -> anyhow::Result<Vec<Attachment>> {
    if paths.len() > MAX_ATTACHMENTS {
        bail!("{} images given; at most {MAX_ATTACHMENTS} --image may go with one prompt", paths.len());
    }
    let mut total = 0;
    let mut attachments = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read the image {}", path.display()))?;
        let media_type = media_type(&bytes).ok_or_else(|| {
            anyhow!("{} is not a PNG, JPEG, GIF or WebP image, the kinds the model reads", path.display())
        })?;
        let data = BASE64.encode(&bytes);
        if data.len() > MAX_ATTACHMENT_BYTES {
            bail!(
                "{} is too large to send: {} bytes; an image may be at most {} bytes",
                path.display(),
                bytes.len(),
                MAX_ATTACHMENT_BYTES / 4 * 3
            );
        }
        total += data.len();
        attachments.push(Attachment { media_type: media_type.to_string(), data });
    }
    if total > MAX_ATTACHMENTS_TOTAL_BYTES {
        bail!(
            "the images are too large together; at most {} bytes may go with one prompt",
            MAX_ATTACHMENTS_TOTAL_BYTES / 4 * 3
        );
    }
    Ok(attachments)
}

/// The media type of an image from its magic bytes, if it is one the model reads.
fn media_type(bytes: &[u8]) -> Option<&'static str> {
    let media_type = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        "image/gif"
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        "image/webp"
    } else {
        return None;
    };
    debug_assert!(ATTACHMENT_MEDIA_TYPES.contains(&media_type));
    Some(media_type)
}

/// Where the run's events go: the text on stdout, tool use on stderr; or every event as a JSON line.
struct Output {
    json: bool,
    /// Some text went to stdout.
    wrote_text: bool,
    /// stdout's last line is not finished.
    mid_line: bool,
}

impl Output {
    fn event(&mut self, event: &AgentEvent) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{}", serde_json::to_string(event)?)?;
            return Ok(stdout.flush()?);
        }
        match &event.kind {
            AgentEventKind::TextDelta { text } => {
                write!(stdout, "{text}")?;
                stdout.flush()?;
                if !text.is_empty() {
                    self.wrote_text = true;
                    self.mid_line = !text.ends_with('\n');
                }
            }
            AgentEventKind::ToolUse { name, .. } => {
                drop(stdout);
                self.end_line()?;
                eprintln!("[tool] {name}");
            }
            AgentEventKind::ToolResult { is_error: true, .. } => {
                drop(stdout);
                self.end_line()?;
                eprintln!("[tool] failed");
            }
            _ => {}
        }
        Ok(())
    }

    /// Before a line on stderr: ends stdout's unfinished line, so both read well on one terminal.
    fn end_line(&mut self) -> std::io::Result<()> {
        if self.mid_line {
            self.mid_line = false;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout)?;
            stdout.flush()?;
        }
        Ok(())
    }
}

/// A prompt of the run, shown and being answered.
struct Asking {
    request_id: String,
    prompt: AgentEventKind,
    /// A question prompt's answers so far, one per question, in order.
    answers: Vec<String>,
}

/// The run's prompts, asked one at a time in the order they came, each answered by lines of stdin.
struct Prompts {
    client: Client,
    run_id: String,
    /// Prompts not shown yet, oldest first.
    queue: VecDeque<AgentEventKind>,
    asking: Option<Asking>,
    /// Lines of stdin, read from the first prompt on.
    lines: Option<mpsc::Receiver<String>>,
    stdin_closed: bool,
}

impl Prompts {
    fn new(client: Client, run_id: String) -> Prompts {
        Prompts { client, run_id, queue: VecDeque::new(), asking: None, lines: None, stdin_closed: false }
    }

    /// Whether a line of stdin is awaited.
    fn waiting(&self) -> bool {
        self.asking.is_some() && !self.stdin_closed
    }

    /// The next line of stdin (`None` at its end). Cancel-safe: a line that arrives after the wait is
    /// given up stays for the next prompt.
    async fn line(&mut self) -> Option<String> {
        match &mut self.lines {
            Some(lines) => lines.recv().await,
            None => None,
        }
    }

    fn on_event(&mut self, kind: AgentEventKind, out: &mut Output) -> anyhow::Result<()> {
        match kind {
            AgentEventKind::PromptClosed { request_id, resolution } => {
                // Prompts not shown yet go quietly; the one being asked says why it is gone.
                self.queue.retain(|prompt| prompt.prompt_id() != Some(request_id.as_str()));
                if self.asking.as_ref().is_some_and(|asking| asking.request_id == request_id) {
                    self.asking = None;
                    out.end_line()?;
                    eprintln!("\n({})", closed_elsewhere(resolution));
                }
            }
            prompt if prompt.prompt_id().is_some() => {
                let id = prompt.prompt_id();
                let known = self.asking.as_ref().is_some_and(|a| Some(a.request_id.as_str()) == id)
                    || self.queue.iter().any(|queued| queued.prompt_id() == id);
                if !known {
                    self.queue.push_back(prompt);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Shows the next prompt unless one is being asked. With stdin closed, each is denied as it comes.
    async fn ask_next(&mut self, out: &mut Output) -> anyhow::Result<()> {
        while self.asking.is_none() {
            let Some(prompt) = self.queue.pop_front() else { break };
            let request_id = prompt.prompt_id().expect("only prompts are queued").to_string();
            out.end_line()?;
            eprint!("\n{}", describe(&prompt));
            if let AgentEventKind::Question { questions, .. } = &prompt
                && let Some(first) = questions.first()
            {
                eprint!("{}", ask(first));
            }
            flush_stderr();
            if self.lines.is_none() && !self.stdin_closed {
                self.lines = Some(super::stdin_lines().context("cannot read answers from stdin")?);
            }
            self.asking = Some(Asking { request_id, prompt, answers: Vec::new() });
            if self.stdin_closed {
                self.on_line(None, out).await?;
            }
        }
        Ok(())
    }

    /// One line typed for the prompt being asked (`None`: stdin ended).
    async fn on_line(&mut self, line: Option<String>, out: &mut Output) -> anyhow::Result<()> {
        let Some(mut asking) = self.asking.take() else { return Ok(()) };
        let Some(line) = line else {
            eprintln!();
            self.stdin_closed = true;
            eprintln!("(stdin is closed, so nobody can answer here: denied)");
            let deny = RespondParams::new(&self.run_id, &asking.request_id, Decision::Deny)
                .message("Nobody could answer at the terminal (its input was closed).");
            return self.respond(deny, out).await;
        };
        if !std::io::stdin().is_terminal() {
            // Typed at a terminal, the answer shows as it is typed; from a pipe, it is shown here.
            eprintln!("{line}");
        }
        let answer = match &asking.prompt {
            AgentEventKind::Permission { .. } | AgentEventKind::Plan { .. } => {
                let (decision, message) = yes_or_no(&line);
                let mut params = RespondParams::new(&self.run_id, &asking.request_id, decision);
                if let Some(message) = message {
                    params = params.message(message);
                }
                params
            }
            AgentEventKind::Question { questions, .. } => {
                let picked = questions.get(asking.answers.len()).and_then(|question| pick(question, &line));
                let Some(label) = picked else {
                    eprintln!("(no answer: the question is declined)");
                    let decline = RespondParams::new(&self.run_id, &asking.request_id, Decision::Deny)
                        .message("The user declined to answer.");
                    return self.respond(decline, out).await;
                };
                asking.answers.push(label);
                if let Some(next) = questions.get(asking.answers.len()) {
                    eprint!("{}", ask(next));
                    flush_stderr();
                    self.asking = Some(asking);
                    return Ok(());
                }
                let mut params = RespondParams::new(&self.run_id, &asking.request_id, Decision::Allow);
                for (question, label) in questions.iter().zip(&asking.answers) {
                    params = params.answer(&question.question, label);
                }
                params
            }
            _ => return Ok(()),
        };
        self.respond(answer, out).await
    }

    async fn respond(&mut self, params: RespondParams, out: &mut Output) -> anyhow::Result<()> {
        match self.client.respond(params).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(ErrorCode::PromptClosed) => {
                out.end_line()?;
                eprintln!("(already answered elsewhere, on your phone say; your answer was not used)");
                Ok(())
            }
            Err(ClientError::Closed) => Err(anyhow!("the gateway closed the connection")),
            Err(e) => {
                out.end_line()?;
                eprintln!("(the answer was refused: {e})");
                Ok(())
            }
        }
    }
}

fn flush_stderr() {
    let _ = std::io::stderr().flush();
}

/// A prompt as the person is asked it, ending with the question of a permission or a plan (no newline,
/// the answer is typed after it). A question prompt shows only its heading: [`ask`] shows each question.
fn describe(prompt: &AgentEventKind) -> String {
    match prompt {
        AgentEventKind::Permission { tool_name, summary, input, .. } => {
            let mut text = format!("[permission] {tool_name}: {summary}\n");
            // What these three do is in their summary; for other tools the input says what they touch.
            if !matches!(tool_name.as_str(), "Bash" | "Write" | "Edit") {
                text.push_str(&format!("  input: {}\n", compact(&input.to_string(), 300)));
            }
            text.push_str("Allow? [y/N] ");
            text
        }
        AgentEventKind::Plan { plan, .. } => {
            let plan = plan.trim_end();
            let plan = if plan.is_empty() { "(the agent sent no plan text)" } else { plan };
            format!("[plan] The agent wants to leave plan mode and go ahead with:\n{plan}\nApprove the plan? [y/N] ")
        }
        AgentEventKind::Question { questions, .. } => {
            let plural = if questions.len() == 1 { "a question" } else { "questions" };
            format!("[question] The agent asks {plural}:\n")
        }
        _ => String::new(),
    }
}

/// One question with its numbered options, and how to answer.
fn ask(question: &Question) -> String {
    let mut text = match &question.header {
        Some(header) if !header.is_empty() => format!("{header}: {}\n", question.question),
        _ => format!("{}\n", question.question),
    };
    for (n, option) in question.options.iter().enumerate() {
        match &option.description {
            Some(description) if !description.is_empty() => {
                text.push_str(&format!("  {}. {} ({description})\n", n + 1, option.label));
            }
            _ => text.push_str(&format!("  {}. {}\n", n + 1, option.label)),
        }
    }
    text.push_str(if question.multi_select {
        "Answer with numbers separated by commas, or in your own words: "
    } else {
        "Answer with a number, or in your own words: "
    });
    text
}

/// `y`/`yes` allows; anything else denies, and `n REASON` (or `no REASON`) denies with that reason.
fn yes_or_no(line: &str) -> (Decision, Option<String>) {
    let line = line.trim();
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    match word.to_ascii_lowercase().as_str() {
        "y" | "yes" => (Decision::Allow, None),
        "n" | "no" if !rest.trim().is_empty() => (Decision::Deny, Some(rest.trim().to_string())),
        _ => (Decision::Deny, None),
    }
}

/// The label a line picks: an option's number (numbers separated by commas when several may be chosen),
/// or the text itself as a free answer, also when its numbers fit no option. `None` for an empty line.
fn pick(question: &Question, line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    Some(question.chosen(line).ok().flatten().unwrap_or_else(|| line.to_string()))
}

/// Why a prompt being asked went away before it was answered here.
fn closed_elsewhere(resolution: PromptResolution) -> &'static str {
    match resolution {
        PromptResolution::Allowed => "answered elsewhere, on your phone say: allowed",
        PromptResolution::Denied => "answered elsewhere, on your phone say: denied",
        PromptResolution::TimedOut => "nobody answered in time: denied",
        PromptResolution::Withdrawn => "the agent no longer asks",
    }
}

/// `text` on one line, cut to `max` characters.
fn compact(text: &str, max: usize) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    ellipsize(&one_line, max)
}

/// Ctrl-C, watched from the start of the turn to its end: each press is seen once, none is lost between
/// two waits.
struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
    #[cfg(windows)]
    signal: tokio::signal::windows::CtrlC,
}

impl Interrupts {
    fn new() -> std::io::Result<Interrupts> {
        #[cfg(unix)]
        let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        #[cfg(windows)]
        let signal = tokio::signal::windows::ctrl_c()?;
        Ok(Interrupts { signal })
    }

    async fn recv(&mut self) {
        if self.signal.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_kit::protocol::QuestionOption;
    use serde_json::json;

    fn question(multi_select: bool) -> Question {
        Question {
            question: "Which color?".into(),
            header: Some("Color".into()),
            options: ["Red", "Blue", "Green"]
                .map(|label| QuestionOption { label: label.into(), description: None })
                .to_vec(),
            multi_select,
        }
    }

    #[test]
    fn yes_allows_and_a_reason_goes_with_no() {
        assert_eq!(yes_or_no("y\n"), (Decision::Allow, None));
        assert_eq!(yes_or_no(" YES "), (Decision::Allow, None));
        assert_eq!(yes_or_no(""), (Decision::Deny, None));
        assert_eq!(yes_or_no("n"), (Decision::Deny, None));
        assert_eq!(yes_or_no("n not now"), (Decision::Deny, Some("not now".into())));
        assert_eq!(yes_or_no("no  use make instead "), (Decision::Deny, Some("use make instead".into())));
        assert_eq!(yes_or_no("maybe later"), (Decision::Deny, None));
    }

    #[test]
    fn numbers_pick_options_and_other_text_is_a_free_answer() {
        assert_eq!(pick(&question(false), "2"), Some("Blue".into()));
        assert_eq!(pick(&question(false), "4"), Some("4".into()));
        assert_eq!(pick(&question(false), "0"), Some("0".into()));
        assert_eq!(pick(&question(false), " teal please "), Some("teal please".into()));
        assert_eq!(pick(&question(false), "  "), None);
        assert_eq!(pick(&question(true), "1, 3"), Some("Red, Green".into()));
        assert_eq!(pick(&question(true), "1, teal"), Some("1, teal".into()));
    }

    #[test]
    fn prompts_read_as_questions() {
        let bash = AgentEventKind::Permission {
            request_id: "p".into(),
            tool_name: "Bash".into(),
            summary: "Run `make`".into(),
            input: json!({"command": "make"}),
            tool_use_id: None,
            expires_at_ms: 0,
        };
        assert_eq!(describe(&bash), "[permission] Bash: Run `make`\nAllow? [y/N] ");
        let fetch = AgentEventKind::Permission {
            request_id: "p".into(),
            tool_name: "WebFetch".into(),
            summary: "Fetch example.com".into(),
            input: json!({"url": "https://example.com"}),
            tool_use_id: None,
            expires_at_ms: 0,
        };
        assert!(describe(&fetch).contains("  input: {\"url\":\"https://example.com\"}\n"), "{}", describe(&fetch));
        let asked = ask(&question(false));
        assert!(asked.starts_with("Color: Which color?\n  1. Red\n  2. Blue\n"), "{asked}");
        assert_eq!(compact("a\nb", 10), "a b");
        assert_eq!(compact("ééééé", 3), "ééé…");
    }

    #[test]
    fn images_are_typed_by_their_first_bytes() {
        assert_eq!(media_type(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(media_type(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(media_type(b"GIF89a.."), Some("image/gif"));
        assert_eq!(media_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(media_type(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(media_type(b"%PDF-1.7"), None);
        let dir = tempfile::tempdir().unwrap();
        let pdf = dir.path().join("notes.pdf");
        std::fs::write(&pdf, b"%PDF-1.7").unwrap();
        let refused = images(std::slice::from_ref(&pdf)).unwrap_err().to_string();
        assert!(refused.contains("notes.pdf") && refused.contains("not a PNG"), "{refused}");
        let gif = dir.path().join("dot.gif");
        std::fs::write(&gif, b"GIF89a\x01\x00\x01\x00").unwrap();
        let sent = images(std::slice::from_ref(&gif)).unwrap();
        assert_eq!(sent[0].media_type, "image/gif");
        assert_eq!(BASE64.decode(sent[0].data.as_bytes()).unwrap(), b"GIF89a\x01\x00\x01\x00");
    }
}
