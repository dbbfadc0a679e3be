//! A client-side history of register operations and a linearizability
//! checker for it (Wing & Gong's search with Lowe's memoization, the
//! method of Knossos and Porcupine), one key at a time: linearizability is
//! compositional, so a history is linearizable exactly when each key's
//! sub-history is.
//!
//! Each key is a register whose value is a label of one container: a write
//! sets it (an `Update` with a field mask), a read returns it (a `Get`).
//! Writes use values unique across the history, so a read names the write
//! it observed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

/// What an operation did, as far as its client could tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A write that was acknowledged.
    Written,
    /// A write whose fate is unknown (timeout, lost connection, leader
    /// change): it may take effect at any time after its invocation, or
    /// never.
    Indeterminate,
    /// A read that returned this value (`None`: the label was absent).
    Read(Option<String>),
}

/// One completed operation.
#[derive(Clone, Debug)]
pub struct Op {
    pub client: usize,
    pub key: String,
    /// The value written (writes only).
    pub value: Option<String>,
    pub outcome: Outcome,
    /// When the client sent it and when it got the answer, in nanoseconds
    /// since the history began (a monotonic clock).
    pub invoked: u64,
    pub returned: u64,
}

impl Op {
    /// The latest moment the operation can have taken effect.
    fn deadline(&self) -> u64 {
        match self.outcome {
            Outcome::Indeterminate => u64::MAX,
            _ => self.returned,
        }
    }
}

/// A history recorded by concurrent clients.
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }
}

impl History {
    /// Nanoseconds since the history began; take it just before sending a
    /// request and just after its answer.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }
}

/// Why a key's history is not linearizable.
#[derive(Debug)]
pub struct Violation {
    pub key: String,
    /// The key's operations, in invocation order.
    pub ops: Vec<Op>,
}

/// Checks every key's operations; `Err` names the first key whose
/// history has no linearization.
///
/// Indeterminate writes whose value no read returned are left out first:
/// if a linearization exists with one of them taking effect, the same
/// order without it is one too (nothing read its value, so it was
/// overwritten before any read, or never happened), and the search would
/// otherwise try each of them at every point after its invocation.
pub fn check(ops: &[Op]) -> Result<(), Violation> {
    let observed: HashSet<(&str, &str)> = ops
        .iter()
        .filter_map(|op| match &op.outcome {
            Outcome::Read(Some(value)) => Some((op.key.as_str(), value.as_str())),
            _ => None,
        })
        .collect();
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for op in ops {
        let unseen_lost_write = op.outcome == Outcome::Indeterminate
            && op
                .value
                .as_deref()
                .is_some_and(|value| !observed.contains(&(op.key.as_str(), value)));
        if !unseen_lost_write {
            by_key.entry(&op.key).or_default().push(op.clone());
        }
    }
    for (key, mut ops) in by_key {
        ops.sort_by_key(|op| op.invoked);
        if !linearizable(&ops) {
            return Err(Violation {
                key: key.to_string(),
                ops,
            });
        }
    }
    Ok(())
}

/// Whether one register's operations (sorted by invocation) have a
/// linearization starting from the absent value.
///
/// Depth-first search over which pending operation takes effect next. An
/// operation may go next only if no other pending operation returned
/// before it was invoked. Indeterminate writes may also never take effect,
/// so the search succeeds once only they remain. Every (set of operations
/// done, register value) pair is explored at most once.
fn linearizable(ops: &[Op]) -> bool {
    let mut search = Search::new(ops);
    // The register's value as the index of the write that set it.
    let mut state: Option<usize> = None;
    let mut stack: Vec<(usize, Option<usize>)> = Vec::new();
    let mut seen: HashSet<(Vec<u64>, Option<usize>)> = HashSet::new();
    let mut next_candidate = 0;
    loop {
        if search.determinate_pending == 0 {
            return true;
        }
        // The earliest deadline among pending operations bounds which of
        // them may take effect next.
        let horizon = search.horizon();
        let current = state.and_then(|w| ops[w].value.as_deref());
        let mut advanced = false;
        let mut i = next_candidate.max(search.first_pending);
        while i < ops.len() && ops[i].invoked <= horizon {
            let next_state = match &ops[i].outcome {
                _ if search.is_done(i) => None,
                Outcome::Read(v) if v.as_deref() == current => Some(state),
                Outcome::Read(_) => None,
                _ => Some(Some(i)),
            };
            if let Some(next_state) = next_state {
                search.mark(i);
                if seen.insert((search.done.clone(), next_state)) {
                    stack.push((i, state));
                    state = next_state;
                    next_candidate = 0;
                    advanced = true;
                    break;
                }
                search.unmark(i);
            }
            i += 1;
        }
        if !advanced {
            // Undo the last step and try the operation after it.
            let Some((last, previous)) = stack.pop() else {
                return false;
            };
            search.unmark(last);
            state = previous;
            next_candidate = last + 1;
        }
    }
}

/// Which operations the search has linearized so far, with what it needs
/// to know about the rest without scanning them all at each step.
struct Search<'a> {
    ops: &'a [Op],
    /// A bit per operation.
    done: Vec<u64>,
    /// The lowest index not done.
    first_pending: usize,
    /// Pending operations that must take effect (all but indeterminate
    /// writes).
    determinate_pending: usize,
    /// The deadlines of the pending operations, as a multiset.
    deadlines: BTreeMap<u64, usize>,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [Op]) -> Self {
        let mut deadlines = BTreeMap::new();
        for op in ops {
            *deadlines.entry(op.deadline()).or_insert(0) += 1;
        }
        Search {
            ops,
            done: vec![0; ops.len().div_ceil(64)],
            first_pending: 0,
            determinate_pending: ops
                .iter()
                .filter(|op| op.outcome != Outcome::Indeterminate)
                .count(),
            deadlines,
        }
    }

    fn is_done(&self, i: usize) -> bool {
        self.done[i / 64] & (1 << (i % 64)) != 0
    }

    fn horizon(&self) -> u64 {
        self.deadlines.keys().next().copied().unwrap_or(u64::MAX)
    }

    fn mark(&mut self, i: usize) {
        self.done[i / 64] |= 1 << (i % 64);
        self.count(i, -1);
        while self.first_pending < self.ops.len() && self.is_done(self.first_pending) {
            self.first_pending += 1;
        }
    }

    fn unmark(&mut self, i: usize) {
        self.done[i / 64] &= !(1 << (i % 64));
        self.count(i, 1);
        self.first_pending = self.first_pending.min(i);
    }

    fn count(&mut self, i: usize, delta: isize) {
        let op = &self.ops[i];
        if op.outcome != Outcome::Indeterminate {
            self.determinate_pending = self.determinate_pending.wrapping_add_signed(delta);
        }
        let slot = self.deadlines.entry(op.deadline()).or_insert(0);
        *slot = slot.wrapping_add_signed(delta);
        if *slot == 0 {
            self.deadlines.remove(&op.deadline());
        }
    }
}

/// Builders for hand-written histories (the checker's own tests).
pub mod build {
    use super::{Op, Outcome};

    pub fn write(client: usize, value: &str, invoked: u64, returned: u64) -> Op {
        Op {
            client,
            key: "k".into(),
            value: Some(value.into()),
            outcome: Outcome::Written,
            invoked,
            returned,
        }
    }

    pub fn lost_write(client: usize, value: &str, invoked: u64) -> Op {
        Op {
            outcome: Outcome::Indeterminate,
            ..write(client, value, invoked, invoked + 1)
        }
    }

    pub fn read(client: usize, value: Option<&str>, invoked: u64, returned: u64) -> Op {
        Op {
            client,
            key: "k".into(),
            value: None,
            outcome: Outcome::Read(value.map(str::to_string)),
            invoked,
            returned,
        }
    }
}
