//! `console.login` (operators): a one-time link that logs a browser in to the console (`lanyard open`).
//! The link's token works once and for two minutes; the browser keeps a session cookie instead.

use super::Context;
use node_kit::protocol::{ConsoleLogin, ErrorCode, ErrorShape};
use serde_json::Value;

pub(crate) struct ConsoleLoginMethod;

impl ConsoleLoginMethod {
    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let Some(base) = ctx.state.console_url.get() else {
            return Err(ErrorShape::new(
                ErrorCode::NotFound,
                "this gateway serves no console (start it with `lanyard up`, which does)",
            ));
        };
        let token = ctx.state.console.login_token();
        let expires_at_ms = crate::now_ms() + crate::console::auth::LOGIN_TTL.as_millis() as u64;
        tracing::info!("console login link issued");
        let login = ConsoleLogin { url: format!("{base}/login?token={token}"), expires_at_ms };
        Ok(serde_json::to_value(login).expect("payloads serialise"))
    }
}
