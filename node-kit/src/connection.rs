//! A WebSocket carrying frames: the reading half yields typed frames (or says why a message was not one),
//! the writing half sends them. Split so one task can read while another writes, as the gateway and the
//! client both need. The same halves read and write an in-process [`link`](crate::link), so one
//! connection's code serves a socket and a link alike.

use crate::link::{self, LinkEnd};
use crate::protocol::{ErrorCode, ErrorShape, Frame, FrameError};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

/// Bytes read from the transport at a time. tungstenite zero-fills its read buffer up to this size before
/// every read, so its 128 KiB default cost tens of microseconds per frame and a large buffer per idle
/// connection; nearly every frame is far smaller, and a large one grows the buffer only while it lasts.
const READ_CHUNK_BYTES: usize = 2 * 1024;
/// Outgoing bytes gathered before a write; every send flushes anyway.
const WRITE_CHUNK_BYTES: usize = 8 * 1024;

/// WebSocket settings that enforce the frame limit inside the WebSocket layer, before a large message is
/// buffered (a fragmented message counts as a whole), with buffers sized for small frames.
pub fn websocket_config(max_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_frame_bytes))
        .max_frame_size(Some(max_frame_bytes))
        .read_buffer_size(READ_CHUNK_BYTES)
        .write_buffer_size(WRITE_CHUNK_BYTES)
}

/// What the reading half saw: a [`Frame`], or what [`FrameReader::next_as`] was asked to read of one.
#[derive(Debug)]
pub enum Incoming<F = Frame> {
    Frame(F),
    /// A text that is not a valid frame; the connection is still usable.
    Invalid(FrameError),
    /// A message over the size limit. The WebSocket cannot resynchronise after this: close it.
    TooLarge(ErrorShape),
    /// A ping or pong: the peer is alive.
    Heartbeat,
    /// The peer closed or the transport failed.
    Closed(Option<String>),
}

/// The reading half of a WebSocket over `S`, or of an in-process link (which fits any `S`).
pub struct FrameReader<S> {
    stream: Receiving<S>,
    /// The last text message read, as it arrived: a relay forwards it and size-checks it without
    /// serialising the parsed frame again.
    last_text: Utf8Bytes,
}

/// The writing half of a WebSocket over `S`, or of an in-process link.
pub struct FrameWriter<S> {
    sink: Sending<S>,
}

enum Receiving<S> {
    WebSocket(SplitStream<WebSocketStream<S>>),
    Link(link::Receiving),
}

enum Sending<S> {
    WebSocket(SplitSink<WebSocketStream<S>, Message>),
    Link(link::Sending),
}

/// Splits a WebSocket into its frame reader and writer.
pub fn split<S>(ws: WebSocketStream<S>) -> (FrameReader<S>, FrameWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sink, stream) = ws.split();
    (FrameReader::new(Receiving::WebSocket(stream)), FrameWriter { sink: Sending::WebSocket(sink) })
}

/// Splits an in-process link into a frame reader and writer, with the frame limit a WebSocket gets from
/// [`websocket_config`].
pub fn split_link<S>(end: LinkEnd, max_frame_bytes: usize) -> (FrameReader<S>, FrameWriter<S>) {
    let (stream, sink) = end.split(max_frame_bytes);
    (FrameReader::new(Receiving::Link(stream)), FrameWriter { sink: Sending::Link(sink) })
}

/// Puts a split WebSocket back together (to change its settings once a peer is known). Only a
/// WebSocket's halves go back together: a link has no settings to change.
pub fn reunite<S>(reader: FrameReader<S>, writer: FrameWriter<S>) -> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match (reader.stream, writer.sink) {
        (Receiving::WebSocket(stream), Sending::WebSocket(sink)) => {
            stream.reunite(sink).expect("the two halves of one split")
        }
        _ => panic!("only the two halves of one WebSocket go back together"),
    }
}

impl<S> FrameReader<S> {
    fn new(stream: Receiving<S>) -> FrameReader<S> {
        FrameReader { stream, last_text: Utf8Bytes::default() }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameReader<S> {
    /// The last text message [`FrameReader::next`] returned, byte for byte (cloning it is cheap).
    pub fn last_text(&self) -> &Utf8Bytes {
        &self.last_text
    }

    /// Waits for the next message and classifies it.
    pub async fn next(&mut self) -> Incoming {
        self.next_as(Frame::parse).await
    }

    /// [`FrameReader::next`], reading each text with `parse`: a relay that passes frames on as they arrived
    /// reads only their [`FrameHead`](crate::protocol::FrameHead).
    pub async fn next_as<F>(&mut self, parse: impl FnOnce(&str) -> Result<F, FrameError>) -> Incoming<F> {
        let message = match &mut self.stream {
            Receiving::WebSocket(stream) => stream.next().await,
            Receiving::Link(stream) => stream.next().await,
        };
        match message {
            None => Incoming::Closed(None),
            Some(Ok(Message::Text(text))) => {
                let parsed = parse(text.as_str());
                self.last_text = text;
                match parsed {
                    Ok(frame) => Incoming::Frame(frame),
                    Err(error) => Incoming::Invalid(error),
                }
            }
            Some(Ok(Message::Binary(_))) => Incoming::Invalid(FrameError {
                request_id: None,
                error: ErrorShape::invalid_request("binary messages are not part of the protocol; send JSON text"),
            }),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Incoming::Heartbeat,
            Some(Ok(Message::Close(frame))) => Incoming::Closed(frame.map(|f| f.reason.to_string())),
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                Incoming::TooLarge(too_large(size, max_size))
            }
            Some(Err(e)) => Incoming::Closed(Some(e.to_string())),
        }
    }
}

fn too_large(size: usize, max_size: usize) -> ErrorShape {
    ErrorShape::new(ErrorCode::PayloadTooLarge, format!("frame of {size} bytes exceeds the limit of {max_size} bytes"))
        .with_details(serde_json::json!({ "size": size, "maxFrameBytes": max_size }))
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameWriter<S> {
    pub async fn send(&mut self, frame: &Frame) -> Result<(), WsError> {
        self.send_message(Message::text(frame.to_text())).await
    }

    /// Sends a frame already in its wire form (a checked frame being relayed).
    pub async fn send_text(&mut self, text: Utf8Bytes) -> Result<(), WsError> {
        self.send_message(Message::Text(text)).await
    }

    pub async fn send_message(&mut self, message: Message) -> Result<(), WsError> {
        match &mut self.sink {
            Sending::WebSocket(sink) => sink.send(message).await,
            Sending::Link(sink) => sink.send(message).await,
        }
    }

    /// Sends a close frame with a reason and flushes; errors are ignored because the peer may be gone.
    pub async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame { code, reason: reason.to_owned().into() };
        let _ = self.send_message(Message::Close(Some(frame))).await;
        match &mut self.sink {
            Sending::WebSocket(sink) => {
                let _ = sink.close().await;
            }
            Sending::Link(sink) => sink.close(),
        }
    }
}
