//! Design.md §5 rule 1, one acting leader: the masters' acting periods, from the recorder's story, never overlap,
//! and epochs rise.

use std::collections::BTreeMap;

use foreman::core::invariants::{one_acting_leader, ActingPeriod, Violation};
use foreman::core::time::Time;
use foreman::master::Observation;

use super::Events;
use crate::cluster::Seen;
use crate::harness::Clock;

/// The acting periods, from the masters' reports. A period that never ended (no `ActingEnded`) ends at the node's
/// recorded kill, or at `until` (the end of the run), but never after the acting deadline the master last reported
/// for that term (`ActingUntil`): a master stops acting at its deadline whether or not it lives to say so, so a
/// kill that comes later (say, of a master stalled past its deadline) does not stretch its period over its
/// successor's.
pub fn acting_periods(clock: &Clock, events: &Events, until: Time) -> Vec<ActingPeriod> {
    let mut open: BTreeMap<String, ActingPeriod> = BTreeMap::new();
    // Per node: the term and deadline it last reported.
    let mut deadline: BTreeMap<String, (u64, Time)> = BTreeMap::new();
    let ends = |deadline: &BTreeMap<String, (u64, Time)>, a: &ActingPeriod, at: Time| match deadline.get(&a.master) {
        Some((epoch, d)) if *epoch == a.epoch => at.min(*d).max(a.begin),
        _ => at,
    };
    let mut done = vec![];
    for (at, node, seen) in events {
        match seen {
            Seen::Master(Observation::ActingBegan { epoch, at: when }) => {
                let begin = clock.at(*when);
                if let Some(prev) =
                    open.insert(node.clone(), ActingPeriod { master: node.clone(), epoch: epoch.0, begin, end: until })
                {
                    done.push(ActingPeriod { end: begin, ..prev });
                }
            }
            Seen::Master(Observation::ActingUntil { epoch, until: when }) => {
                deadline.insert(node.clone(), (epoch.0, clock.at(*when)));
            }
            Seen::Master(Observation::ActingEnded { epoch, at: when }) => {
                if let Some(a) = open.remove(node) {
                    assert_eq!(a.epoch, epoch.0, "{node}: ended a term it did not begin");
                    done.push(ActingPeriod { end: clock.at(*when), ..a });
                }
            }
            Seen::Killed => {
                if let Some(a) = open.remove(node) {
                    done.push(ActingPeriod { end: ends(&deadline, &a, *at), ..a });
                }
            }
            _ => {}
        }
    }
    done.extend(open.into_values().map(|a| ActingPeriod { end: ends(&deadline, &a, a.end), ..a }));
    done.sort_by_key(|a| (a.begin, a.master.clone()));
    done
}

/// Rule 1: at no simulated instant do two masters act as leader, and every term has a larger epoch than the one
/// before it (the core's [`one_acting_leader`] over the periods).
pub fn single_acting_leader(periods: &[ActingPeriod]) -> Result<(), Violation> {
    one_acting_leader(periods)
}
