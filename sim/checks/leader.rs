//! Design.md §5 rule 1, one acting leader: the masters' acting periods never overlap, and epochs rise.

use std::collections::BTreeMap;

use foreman::core::time::Time;
use foreman::master::Observation;

use super::Events;
use crate::cluster::Seen;
use crate::harness::Clock;

/// One acting period of one master: [begin, end).
#[derive(Clone, Debug)]
pub struct Acting {
    pub master: String,
    pub epoch: u64,
    pub begin: Time,
    pub end: Time,
}

/// The acting periods, from the masters' reports; a period that never ended ends at the node's recorded kill,
/// or at `until` (the end of the run).
pub fn acting_periods(clock: &Clock, events: &Events, until: Time) -> Vec<Acting> {
    let mut open: BTreeMap<String, Acting> = BTreeMap::new();
    let mut done = vec![];
    for (at, node, seen) in events {
        match seen {
            Seen::Master(Observation::ActingBegan { epoch, at: when }) => {
                let begin = clock.at(*when);
                if let Some(prev) =
                    open.insert(node.clone(), Acting { master: node.clone(), epoch: epoch.0, begin, end: until })
                {
                    done.push(Acting { end: begin, ..prev });
                }
            }
            Seen::Master(Observation::ActingEnded { epoch, at: when }) => {
                if let Some(a) = open.remove(node) {
                    assert_eq!(a.epoch, epoch.0, "{node}: ended a term it did not begin");
                    done.push(Acting { end: clock.at(*when), ..a });
                }
            }
            Seen::Killed => {
                if let Some(a) = open.remove(node) {
                    done.push(Acting { end: *at, ..a });
                }
            }
            _ => {}
        }
    }
    done.extend(open.into_values());
    done.sort_by_key(|a| (a.begin, a.master.clone()));
    done
}

/// Rule 1: at no simulated instant do two masters act as leader, and every term has a larger epoch than the one
/// before it.
pub fn single_acting_leader(periods: &[Acting]) -> Result<(), String> {
    for (i, a) in periods.iter().enumerate() {
        for b in &periods[i + 1..] {
            if b.begin < a.end && a.begin < b.end && a.master != b.master {
                return Err(format!(
                    "safety rule 1 at {}: {} (epoch {}) acted over [{}, {}) and {} (epoch {}) over [{}, {})",
                    b.begin.max(a.begin),
                    a.master,
                    a.epoch,
                    a.begin,
                    a.end,
                    b.master,
                    b.epoch,
                    b.begin,
                    b.end
                ));
            }
        }
    }
    for w in periods.windows(2) {
        if w[1].epoch <= w[0].epoch {
            return Err(format!(
                "safety rule 1 at {}: epoch {} of {} at {} is not above epoch {} of {} at {}",
                w[1].begin, w[1].epoch, w[1].master, w[1].begin, w[0].epoch, w[0].master, w[0].begin
            ));
        }
    }
    Ok(())
}
