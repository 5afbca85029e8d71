//! Log setup shared by every Lanyard binary. Logs carry IDs, methods and sizes, never prompt text,
//! transcripts, tokens or keys; the WebSocket library logs whole frames at TRACE, so it is capped here
//! whatever `RUST_LOG` asks for.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

/// Targets that would print frame payloads (prompts, tokens) at their most verbose levels.
const PAYLOAD_LOGGING_TARGETS: &[&str] = &["tungstenite", "tokio_tungstenite"];

/// The filter from `spec` (a `RUST_LOG`-style string) with payload-printing targets capped at INFO.
pub fn filter(spec: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info"));
    for target in PAYLOAD_LOGGING_TARGETS {
        let directive: Directive = format!("{target}=info").parse().expect("a valid directive");
        filter = filter.add_directive(directive);
    }
    filter
}

/// Logs to stderr at `RUST_LOG` (default INFO).
pub fn init() {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter(&spec)).with_writer(std::io::stderr).init();
}
