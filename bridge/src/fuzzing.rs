//! Entry points for the fuzz targets in `fuzz/`, not an API: the bridge's parsers of what the relay sends
//! it, run as the bridge runs them.

pub use crate::tunnel::frames::MAX_REASON;
use crate::tunnel::frames::StreamFrame;
use tokio_tungstenite::tungstenite::Bytes;

/// Decodes one binary message of the relay link as the link does. For a frame the bridge also writes
/// (`DATA`, `CLOSE`) the answer is that frame as the bridge would write it; for an `OPEN` (the relay's
/// alone), `None`.
pub fn relay_frame(message: &[u8]) -> Result<Option<Vec<u8>>, String> {
    match StreamFrame::decode(&Bytes::copy_from_slice(message)).map_err(|e| e.to_string())? {
        StreamFrame::Open { .. } => Ok(None),
        frame => Ok(Some(frame.encode())),
    }
}
