//! A linearizability checker (Wing & Gong's search, with Lowe's memoization, as porcupine does)
//! for the config seen as one compare-and-set register: its state is the revision and a value;
//! a write names the revision it expects (If-Match) and a fresh value; every config change adds
//! one to the revision.
//!
//! A history is linearizable when the operations can be put in one order that respects real
//! time (an operation that returned before another was invoked comes first) and in which every
//! answer is what the register would have given. A write whose outcome is unknown (504, a lost
//! answer) may have taken effect at any time after its invocation, or never.

use std::collections::HashSet;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    pub revision: u64,
    pub value: String,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// Answered 200 with this revision.
    Written(u64),
    /// Answered 409: the revision was not the one expected.
    Stale,
    /// No answer, or 504: it may or may not have taken effect.
    Unknown,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Read(State),
    /// `expect`: the revision of If-Match; `None` for `If-Match: *`.
    Write {
        expect: Option<u64>,
        value: String,
        outcome: Outcome,
    },
}

/// One operation: when it was invoked and answered (since the test began), what it was.
#[derive(Debug, Clone)]
pub struct Op {
    pub client: usize,
    pub invoked: Duration,
    /// `None` for an unknown outcome: it never returned.
    pub returned: Option<Duration>,
    pub kind: Kind,
}

/// The state after `op` taken at `state`, or `None` when the answer cannot come from it.
fn step(state: &State, op: &Op) -> Option<State> {
    match &op.kind {
        Kind::Read(seen) => (seen == state).then(|| state.clone()),
        Kind::Write {
            expect,
            value,
            outcome,
        } => {
            let holds = expect.is_none_or(|e| e == state.revision);
            match outcome {
                Outcome::Written(rev) => (holds && *rev == state.revision + 1).then(|| State {
                    revision: *rev,
                    value: value.clone(),
                }),
                Outcome::Stale => (!holds).then(|| state.clone()),
                Outcome::Unknown => holds.then(|| State {
                    revision: state.revision + 1,
                    value: value.clone(),
                }),
            }
        }
    }
}

/// `Ok` when `history` is linearizable from `init`; otherwise why not (the longest prefix
/// found).
pub fn check(init: State, history: &[Op]) -> Result<(), String> {
    let n = history.len();
    let required: Vec<bool> = history.iter().map(|o| o.returned.is_some()).collect();
    let words = n.div_ceil(64);
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut best = 0usize;
    // Depth-first: (linearized set, state, how many required done).
    let mut stack = vec![(vec![0u64; words], init, 0usize)];
    let total_required = required.iter().filter(|r| **r).count();
    while let Some((done, state, count)) = stack.pop() {
        if count == total_required {
            return Ok(());
        }
        best = best.max(count);
        if !seen.insert((done.clone(), state.clone())) {
            continue;
        }
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // The earliest return among the operations not yet placed: nothing invoked after it
        // can come before it.
        let horizon = (0..n)
            .filter(|&i| !is_done(i))
            .filter_map(|i| history[i].returned)
            .min();
        for i in 0..n {
            if is_done(i) || horizon.is_some_and(|h| history[i].invoked > h) {
                continue;
            }
            if let Some(next) = step(&state, &history[i]) {
                let mut d = done.clone();
                d[i / 64] |= 1 << (i % 64);
                stack.push((d, next, count + usize::from(required[i])));
            }
        }
    }
    Err(format!(
        "not linearizable: at most {best} of the {total_required} answered operations fit one order"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn s(revision: u64, value: &str) -> State {
        State {
            revision,
            value: value.into(),
        }
    }

    fn op(client: usize, from: u64, to: Option<u64>, kind: Kind) -> Op {
        Op {
            client,
            invoked: at(from),
            returned: to.map(at),
            kind,
        }
    }

    fn write(expect: u64, value: &str, outcome: Outcome) -> Kind {
        Kind::Write {
            expect: Some(expect),
            value: value.into(),
            outcome,
        }
    }

    #[test]
    fn concurrent_writes_and_reads_that_fit_one_order_pass() {
        let h = vec![
            op(0, 0, Some(10), write(1, "a", Outcome::Written(2))),
            op(1, 5, Some(12), write(1, "b", Outcome::Stale)),
            // Overlaps the write: may see before or after.
            op(2, 1, Some(9), Kind::Read(s(1, "init"))),
            op(2, 11, Some(13), Kind::Read(s(2, "a"))),
        ];
        assert!(check(s(1, "init"), &h).is_ok());
    }

    #[test]
    fn a_stale_read_after_a_write_returned_fails() {
        let h = vec![
            op(0, 0, Some(10), write(1, "a", Outcome::Written(2))),
            op(1, 20, Some(25), Kind::Read(s(1, "init"))),
        ];
        assert!(check(s(1, "init"), &h).is_err());
    }

    #[test]
    fn two_writes_succeeding_on_one_revision_fail() {
        let h = vec![
            op(0, 0, Some(10), write(1, "a", Outcome::Written(2))),
            op(1, 0, Some(10), write(1, "b", Outcome::Written(2))),
        ];
        assert!(check(s(1, "init"), &h).is_err());
    }

    #[test]
    fn an_unknown_write_may_have_happened_or_not() {
        let happened = vec![
            op(0, 0, None, write(1, "a", Outcome::Unknown)),
            op(1, 50, Some(60), Kind::Read(s(2, "a"))),
        ];
        assert!(check(s(1, "init"), &happened).is_ok());
        let did_not = vec![
            op(0, 0, None, write(1, "a", Outcome::Unknown)),
            op(1, 50, Some(60), Kind::Read(s(1, "init"))),
        ];
        assert!(check(s(1, "init"), &did_not).is_ok());
        // But not undone once seen.
        let undone = vec![
            op(0, 0, None, write(1, "a", Outcome::Unknown)),
            op(1, 50, Some(60), Kind::Read(s(2, "a"))),
            op(1, 70, Some(80), Kind::Read(s(1, "init"))),
        ];
        assert!(check(s(1, "init"), &undone).is_err());
    }

    #[test]
    fn an_unconditional_write_applies_at_any_revision() {
        let h = vec![
            op(
                0,
                0,
                Some(10),
                Kind::Write {
                    expect: None,
                    value: "a".into(),
                    outcome: Outcome::Written(8),
                },
            ),
            op(1, 20, Some(30), Kind::Read(s(8, "a"))),
        ];
        assert!(check(s(7, "init"), &h).is_ok());
        assert!(check(s(6, "init"), &h).is_err(), "one change adds one");
    }

    #[test]
    fn a_lost_acknowledged_write_fails() {
        let h = vec![
            op(0, 0, Some(10), write(1, "a", Outcome::Written(2))),
            op(1, 20, Some(30), write(1, "b", Outcome::Written(2))),
        ];
        assert!(check(s(1, "init"), &h).is_err());
    }
}
