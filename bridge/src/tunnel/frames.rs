//! The relay link's messages (`docs/relay.md`): JSON control messages as text, stream traffic as binary
//! frames `[kind u8][stream u32 BE][body]`.

use crate::sealed::Route;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Bytes;

/// The largest `DATA` body either side may send.
pub(crate) const MAX_DATA: usize = 65536;
/// The longest `CLOSE` reason (a WebSocket close reason's limit).
pub const MAX_REASON: usize = 123;

const OPEN: u8 = 1;
const DATA: u8 = 2;
const CLOSE: u8 = 3;

/// Text messages of the link: the bridge's token set is the only one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Control {
    Tokens { set: Vec<String> },
}

/// Binary frames of the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamFrame {
    /// A node opened a stream with the token whose hash is given: its TLS bytes, or, for a simple client,
    /// one HTTP request to `http`.
    Open {
        stream: u32,
        token_hash: [u8; 32],
        http: Option<Route>,
    },
    Data {
        stream: u32,
        bytes: Bytes,
    },
    Close {
        stream: u32,
        reason: String,
    },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed relay frame: {0}")]
pub(crate) struct FrameError(&'static str);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenBody {
    token_hash: String,
    #[serde(default)]
    http: Option<Route>,
}

impl StreamFrame {
    /// Decodes a link message; a `DATA` body is a view of `bytes`, not a copy.
    pub(crate) fn decode(bytes: &Bytes) -> Result<StreamFrame, FrameError> {
        let (&kind, rest) = bytes.split_first().ok_or(FrameError("empty"))?;
        let (id, body) = rest.split_at_checked(4).ok_or(FrameError("shorter than its header"))?;
        let stream = u32::from_be_bytes(id.try_into().expect("four bytes"));
        match kind {
            OPEN => {
                let open: OpenBody = serde_json::from_slice(body).map_err(|_| FrameError("OPEN body is not JSON"))?;
                Ok(StreamFrame::Open { stream, token_hash: parse_hash(&open.token_hash)?, http: open.http })
            }
            DATA if body.is_empty() => Err(FrameError("empty DATA")),
            DATA if body.len() > MAX_DATA => Err(FrameError("oversize DATA")),
            DATA => Ok(StreamFrame::Data { stream, bytes: bytes.slice(5..) }),
            CLOSE => {
                let reason = std::str::from_utf8(body).map_err(|_| FrameError("CLOSE reason is not UTF-8"))?;
                Ok(StreamFrame::Close { stream, reason: reason.to_string() })
            }
            _ => Err(FrameError("unknown kind")),
        }
    }

    /// Frames the bridge sends; an `OPEN` is the object's alone and a `CLOSE` reason is cut to the limit.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let (kind, stream, body): (u8, u32, &[u8]) = match self {
            StreamFrame::Open { .. } => unreachable!("only the relay object opens streams"),
            StreamFrame::Data { stream, bytes } => (DATA, *stream, bytes),
            StreamFrame::Close { stream, reason } => (CLOSE, *stream, cut(reason, MAX_REASON).as_bytes()),
        };
        let mut out = Vec::with_capacity(5 + body.len());
        out.push(kind);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(body);
        out
    }
}

/// 64 lowercase hex characters, as the relay writes token hashes.
pub(crate) fn parse_hash(hex: &str) -> Result<[u8; 32], FrameError> {
    let bad = FrameError("token hash is not 64 lowercase hex characters");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad);
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| FrameError("bad hex"))?;
    }
    Ok(out)
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_malformed_ones_are_refused() {
        let data = StreamFrame::Data { stream: 7, bytes: Bytes::from_static(&[1, 2, 3]) };
        assert_eq!(StreamFrame::decode(&data.encode().into()).unwrap(), data);
        let close = StreamFrame::Close { stream: 0x0102_0304, reason: "é".repeat(100) };
        let encoded = close.encode();
        assert_eq!(&encoded[..5], &[3, 1, 2, 3, 4]);
        assert!(encoded.len() - 5 <= MAX_REASON);
        assert!(matches!(
            StreamFrame::decode(&encoded.clone().into()).unwrap(),
            StreamFrame::Close { stream: 0x0102_0304, .. }
        ));

        let hash = "ab".repeat(32);
        let open = [&[1, 0, 0, 0, 9][..], format!("{{\"tokenHash\":\"{hash}\"}}").as_bytes()].concat();
        assert_eq!(
            StreamFrame::decode(&open.into()).unwrap(),
            StreamFrame::Open { stream: 9, token_hash: [0xab; 32], http: None }
        );
        let http =
            [&[1, 0, 0, 0, 9][..], format!("{{\"tokenHash\":\"{hash}\",\"http\":\"pair/start\"}}").as_bytes()].concat();
        let decoded = StreamFrame::decode(&http.into()).unwrap();
        assert_eq!(decoded, StreamFrame::Open { stream: 9, token_hash: [0xab; 32], http: Some(Route::PairStart) });
        let unknown =
            [&[1, 0, 0, 0, 9][..], format!("{{\"tokenHash\":\"{hash}\",\"http\":\"admin\"}}").as_bytes()].concat();
        assert!(matches!(
            StreamFrame::decode(&unknown.into()).unwrap(),
            StreamFrame::Open { http: Some(Route::Unknown), .. }
        ));

        for bad in [
            &[][..],
            &[2, 0, 0][..],
            &[2, 0, 0, 0, 1][..],
            &[9, 0, 0, 0, 1, 0][..],
            &[3, 0, 0, 0, 1, 0xff][..],
            &[1, 0, 0, 0, 1, b'{', b'}'][..],
        ] {
            assert!(StreamFrame::decode(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
        assert!(StreamFrame::decode(&[&[2, 0, 0, 0, 1][..], &vec![0; MAX_DATA + 1]].concat().into()).is_err());
        assert!(parse_hash(&"AB".repeat(32)).is_err());
        assert!(parse_hash("ab").is_err());
    }

    #[test]
    fn control_messages_match_the_contract() {
        let tokens = serde_json::to_string(&Control::Tokens { set: vec!["x".into()] }).unwrap();
        assert_eq!(tokens, r#"{"type":"tokens","set":["x"]}"#);
    }
}
