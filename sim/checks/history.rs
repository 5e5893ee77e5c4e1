//! The job API's history (issue 5 item 3; design.md §5 rules 4 and 5): what clients were told must be explainable
//! by one run of the job state machine, as `foreman::core::job::JobState::can_become` defines it.
//!
//! Per job, the acknowledged operations in the order their replies came (each job's operations are issued one at
//! a time, so that order is also their real-time order and each one's effect lies between its call and its reply):
//! a create, reads (a state, or not found), cancels (the state the reply named) and a delete. The history is legal
//! if the states seen form a path of the state machine, every state reachable from the one seen before it (zero or
//! more transitions: nobody saw the ones in between); nothing is seen after it was acknowledged terminal but that
//! same state; an acknowledged job is found by every read until its delete is acknowledged (rule 4: no job lost);
//! and once deleted it is never found again. A create that was never acknowledged constrains nothing (it may or
//! may not have happened), and reads of such a job are only checked against each other.

use std::collections::BTreeMap;

use foreman::core::invariants::{Id, Rule, Violation};
use foreman::core::job::JobState;
use foreman::core::time::Time;

use crate::cluster::Seen;

/// What the client knows of one job so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    /// Not acknowledged as created (an unacknowledged create may still have happened).
    Unknown,
    /// Acknowledged, last seen in this state.
    In(JobState),
    /// Its delete was acknowledged.
    Deleted,
}

fn state_of(wire: i32) -> Option<JobState> {
    Some(match wire {
        1 => JobState::Created,
        2 => JobState::Running,
        3 => JobState::Canceling,
        4 => JobState::Finished,
        5 => JobState::Canceled,
        6 => JobState::Failed,
        _ => return None,
    })
}

/// Whether `to` can follow `from` through zero or more legal transitions.
fn reachable(from: JobState, to: JobState) -> bool {
    let mut seen = vec![from];
    let mut frontier = vec![from];
    while let Some(s) = frontier.pop() {
        for next in JobState::ALL {
            if s.can_become(next) && !seen.contains(&next) {
                seen.push(next);
                frontier.push(next);
            }
        }
    }
    seen.contains(&to)
}

/// Checks every job's acknowledged history; the first violation, with its class, rule, job and time.
pub fn job_history(events: &[(Time, String, Seen)]) -> Result<(), Violation> {
    let mut known: BTreeMap<&str, Known> = BTreeMap::new();
    let fail = |at: Time, rule: Rule, id: &str, what: String| {
        Err(Violation::new(rule, at, format!("job {id}: {what}")).with([Id::Job(id.to_owned())]))
    };
    for (at, _, seen) in events {
        match seen {
            Seen::JobCreated { id } => {
                let k = known.entry(id).or_insert(Known::Unknown);
                match *k {
                    Known::Unknown => *k = Known::In(JobState::Created),
                    // A retried create answered after an earlier attempt was applied: nothing new.
                    Known::In(_) => {}
                    Known::Deleted => *k = Known::In(JobState::Created),
                }
            }
            Seen::JobRead { id, state } => {
                let k = known.entry(id).or_insert(Known::Unknown);
                match (*k, state.map(state_of)) {
                    (_, Some(None)) => {
                        return fail(*at, Rule::LegalTransitions, id, format!("read an unknown state {state:?}"))
                    }
                    (Known::In(was), None) => {
                        return fail(
                            *at,
                            Rule::NoJobLost,
                            id,
                            format!("acknowledged (last seen {was:?}) but not found: a job was lost"),
                        );
                    }
                    (Known::Deleted, Some(Some(now))) => {
                        return fail(
                            *at,
                            Rule::NoJobLost,
                            id,
                            format!("found {now:?} after its delete was acknowledged"),
                        );
                    }
                    (Known::In(was), Some(Some(now))) => {
                        if !reachable(was, now) {
                            return fail(
                                *at,
                                Rule::LegalTransitions,
                                id,
                                format!("seen {was:?}, then {now:?}: no legal path leads there"),
                            );
                        }
                        *k = Known::In(now);
                    }
                    // An unacknowledged create that did happen: what is seen from here on is constrained.
                    (Known::Unknown, Some(Some(now))) => *k = Known::In(now),
                    (Known::Unknown | Known::Deleted, None) => {}
                }
            }
            Seen::JobCanceled { id, state, .. } => {
                let k = known.entry(id).or_insert(Known::Unknown);
                let Some(now) = state_of(*state) else {
                    return fail(
                        *at,
                        Rule::LegalTransitions,
                        id,
                        format!("a cancel answered with an unknown state {state}"),
                    );
                };
                // A cancel leaves the job Canceling or Canceled; one that came after the job ended answers with the
                // job as it ended.
                if !(now == JobState::Canceling || now.is_terminal()) {
                    return fail(
                        *at,
                        Rule::LegalTransitions,
                        id,
                        format!("a cancel was acknowledged with the job {now:?}"),
                    );
                }
                match *k {
                    Known::In(was) if !reachable(was, now) => {
                        return fail(
                            *at,
                            Rule::LegalTransitions,
                            id,
                            format!("seen {was:?}, then canceled into {now:?}: no legal path"),
                        );
                    }
                    Known::Deleted => {
                        return fail(*at, Rule::NoJobLost, id, "canceled after its delete was acknowledged".into())
                    }
                    _ => *k = Known::In(now),
                }
            }
            Seen::JobDeleted { id } => {
                let k = known.entry(id).or_insert(Known::Unknown);
                if let Known::In(was) = *k {
                    if !was.is_terminal() {
                        return fail(
                            *at,
                            Rule::LegalTransitions,
                            id,
                            format!("deleted while last seen {was:?} (only ended jobs are deleted)"),
                        );
                    }
                }
                *k = Known::Deleted;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ms: u64, seen: Seen) -> (Time, String, Seen) {
        (Time::from_millis(ms), "client".into(), seen)
    }
    fn created() -> Seen {
        Seen::JobCreated { id: "j".into() }
    }
    fn read(state: Option<i32>) -> Seen {
        Seen::JobRead { id: "j".into(), state }
    }
    fn canceled(state: i32) -> Seen {
        Seen::JobCanceled { id: "j".into(), epoch: foreman::core::ids::Epoch(1), state }
    }
    fn deleted() -> Seen {
        Seen::JobDeleted { id: "j".into() }
    }

    #[test]
    fn legal_histories_pass() {
        let run =
            [ev(0, created()), ev(1, read(Some(1))), ev(2, read(Some(2))), ev(3, read(Some(4))), ev(4, deleted())];
        assert_eq!(job_history(&run), Ok(()));
        // States nobody saw in between: Created, then Finished; Created, then Canceled.
        assert_eq!(job_history(&[ev(0, created()), ev(1, read(Some(4)))]), Ok(()));
        let cancel = [ev(0, created()), ev(1, canceled(3)), ev(2, read(Some(3))), ev(3, read(Some(5)))];
        assert_eq!(job_history(&cancel), Ok(()));
        // A cancel after the job finished answers with the job as it ended.
        assert_eq!(job_history(&[ev(0, created()), ev(1, read(Some(4))), ev(2, canceled(4))]), Ok(()));
        // A cancel that raced the job master's finish: Canceling, then Finished.
        assert_eq!(job_history(&[ev(0, created()), ev(1, canceled(3)), ev(2, read(Some(4)))]), Ok(()));
        // Deleted, then not found.
        assert_eq!(job_history(&[ev(0, created()), ev(1, read(Some(6))), ev(2, deleted()), ev(3, read(None))]), Ok(()));
        // Never acknowledged: not found proves nothing.
        assert_eq!(job_history(&[ev(1, read(None))]), Ok(()));
    }

    #[test]
    fn each_illegal_history_fails_with_its_rule() {
        type Story<'a> = &'a [(Time, String, Seen)];
        use Rule::{LegalTransitions as Legal, NoJobLost as Lost};
        let cases: [(Story, Rule, &str); 8] = [
            (&[ev(0, created()), ev(1, canceled(2))], Legal, "a cancel was acknowledged with the job Running"),
            (&[ev(0, created()), ev(1, read(Some(4))), ev(2, read(Some(2)))], Legal, "Finished, then Running"),
            (&[ev(0, created()), ev(1, read(Some(2))), ev(2, read(Some(1)))], Legal, "Running, then Created"),
            (&[ev(0, created()), ev(1, canceled(3)), ev(2, read(Some(2)))], Legal, "Canceling, then Running"),
            (&[ev(0, created()), ev(1, read(None))], Lost, "not found"),
            (
                &[ev(0, created()), ev(1, read(Some(4))), ev(2, deleted()), ev(3, read(Some(4)))],
                Lost,
                "after its delete",
            ),
            (&[ev(0, created()), ev(1, read(Some(2))), ev(2, deleted())], Legal, "deleted while"),
            (&[ev(0, created()), ev(1, read(Some(5))), ev(2, canceled(3))], Legal, "no legal path"),
        ];
        for (story, rule, want) in cases {
            let v = job_history(story).expect_err(want);
            assert_eq!((v.rule, v.at, &v.ids[..]), (rule, story.last().unwrap().0, &[Id::Job("j".into())][..]), "{v}");
            assert!(v.detail.contains(want), "{want}: {v}");
        }
    }
}
