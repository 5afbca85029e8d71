//! An in-process link: when the bridge and the gateway run in one process (`lanyard up`), a paired node's
//! link to the gateway is a pair of bounded queues instead of a loopback WebSocket. It carries the same
//! messages (JSON text frames, pings, a close with its reason) with the same size limit, read and written
//! through the same [`FrameReader`](crate::connection::FrameReader) and
//! [`FrameWriter`](crate::connection::FrameWriter), so both ends run the code they run over a socket: the
//! `connect` handshake, the token check, every limit. What it saves is the socket pair (two descriptors),
//! the WebSocket framing and both ends' buffers.
//!
//! A [`Connector`] opens links that a [`Listener`] accepts, as a client's socket meets a server's listener.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Messages one direction of a link holds before its writer waits: a reader that falls behind holds up its
/// writer (who drops it after its write-stall time, as over a socket), never a growing queue.
const LINK_QUEUE: usize = 8;
/// Links opened but not yet accepted.
const BACKLOG: usize = 128;

/// One direction of a link: a bounded queue between one writer and one reader. Its buffer holds only
/// what is in flight (a tokio channel keeps a block of 32 slots per direction, over 1.5 KiB, for every
/// idle link).
#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    /// Wakes the reader waiting for a message or for the writer's end.
    readable: Notify,
    /// Wakes the writer waiting for room or for the reader's end.
    writable: Notify,
}

#[derive(Default)]
struct PipeState {
    queue: VecDeque<Message>,
    writer_gone: bool,
    reader_gone: bool,
}

/// What a [`Pipe::try_push`] did with a message.
enum Pushed {
    Queued,
    Full(Message),
    Closed,
}

impl Pipe {
    fn state(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state.lock().expect("a link's lock is never held across a panic")
    }

    fn try_push(&self, message: Message) -> Pushed {
        let mut state = self.state();
        if state.reader_gone || state.writer_gone {
            return Pushed::Closed;
        }
        if state.queue.len() >= LINK_QUEUE {
            return Pushed::Full(message);
        }
        state.queue.push_back(message);
        drop(state);
        self.readable.notify_one();
        Pushed::Queued
    }

    /// Queues a message once there is room. A wake-up sent between a full try and the wait is kept by
    /// the `Notify` (one writer, one reader), so none is lost.
    async fn push(&self, mut message: Message) -> Result<(), WsError> {
        loop {
            match self.try_push(message) {
                Pushed::Queued => return Ok(()),
                Pushed::Closed => return Err(WsError::ConnectionClosed),
                Pushed::Full(back) => message = back,
            }
            self.writable.notified().await;
        }
    }

    /// The next message; `None` once the queue is empty and the writer gone.
    async fn pop(&self) -> Option<Message> {
        loop {
            {
                let mut state = self.state();
                if let Some(message) = state.queue.pop_front() {
                    drop(state);
                    self.writable.notify_one();
                    return Some(message);
                }
                if state.writer_gone {
                    return None;
                }
            }
            self.readable.notified().await;
        }
    }

    fn writer_gone(&self) {
        self.state().writer_gone = true;
        self.readable.notify_one();
    }

    fn reader_gone(&self) {
        let mut state = self.state();
        state.reader_gone = true;
        state.queue.clear();
        drop(state);
        self.writable.notify_one();
    }
}

/// One end of a link. Dropping it, split or not, closes the link for the other end.
pub struct LinkEnd {
    reader: Receiving,
    writer: Sending,
}

/// Two ends joined to each other.
pub fn pair() -> (LinkEnd, LinkEnd) {
    let (a_to_b, b_to_a) = (Arc::new(Pipe::default()), Arc::new(Pipe::default()));
    (LinkEnd::new(a_to_b.clone(), b_to_a.clone()), LinkEnd::new(b_to_a, a_to_b))
}

impl LinkEnd {
    fn new(outgoing: Arc<Pipe>, incoming: Arc<Pipe>) -> LinkEnd {
        let reader = Receiving { incoming, answers: outgoing.clone(), max_message_bytes: usize::MAX };
        LinkEnd { reader, writer: Sending { outgoing } }
    }

    /// The reading and writing halves; the reader refuses messages over `max_message_bytes`, as a
    /// WebSocket configured with that limit does.
    pub(crate) fn split(self, max_message_bytes: usize) -> (Receiving, Sending) {
        let LinkEnd { mut reader, writer } = self;
        reader.max_message_bytes = max_message_bytes;
        (reader, writer)
    }
}

/// The reading half of a link.
pub(crate) struct Receiving {
    incoming: Arc<Pipe>,
    /// Where a ping's pong goes: this end's outgoing direction, while its writer is there.
    answers: Arc<Pipe>,
    max_message_bytes: usize,
}

impl Receiving {
    /// The next message, as a WebSocket stream yields it: `None` once the other end is gone, a capacity
    /// error for a message over the limit. A ping is answered at once, as tungstenite answers it.
    pub(crate) async fn next(&mut self) -> Option<Result<Message, WsError>> {
        let message = self.incoming.pop().await?;
        if let Message::Ping(payload) = &message {
            // A peer whose queue is full is not reading: its own keepalive finds that out.
            let _ = self.answers.try_push(Message::Pong(payload.clone()));
        }
        let size = message.len();
        if size > self.max_message_bytes {
            let too_long = CapacityError::MessageTooLong { size, max_size: self.max_message_bytes };
            return Some(Err(WsError::Capacity(too_long)));
        }
        Some(Ok(message))
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.incoming.reader_gone();
    }
}

/// The writing half of a link.
pub(crate) struct Sending {
    outgoing: Arc<Pipe>,
}

impl Sending {
    /// Queues a message, waiting while the other end's queue is full.
    pub(crate) async fn send(&mut self, message: Message) -> Result<(), WsError> {
        self.outgoing.push(message).await
    }

    /// Ends this direction: the other end reads what was queued, then sees the link closed.
    pub(crate) fn close(&mut self) {
        self.outgoing.writer_gone();
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.outgoing.writer_gone();
    }
}

/// Opens links to a [`Listener`]. Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    opened: mpsc::Sender<LinkEnd>,
}

/// Accepts the links [`Connector`]s open.
pub struct Listener {
    opened: mpsc::Receiver<LinkEnd>,
}

/// A listener and the connector that reaches it.
pub fn listen() -> (Connector, Listener) {
    let (opened, accepted) = mpsc::channel(BACKLOG);
    (Connector { opened }, Listener { opened: accepted })
}

/// The listener is gone: the server stopped.
#[derive(Debug, thiserror::Error)]
#[error("the gateway in this process is not accepting links (it stopped)")]
pub struct NotListening;

impl Connector {
    /// Opens a link and returns this side's end; waits while the listener's backlog is full.
    pub async fn connect(&self) -> Result<LinkEnd, NotListening> {
        let (mine, theirs) = pair();
        self.opened.send(theirs).await.map_err(|_| NotListening)?;
        Ok(mine)
    }
}

impl Listener {
    /// The next link opened, or `None` once every connector is gone.
    pub async fn accept(&mut self) -> Option<LinkEnd> {
        self.opened.recv().await
    }
}

/// Where a client of the gateway finds it: a `ws://` URL on loopback (a gateway in another process), or
/// the gateway in this process.
#[derive(Clone)]
pub enum GatewayConnector {
    WebSocket(String),
    InProcess(Connector),
}

impl From<String> for GatewayConnector {
    fn from(url: String) -> GatewayConnector {
        GatewayConnector::WebSocket(url)
    }
}

impl fmt::Display for GatewayConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayConnector::WebSocket(url) => f.write_str(url),
            GatewayConnector::InProcess(_) => f.write_str("the gateway in this process"),
        }
    }
}

impl fmt::Debug for GatewayConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{self, FrameReader, FrameWriter, Incoming};
    use crate::protocol::{ErrorCode, Frame};
    use std::time::Duration;
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    type Halves = (FrameReader<TcpStream>, FrameWriter<TcpStream>);

    fn joined(max_frame_bytes: usize) -> (Halves, Halves) {
        let (a, b) = pair();
        (connection::split_link(a, max_frame_bytes), connection::split_link(b, max_frame_bytes))
    }

    #[tokio::test]
    async fn frames_cross_as_sent_and_a_close_carries_its_reason() {
        let ((mut a_reader, mut a_writer), (mut b_reader, mut b_writer)) = joined(1024);
        let answer = Frame::ok("1", serde_json::json!({"x": 1}));
        a_writer.send(&answer).await.unwrap();
        let Incoming::Frame(Frame::Res(res)) = b_reader.next().await else { panic!("a res") };
        assert_eq!(res.id, "1");
        assert_eq!(b_reader.last_text().as_str(), answer.to_text());
        b_writer.close(CloseCode::Away, "shutting down").await;
        let Incoming::Closed(reason) = a_reader.next().await else { panic!("closed") };
        assert_eq!(reason.as_deref(), Some("shutting down"));
        assert!(matches!(a_reader.next().await, Incoming::Closed(None)), "then nothing more");
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_as_too_large() {
        let ((_, mut a_writer), (mut b_reader, _)) = joined(64);
        a_writer.send_text("x".repeat(65).into()).await.unwrap();
        let Incoming::TooLarge(e) = b_reader.next().await else { panic!("too large") };
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    }

    #[tokio::test]
    async fn a_ping_is_answered_by_the_reader() {
        let ((mut a_reader, mut a_writer), (mut b_reader, _b_writer)) = joined(64);
        a_writer.send_message(Message::Ping(Default::default())).await.unwrap();
        assert!(matches!(b_reader.next().await, Incoming::Heartbeat));
        assert!(matches!(a_reader.next().await, Incoming::Heartbeat), "the pong");
    }

    /// A reader that stops reading holds up its writer instead of letting a queue grow.
    #[tokio::test(start_paused = true)]
    async fn a_full_link_makes_its_writer_wait() {
        let ((_a_reader, mut a_writer), (mut b_reader, _b_writer)) = joined(64);
        for _ in 0..LINK_QUEUE {
            a_writer.send_text("{}".into()).await.unwrap();
        }
        let blocked = tokio::time::timeout(Duration::from_secs(5), a_writer.send_text("{}".into())).await;
        assert!(blocked.is_err(), "the writer waits for room");
        b_reader.next().await;
        a_writer.send_text("{}".into()).await.expect("room again once the reader took one");
    }

    #[tokio::test]
    async fn either_end_going_closes_the_other() {
        let ((mut a_reader, mut a_writer), b) = joined(64);
        drop(b);
        assert!(matches!(a_reader.next().await, Incoming::Closed(None)));
        assert!(a_writer.send_text("{}".into()).await.is_err());
    }

    #[tokio::test]
    async fn a_connector_reaches_its_listener_until_the_listener_is_gone() {
        let (connector, mut listener) = listen();
        let mine = connector.connect().await.unwrap();
        let theirs = listener.accept().await.expect("the link arrives");
        let (_, mut writer) = connection::split_link::<TcpStream>(mine, 64);
        let (mut reader, _) = connection::split_link::<TcpStream>(theirs, 64);
        writer.send_text("{}".into()).await.unwrap();
        assert!(matches!(reader.next().await, Incoming::Invalid(_)), "a text that is no frame, delivered");
        // A link still waiting to be accepted when the listener goes is closed for its opener.
        let waiting = connector.connect().await.unwrap();
        drop(listener);
        assert!(connector.connect().await.is_err());
        let (mut reader, _) = connection::split_link::<TcpStream>(waiting, 64);
        assert!(matches!(reader.next().await, Incoming::Closed(None)));
    }
}
