//! Node commands: the values of `node.invoke.command`, their params and results.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Command names.
pub mod command {
    pub const SCREEN_SHOW: &str = "screen.show";
    pub const SCREEN_HIDE: &str = "screen.hide";
    pub const SCREEN_NAVIGATE: &str = "screen.navigate";
    pub const SCREEN_EVAL: &str = "screen.eval";
    pub const SCREEN_SNAPSHOT: &str = "screen.snapshot";
    pub const SCREEN_SET_MODE: &str = "screen.setMode";
}

/// The capability a node must grant for `screen.*` commands.
pub const SCREEN_CAPABILITY: &str = "screen";

/// A node command with typed params. Parsing one checks the params before they reach a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", content = "params")]
pub enum NodeCommand {
    #[serde(rename = "screen.show")]
    ScreenShow(Empty),
    #[serde(rename = "screen.hide")]
    ScreenHide(Empty),
    #[serde(rename = "screen.navigate")]
    ScreenNavigate(NavigateParams),
    #[serde(rename = "screen.eval")]
    ScreenEval(EvalParams),
    #[serde(rename = "screen.snapshot")]
    ScreenSnapshot(SnapshotParams),
    #[serde(rename = "screen.setMode")]
    ScreenSetMode(SetModeParams),
}

impl NodeCommand {
    /// Every command name this protocol version defines.
    pub const ALL: &'static [&'static str] = &[
        command::SCREEN_SHOW,
        command::SCREEN_HIDE,
        command::SCREEN_NAVIGATE,
        command::SCREEN_EVAL,
        command::SCREEN_SNAPSHOT,
        command::SCREEN_SET_MODE,
    ];

    /// Parses `command` + `params`. `Ok(None)` means the name is not a protocol command (a node may offer
    /// its own); `Err` means a protocol command with bad params. Null params count as `{}`.
    pub fn parse(command: &str, params: &Value) -> Result<Option<NodeCommand>, String> {
        if !Self::ALL.contains(&command) {
            return Ok(None);
        }
        let params = if params.is_null() { Value::Object(Default::default()) } else { params.clone() };
        let tagged = serde_json::json!({ "command": command, "params": params });
        serde_json::from_value(tagged).map(Some).map_err(|e| format!("invalid params for {command}: {e}"))
    }

    /// The command's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            NodeCommand::ScreenShow(_) => command::SCREEN_SHOW,
            NodeCommand::ScreenHide(_) => command::SCREEN_HIDE,
            NodeCommand::ScreenNavigate(_) => command::SCREEN_NAVIGATE,
            NodeCommand::ScreenEval(_) => command::SCREEN_EVAL,
            NodeCommand::ScreenSnapshot(_) => command::SCREEN_SNAPSHOT,
            NodeCommand::ScreenSetMode(_) => command::SCREEN_SET_MODE,
        }
    }

    /// The capability a node must have granted for this command.
    pub fn capability(name: &str) -> Option<&'static str> {
        name.starts_with("screen.").then_some(SCREEN_CAPABILITY)
    }
}

/// Params of commands that take none; unknown fields are refused so typos surface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NavigateParams {
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvalParams {
    pub java_script: String,
}

/// Result of `screen.eval`: the value the script evaluated to, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub result: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Jpeg,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_width: Option<u32>,
    /// JPEG quality, 1–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ImageFormat>,
}

/// Result of `screen.snapshot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotResult {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    /// The image bytes, base64 (standard alphabet, padded).
    pub base64: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScreenMode {
    Canvas,
    Web,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetModeParams {
    pub mode: ScreenMode,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_known_commands_and_checks_params() {
        assert_eq!(
            NodeCommand::parse("screen.navigate", &json!({"url": "https://example.org"})).unwrap(),
            Some(NodeCommand::ScreenNavigate(NavigateParams { url: "https://example.org".into() }))
        );
        assert_eq!(NodeCommand::parse("screen.show", &Value::Null).unwrap(), Some(NodeCommand::ScreenShow(Empty {})));
        assert!(NodeCommand::parse("screen.eval", &json!({"js": "1"})).is_err());
        assert!(NodeCommand::parse("screen.setMode", &json!({"mode": "tv"})).is_err());
        assert_eq!(NodeCommand::parse("lamp.on", &json!({})).unwrap(), None);
        let params = |name: &str| match name {
            command::SCREEN_NAVIGATE => json!({"url": "https://example.org"}),
            command::SCREEN_EVAL => json!({"javaScript": "1"}),
            command::SCREEN_SET_MODE => json!({"mode": "web"}),
            _ => json!({}),
        };
        for name in NodeCommand::ALL {
            assert_eq!(NodeCommand::parse(name, &params(name)).unwrap().unwrap().name(), *name);
        }
    }

    #[test]
    fn screen_commands_need_the_screen_capability() {
        assert_eq!(NodeCommand::capability("screen.snapshot"), Some(SCREEN_CAPABILITY));
        assert_eq!(NodeCommand::capability("lamp.on"), None);
    }
}
