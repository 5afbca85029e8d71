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

/// Without `RUST_LOG`: INFO, but the MCP library only from WARN (at INFO and DEBUG it dumps every
/// `initialize` request claude sends).
const DEFAULT_SPEC: &str = "info,rmcp=warn";

/// Logs to stderr at `RUST_LOG` (default [`DEFAULT_SPEC`]).
pub fn init() {
    init_with_writer(std::io::stderr);
}

/// Logs through `writer` (one formatted line a write) at `RUST_LOG` (default [`DEFAULT_SPEC`]).
pub fn init_with_writer<W>(writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_SPEC.into());
    tracing_subscriber::fmt().with_env_filter(filter(&spec)).with_writer(writer).init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn by_default_the_mcp_library_logs_only_warnings() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter(DEFAULT_SPEC))
            .with_writer(move || SharedBuffer(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "rmcp::service", "initialize request dumped");
            tracing::warn!(target: "rmcp::service", "mcp warning kept");
            tracing::info!(target: "gateway::server", "gateway line kept");
        });
        let written = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert!(!written.contains("initialize request dumped"), "{written}");
        assert!(written.contains("mcp warning kept") && written.contains("gateway line kept"), "{written}");
    }

    struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
