//! The gateway's record of every conversation: an index (title, times, claude's session id, which history
//! file) replaced atomically on each change, and one append-only history file per conversation. claude
//! keeps its own transcripts too, but their format changes between versions; this record is ours, and it
//! is what `agent.sessions` and `agent.history` read and what a restarted gateway resumes from.

use crate::now_ms;
use node_kit::protocol::{HistoryEntry, HistoryItem};
use node_kit::storage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::sync::Mutex;

/// Conversations remembered; beyond this the least recently active one is forgotten with its history.
const MAX_SESSIONS: usize = 1024;
/// Longest title, in characters.
const TITLE_CHARS: usize = 80;

pub(crate) struct SessionBook {
    dir: PathBuf,
    index: Mutex<BookIndex>,
    /// Conversations kept; the one idle longest is forgotten to make room.
    capacity: usize,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BookIndex {
    next_file: u64,
    sessions: BTreeMap<String, BookEntry>,
}

/// What the book knows of one conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BookEntry {
    pub title: String,
    pub created_at_ms: u64,
    pub last_activity_ms: u64,
    pub turns: u64,
    /// claude's own session id: a new process resumes it.
    #[serde(default)]
    pub claude_session_id: Option<String>,
    #[serde(default)]
    pub last_run_id: Option<String>,
    /// Entries in the history file.
    pub entries: u64,
    file: String,
    /// A turn has started and not yet finished: the conversation is not forgotten to make room.
    #[serde(skip)]
    in_turn: bool,
}

impl SessionBook {
    /// Opens the book in `dir`; an unreadable index starts an empty book (history files stay on disk).
    pub(crate) fn open(dir: PathBuf) -> SessionBook {
        SessionBook::with_capacity(dir, MAX_SESSIONS)
    }

    fn with_capacity(dir: PathBuf, capacity: usize) -> SessionBook {
        let index = match std::fs::read(dir.join("sessions.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "the conversation index is unreadable; starting a new one");
                BookIndex::default()
            }),
            Err(_) => BookIndex::default(),
        };
        if dir.is_dir() {
            let _ = storage::remove_torn_writes(&dir);
        }
        SessionBook { dir, index: Mutex::new(index), capacity }
    }

    /// claude's session id for `key`, to resume its conversation.
    pub(crate) fn claude_session(&self, key: &str) -> Option<String> {
        self.index.lock().expect("book lock").sessions.get(key).and_then(|e| e.claude_session_id.clone())
    }

    /// Records the start of a turn: its prompt is in the history before the model answers.
    pub(crate) fn start_turn(&self, key: &str, run_id: &str, prompt: &str, attachments: usize) {
        let mut index = self.index.lock().expect("book lock");
        let now = now_ms();
        if !index.sessions.contains_key(key) {
            if index.sessions.len() >= self.capacity {
                self.forget_oldest(&mut index);
            }
            let file = format!("history-{}.jsonl", index.next_file);
            index.next_file += 1;
            let title: String =
                prompt.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(TITLE_CHARS).collect();
            let entry = BookEntry {
                title,
                created_at_ms: now,
                last_activity_ms: now,
                turns: 0,
                claude_session_id: None,
                last_run_id: None,
                entries: 0,
                file,
                in_turn: false,
            };
            index.sessions.insert(key.to_string(), entry);
        }
        let user = HistoryItem::User { text: prompt.to_string(), attachments };
        self.append(&mut index, key, vec![user], |entry| {
            entry.turns += 1;
            entry.in_turn = true;
            entry.last_run_id = Some(run_id.to_string());
        });
    }

    /// Records the end of a turn: what the model wrote and did, and claude's session id.
    pub(crate) fn finish_turn(&self, key: &str, items: Vec<HistoryItem>, claude_session: Option<&str>) {
        let mut index = self.index.lock().expect("book lock");
        if !index.sessions.contains_key(key) {
            return;
        }
        self.append(&mut index, key, items, |entry| {
            entry.in_turn = false;
            if let Some(id) = claude_session {
                entry.claude_session_id = Some(id.to_string());
            }
        });
    }

    /// Appends `items` to the history file and saves the index. A failed write is logged, never fatal: the
    /// conversation itself goes on.
    fn append(&self, index: &mut BookIndex, key: &str, items: Vec<HistoryItem>, update: impl FnOnce(&mut BookEntry)) {
        let now = now_ms();
        let entry = index.sessions.get_mut(key).expect("checked by the caller");
        let mut lines = String::new();
        for (offset, item) in items.into_iter().enumerate() {
            let line = HistoryEntry { index: entry.entries + offset as u64, at_ms: now, item };
            lines.push_str(&serde_json::to_string(&line).expect("history entries serialise"));
            lines.push('\n');
        }
        let written = lines.lines().count() as u64;
        let file = self.dir.join(&entry.file);
        // One write of whole lines: a crash can cut only the last line, which the reader skips.
        let appended = storage::ensure_private_dir(&self.dir).and_then(|()| {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(&file)?.write_all(lines.as_bytes())
        });
        if let Err(e) = appended {
            tracing::error!(error = %e, file = %file.display(), "cannot append to a conversation's history");
        } else {
            entry.entries += written;
        }
        entry.last_activity_ms = now;
        update(entry);
        if let Err(e) = self.save(index) {
            tracing::error!(error = %e, "cannot write the conversation index");
        }
    }

    fn save(&self, index: &BookIndex) -> io::Result<()> {
        storage::write_private_file(&self.dir.join("sessions.json"), &serde_json::to_vec(index)?)
    }

    fn forget_oldest(&self, index: &mut BookIndex) {
        let oldest = index
            .sessions
            .iter()
            .filter(|(_, e)| !e.in_turn)
            .min_by_key(|(_, e)| e.last_activity_ms)
            .map(|(k, _)| k.clone());
        if let Some(entry) = oldest.and_then(|key| index.sessions.remove(&key)) {
            let _ = std::fs::remove_file(self.dir.join(entry.file));
        }
    }

    /// Every conversation whose key `visible` maps to the key the caller knows it by.
    pub(crate) fn list(&self, visible: impl Fn(&str) -> Option<String>) -> Vec<(String, String, BookEntry)> {
        let index = self.index.lock().expect("book lock");
        index
            .sessions
            .iter()
            .filter_map(|(key, entry)| visible(key).map(|shown| (key.clone(), shown, entry.clone())))
            .collect()
    }

    /// A page of `key`'s history: up to `limit` entries before index `before` (the latest by default),
    /// oldest first, and the total. `None` when no such conversation is recorded.
    pub(crate) fn history(&self, key: &str, before: Option<u64>, limit: usize) -> Option<(Vec<HistoryEntry>, u64)> {
        let (file, total) = {
            let index = self.index.lock().expect("book lock");
            let entry = index.sessions.get(key)?;
            (self.dir.join(&entry.file), entry.entries)
        };
        let end = before.unwrap_or(total).min(total);
        let start = end.saturating_sub(limit as u64);
        let entries = match std::fs::File::open(&file) {
            Ok(opened) => io::BufReader::new(opened)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| serde_json::from_str::<HistoryEntry>(&line).ok())
                .filter(|e| e.index >= start && e.index < end)
                .collect(),
            Err(_) => Vec::new(),
        };
        Some((entries, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_are_recorded_paged_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let book = SessionBook::open(dir.path().to_path_buf());
        book.start_turn("node:n1:main", "r1", "  fix   the\nbuild ", 1);
        let reply = HistoryItem::Assistant { text: "done".into() };
        let tool = HistoryItem::Tool { name: "Bash".into(), summary: "Run `make`".into(), is_error: false };
        book.finish_turn("node:n1:main", vec![tool, reply], Some("claude-1"));
        book.start_turn("node:n1:main", "r2", "and test it", 0);
        let book = SessionBook::open(dir.path().to_path_buf());
        assert_eq!(book.claude_session("node:n1:main").as_deref(), Some("claude-1"));
        let listed = book.list(|key| key.strip_prefix("node:n1:").map(str::to_string));
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1, "main");
        assert_eq!(listed[0].2.title, "fix the build");
        assert_eq!(listed[0].2.turns, 2);
        let (last, total) = book.history("node:n1:main", None, 2).unwrap();
        assert_eq!(total, 4);
        assert_eq!(last.iter().map(|e| e.index).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(last[1].item, HistoryItem::User { text: "and test it".into(), attachments: 0 });
        let (first, _) = book.history("node:n1:main", Some(2), 50).unwrap();
        assert_eq!(first[0].item, HistoryItem::User { text: "  fix   the\nbuild ".into(), attachments: 1 });
        assert!(book.history("node:n2:main", None, 10).is_none());
    }

    #[test]
    fn a_full_book_forgets_the_longest_idle_conversation_but_never_one_in_a_turn() {
        let dir = tempfile::tempdir().unwrap();
        let book = SessionBook::with_capacity(dir.path().to_path_buf(), 2);
        book.start_turn("a", "r1", "first", 0);
        book.start_turn("b", "r2", "second", 0);
        book.finish_turn("b", vec![], Some("claude-b"));
        std::thread::sleep(std::time::Duration::from_millis(5));
        // "a" is the oldest but still in its turn: "b" makes room.
        book.start_turn("c", "r3", "third", 0);
        book.finish_turn("a", vec![], Some("claude-a"));
        assert_eq!(book.claude_session("a").as_deref(), Some("claude-a"));
        assert!(book.history("b", None, 10).is_none());
        assert!(!dir.path().join("history-1.jsonl").exists(), "the forgotten history is removed");
        // Now "c" is in its turn and "a" idle: "a" goes.
        book.start_turn("d", "r4", "fourth", 0);
        assert!(book.claude_session("a").is_none());
        assert!(book.history("c", None, 10).is_some());
    }
}
