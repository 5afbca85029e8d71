//! claude's `can_use_tool` requests (CLAUDE-CLI.md §1, §3, §4) as prompts a person answers, and their
//! answers as the `control_response` claude takes. Three kinds, told apart by the tool: AskUserQuestion is
//! a question, ExitPlanMode a plan, anything else a tool permission.

use node_kit::protocol::{
    AgentEventKind, Decision, ErrorCode, ErrorShape, MAX_RESPONSE_TEXT_LEN, PromptResolution, Question, RespondParams,
    check_len, ellipsize,
};
use serde_json::{Value, json};
use std::time::Duration;

/// What a `can_use_tool` request asks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Prompt {
    pub request_id: String,
    pub kind: PromptKind,
    pub tool_name: String,
    /// The tool's input as claude sent it; echoed back on allow.
    pub input: Value,
    pub tool_use_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PromptKind {
    Permission,
    Question(Vec<Question>),
    Plan(String),
}

/// Who answers: a node may approve what the agent asked, never change what a tool runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Responder {
    Node,
    Operator,
}

const ASK_USER_QUESTION: &str = "AskUserQuestion";
const EXIT_PLAN_MODE: &str = "ExitPlanMode";
/// Longest summary line.
const MAX_SUMMARY_CHARS: usize = 200;

impl Prompt {
    /// Reads a `can_use_tool` request (`request` is its `request` object).
    pub(crate) fn from_request(request_id: &str, request: &Value) -> Prompt {
        let tool_name = request["tool_name"].as_str().unwrap_or_default().to_string();
        let input = request.get("input").cloned().unwrap_or_else(|| json!({}));
        let kind = match tool_name.as_str() {
            ASK_USER_QUESTION => {
                PromptKind::Question(serde_json::from_value(input["questions"].clone()).unwrap_or_default())
            }
            // 2.1.332 may send `input: {}` when no plan file was written: the plan is then unknown.
            EXIT_PLAN_MODE => PromptKind::Plan(input["plan"].as_str().unwrap_or_default().to_string()),
            _ => PromptKind::Permission,
        };
        Prompt {
            request_id: request_id.to_string(),
            kind,
            tool_use_id: request["tool_use_id"].as_str().map(str::to_string),
            tool_name,
            input,
        }
    }

    /// The event that carries the prompt to the session's party.
    pub(crate) fn event(&self, expires_at_ms: u64) -> AgentEventKind {
        let request_id = self.request_id.clone();
        match &self.kind {
            PromptKind::Permission => AgentEventKind::Permission {
                request_id,
                tool_name: self.tool_name.clone(),
                summary: summary(&self.tool_name, &self.input),
                input: self.input.clone(),
                tool_use_id: self.tool_use_id.clone(),
                expires_at_ms,
            },
            PromptKind::Question(questions) => {
                AgentEventKind::Question { request_id, questions: questions.clone(), expires_at_ms }
            }
            PromptKind::Plan(plan) => AgentEventKind::Plan { request_id, plan: plan.clone(), expires_at_ms },
        }
    }

    /// The `response` of the `control_response` for `answer`, and how the prompt ends; refused (and the
    /// prompt left open) when the answer does not fit the prompt or the responder may not give it.
    pub(crate) fn answer(
        &self,
        answer: &RespondParams,
        responder: Responder,
    ) -> Result<(Value, PromptResolution), ErrorShape> {
        if let Some(message) = &answer.message {
            check_len("message", message, MAX_RESPONSE_TEXT_LEN)?;
        }
        if answer.decision == Decision::Deny {
            let message = answer.message.clone().unwrap_or_else(|| self.default_denial().to_string());
            return Ok((json!({ "behavior": "deny", "message": message }), PromptResolution::Denied));
        }
        let updated_input = match &self.kind {
            PromptKind::Permission => match &answer.updated_input {
                Some(_) if responder == Responder::Node => {
                    return Err(ErrorShape::new(
                        ErrorCode::Forbidden,
                        "a node may allow or deny a tool, not change its input",
                    ));
                }
                Some(input) if input.is_object() => input.clone(),
                Some(_) => return Err(ErrorShape::invalid_request("updatedInput must be an object")),
                None => self.input.clone(),
            },
            PromptKind::Question(questions) => self.answered(questions, answer)?,
            // An edited plan is what the person approved.
            PromptKind::Plan(_) => match &answer.updated_input {
                Some(Value::Object(edit)) => {
                    let mut input = self.input.clone();
                    if let (Some(target), Some(plan)) = (input.as_object_mut(), edit.get("plan")) {
                        let plan = plan.as_str().ok_or_else(|| ErrorShape::invalid_request("plan must be text"))?;
                        check_len("plan", plan, MAX_RESPONSE_TEXT_LEN)?;
                        target.insert("plan".into(), plan.into());
                    }
                    input
                }
                Some(_) => return Err(ErrorShape::invalid_request("updatedInput must be an object")),
                None => self.input.clone(),
            },
        };
        Ok((json!({ "behavior": "allow", "updatedInput": updated_input }), PromptResolution::Allowed))
    }

    /// The question's input with the answers added (claude reads `updatedInput.answers`).
    fn answered(&self, questions: &[Question], answer: &RespondParams) -> Result<Value, ErrorShape> {
        let answers =
            answer.answers.as_ref().filter(|a| !a.is_empty()).ok_or_else(|| {
                ErrorShape::invalid_request("a question is allowed with answers (question text → label)")
            })?;
        for (question, label) in answers {
            if !questions.iter().any(|q| &q.question == question) {
                return Err(ErrorShape::invalid_request(format!("the agent did not ask {question:?}"))
                    .with_details(json!({ "questions": questions.iter().map(|q| &q.question).collect::<Vec<_>>() })));
            }
            check_len("answer", label, MAX_RESPONSE_TEXT_LEN)?;
        }
        let mut input = self.input.clone();
        if let Some(object) = input.as_object_mut() {
            object.insert("answers".into(), json!(answers));
        }
        Ok(input)
    }

    fn default_denial(&self) -> &'static str {
        match self.kind {
            PromptKind::Permission => "The user denied this tool use from their device.",
            PromptKind::Question(_) => "The user declined to answer.",
            PromptKind::Plan(_) => "The user rejected the plan.",
        }
    }

    /// The denial claude gets when nobody answered within `waited`.
    pub(crate) fn expired(&self, waited: Duration) -> Value {
        let minutes = waited.as_secs().div_ceil(60);
        let what = match self.kind {
            PromptKind::Permission => format!("permission to use {}", self.tool_name),
            PromptKind::Question(_) => "the question".to_string(),
            PromptKind::Plan(_) => "the plan".to_string(),
        };
        let message = format!(
            "Nobody answered the request for {what} within {minutes} minute{}, so it was denied. Do not retry it \
             now; tell the user what you were waiting for.",
            if minutes == 1 { "" } else { "s" }
        );
        json!({ "behavior": "deny", "message": message })
    }
}

/// One line a person can read before approving: what the tool would do.
pub(crate) fn summary(tool_name: &str, input: &Value) -> String {
    let field = |key: &str| input[key].as_str().unwrap_or_default();
    let line = match tool_name {
        "Bash" => {
            let description = field("description");
            if description.is_empty() {
                format!("Run `{}`", field("command"))
            } else {
                format!("Run `{}` ({description})", field("command"))
            }
        }
        "Write" => format!("Write {}", field("file_path")),
        "Edit" | "MultiEdit" => format!("Edit {}", field("file_path")),
        "NotebookEdit" => format!("Edit the notebook {}", field("notebook_path")),
        "WebFetch" => format!("Fetch {}", field("url")),
        "WebSearch" => format!("Search the web for {:?}", field("query")),
        ASK_USER_QUESTION => "Ask you a question".to_string(),
        EXIT_PLAN_MODE => "Leave plan mode and start on the plan".to_string(),
        other => match other.strip_prefix("mcp__").and_then(|rest| rest.split_once("__")) {
            Some((server, tool)) => format!("Use the {tool} tool of {server}"),
            None => format!("Use {other}"),
        },
    };
    ellipsize(&line, MAX_SUMMARY_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tool: &str, input: Value) -> Prompt {
        Prompt::from_request(
            "r1",
            &json!({"subtype": "can_use_tool", "tool_name": tool, "input": input, "tool_use_id": "t1"}),
        )
    }

    #[test]
    fn kinds_and_summaries() {
        let bash = request("Bash", json!({"command": "touch x", "description": "Create x"}));
        assert_eq!(bash.kind, PromptKind::Permission);
        let AgentEventKind::Permission { summary, tool_use_id, .. } = bash.event(5) else { panic!("permission") };
        assert_eq!(summary, "Run `touch x` (Create x)");
        assert_eq!(tool_use_id.as_deref(), Some("t1"));
        assert_eq!(super::summary("mcp__lanyard__screen_show", &json!({})), "Use the screen_show tool of lanyard");
        assert_eq!(super::summary("Write", &json!({"file_path": "/a"})), "Write /a");
        let long = super::summary("Bash", &json!({"command": "x".repeat(500)}));
        assert_eq!(long.chars().count(), MAX_SUMMARY_CHARS + 1);
        let plan = request("ExitPlanMode", json!({"plan": "# Plan"}));
        assert_eq!(plan.kind, PromptKind::Plan("# Plan".into()));
        let ask = request(
            "AskUserQuestion",
            json!({"questions": [{"question": "Color?", "options": [{"label": "Red"}, {"label": "Blue"}]}]}),
        );
        let PromptKind::Question(questions) = &ask.kind else { panic!("question") };
        assert_eq!(questions[0].options[1].label, "Blue");
    }

    #[test]
    fn answers_become_control_responses() {
        let bash = request("Bash", json!({"command": "touch x"}));
        let allow = RespondParams::new("run", "r1", Decision::Allow);
        let (response, resolution) = bash.answer(&allow, Responder::Node).unwrap();
        assert_eq!(response, json!({"behavior": "allow", "updatedInput": {"command": "touch x"}}));
        assert_eq!(resolution, PromptResolution::Allowed);
        let deny = RespondParams::new("run", "r1", Decision::Deny).message("not now");
        assert_eq!(bash.answer(&deny, Responder::Node).unwrap().0, json!({"behavior": "deny", "message": "not now"}));
        let mut edited = allow.clone();
        edited.updated_input = Some(json!({"command": "rm -rf /"}));
        assert_eq!(bash.answer(&edited, Responder::Node).unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(bash.answer(&edited, Responder::Operator).unwrap().0["updatedInput"]["command"], "rm -rf /");
        edited.updated_input = Some(json!("rm -rf /"));
        assert_eq!(bash.answer(&edited, Responder::Operator).unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn a_denial_without_a_reason_says_who_denied_what() {
        let deny = RespondParams::new("run", "r1", Decision::Deny);
        let said = |prompt: Prompt| prompt.answer(&deny, Responder::Node).unwrap().0["message"].clone();
        assert_eq!(said(request("Bash", json!({}))), "The user denied this tool use from their device.");
        assert_eq!(said(request("ExitPlanMode", json!({"plan": "x"}))), "The user rejected the plan.");
        assert_eq!(said(request("AskUserQuestion", json!({"questions": []}))), "The user declined to answer.");
    }

    #[test]
    fn questions_need_answers_to_what_was_asked() {
        let input = json!({"questions": [{"question": "Color?", "options": [{"label": "Red"}]}]});
        let ask = request("AskUserQuestion", input.clone());
        let bare = RespondParams::new("run", "r1", Decision::Allow);
        assert_eq!(ask.answer(&bare, Responder::Node).unwrap_err().code, ErrorCode::InvalidRequest);
        let wrong = bare.clone().answer("Size?", "Big");
        assert_eq!(ask.answer(&wrong, Responder::Node).unwrap_err().code, ErrorCode::InvalidRequest);
        let (response, _) = ask.answer(&bare.answer("Color?", "Red"), Responder::Node).unwrap();
        assert_eq!(response["updatedInput"]["answers"], json!({"Color?": "Red"}));
        assert_eq!(response["updatedInput"]["questions"], input["questions"]);
    }

    #[test]
    fn plans_are_approved_edited_or_rejected_with_a_reason() {
        let plan = request("ExitPlanMode", json!({"plan": "1. a", "planFilePath": "/p.md"}));
        let mut edit = RespondParams::new("run", "r1", Decision::Allow);
        edit.updated_input = Some(json!({"plan": "1. a\n2. tests"}));
        let (response, _) = plan.answer(&edit, Responder::Node).unwrap();
        assert_eq!(response["updatedInput"], json!({"plan": "1. a\n2. tests", "planFilePath": "/p.md"}));
        let reject = RespondParams::new("run", "r1", Decision::Deny).message("add tests first");
        assert_eq!(plan.answer(&reject, Responder::Node).unwrap().0["message"], "add tests first");
        let expired = plan.expired(Duration::from_secs(600));
        assert_eq!(expired["behavior"], "deny");
        assert!(expired["message"].as_str().unwrap().contains("within 10 minutes"));
    }
}
