//! Entry points for the fuzz targets in `fuzz/`, not an API: the gateway's parsers of what reaches it from
//! the bridge (every method's params, a stranger's pairing dialogue among them) and from a browser (the
//! console's requests), run as the gateway runs them.

use node_kit::protocol::ErrorShape;
use serde_json::Value;

pub use crate::console::{RequestRead, read_request};

/// Parses a request's method and params as the dispatcher does before anything runs; the method's name.
pub fn method(name: &str, params: Value) -> Result<&'static str, ErrorShape> {
    crate::methods::Method::parse(name, params).map(|method| method.name())
}
