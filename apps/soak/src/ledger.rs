//! What the devices did and saw, and every check that failed, for the report.

use crate::model::TurnKind;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Failures kept word for word (the rest are counted).
const KEEP_FAILURES: usize = 40;
/// Failures also printed as they happen.
const PRINT_FAILURES: u64 = 200;

/// Counters, each one thing that happened (`what` → count).
#[derive(Default)]
pub struct Ledger {
    pub counts: BTreeMap<&'static str, u64>,
    /// Turns that ran to their end with every check passed, by kind.
    pub turns_ok: BTreeMap<TurnKind, u64>,
    /// The numbers of the turns with a tool call among them.
    pub tool_turns_ok: Vec<u64>,
    /// Connect failures by what was said, kept apart: some are expected (see `devices`).
    pub connect_failures: BTreeMap<String, u64>,
    /// Each prompt raised (its request id), with how many answers the gateway accepted for it.
    pub prompts: HashMap<String, PromptRecord>,
    pub failures: Vec<String>,
    pub failure_count: u64,
}

#[derive(Debug, Clone)]
pub struct PromptRecord {
    pub turn: u64,
    pub device: usize,
    pub accepted_answers: u32,
    /// The turn ran to its end (so the prompt had its chance to be answered).
    pub turn_finished: bool,
}

pub struct Book(Mutex<Ledger>);

impl Book {
    pub fn new() -> Book {
        Book(Mutex::new(Ledger::default()))
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        f(&mut self.0.lock().expect("ledger lock"))
    }

    pub fn count(&self, what: &'static str) {
        self.add(what, 1);
    }

    pub fn add(&self, what: &'static str, n: u64) {
        self.with(|l| *l.counts.entry(what).or_default() += n);
    }

    pub fn fail(&self, what: String) {
        self.with(|l| {
            l.failure_count += 1;
            // As it happens too (the first ones), so a long run's log shows when.
            if l.failure_count <= PRINT_FAILURES {
                eprintln!("soak: FAILURE {what}");
            }
            if l.failures.len() < KEEP_FAILURES {
                l.failures.push(what);
            }
        });
    }

    pub fn connect_failed(&self, what: String) {
        self.with(|l| *l.connect_failures.entry(what).or_default() += 1);
    }

    pub fn prompt_seen(&self, request_id: &str, turn: u64, device: usize) {
        self.with(|l| {
            l.prompts.entry(request_id.to_string()).or_insert(PromptRecord {
                turn,
                device,
                accepted_answers: 0,
                turn_finished: false,
            });
        });
    }

    pub fn prompt_answered(&self, request_id: &str) {
        self.with(|l| {
            if let Some(prompt) = l.prompts.get_mut(request_id) {
                prompt.accepted_answers += 1;
            }
        });
    }

    pub fn turn_finished(&self, turn: u64) {
        self.with(|l| l.prompts.values_mut().filter(|p| p.turn == turn).for_each(|p| p.turn_finished = true));
    }

    pub fn get(&self, what: &str) -> u64 {
        self.with(|l| l.counts.get(what).copied().unwrap_or(0))
    }
}
