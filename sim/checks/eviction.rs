//! Design.md §6, no mass eviction from the wrong side: a leader that loses contact with most executors at once
//! suspects that it is the one cut off, and does not evict them all. It holds those evictions for the suspect
//! hold (README, "Mass-eviction guard"); executors heard again meanwhile are kept, the rest go when it ends.
//!
//! What a story must show: whenever one check of a leader declares offline at least two executors, and more than
//! the suspect fraction of the executors its registry held then, the one it had gone longest without hearing was
//! declared no earlier than TTL + suspect hold after the leader last heard it. (The others of the batch may have
//! expired during the hold: the hold began when the first majority expired.)

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::core::invariants::{Id, Rule, Violation};
use foreman::core::time::Time;
use foreman::master::Observation;

use super::{ClockSlack, Events};
use crate::cluster::Seen;
use crate::harness::Clock;

/// One check's declarations: (last heard, the executor) of each, and how many executors the registry held.
type Batch = (Vec<(Time, String)>, usize);

/// The knobs the rule is judged by.
#[derive(Clone, Copy, Debug)]
pub struct EvictionPolicy {
    pub ttl: Duration,
    pub hold: Duration,
    /// More than this share of the registry expiring in one check is a mass expiry.
    pub fraction: f64,
}

/// See the module documentation. `slack` is the network and scheduling slack on a time bound; `clocks` what the
/// run's clock faults allow (the leader counts TTL and hold on its own clock).
pub fn no_mass_eviction(
    clock: &Clock,
    events: &Events,
    policy: EvictionPolicy,
    slack: Duration,
    clocks: &ClockSlack,
) -> Result<(), Violation> {
    // Per (leader node, check instant): the batch's (last heard, executor), and how many the registry held.
    let mut batches: BTreeMap<(&str, Time), Batch> = BTreeMap::new();
    for (_, node, seen) in events {
        if let Seen::Master(Observation::ExecutorOffline { id, name, at, last_heard, among }) = seen {
            let batch = batches.entry((node.as_str(), clock.at(*at))).or_default();
            batch.0.push((clock.at(*last_heard), format!("{} ({name})", id.0)));
            batch.1 = batch.1.max(*among);
        }
    }
    let least = clocks.shortest(policy.ttl + policy.hold);
    for ((node, when), (mut batch, among)) in batches {
        let n = batch.len();
        if n < 2 || n as f64 <= policy.fraction * among as f64 {
            continue;
        }
        batch.sort();
        let (heard, first) = &batch[0];
        if when.saturating_since(*heard) + slack >= least {
            continue;
        }
        let names: Vec<&str> = batch.iter().map(|(_, e)| e.as_str()).collect();
        let detail = format!(
            "{node} declared {n} of the {among} executors it held offline in one check at {when} ({}); executor \
             {first} was last heard at {heard}, less than TTL + suspect hold ({:?}) before: a leader that loses most \
             executors at once must suspect itself and hold the evictions",
            names.join(", "),
            policy.ttl + policy.hold
        );
        return Err(Violation::new(Rule::NoMassEviction, when, detail).with([Id::Master(node.to_owned())]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use foreman::core::ids::ExecutorId;

    const POLICY: EvictionPolicy =
        EvictionPolicy { ttl: Duration::from_secs(10), hold: Duration::from_secs(10), fraction: 0.5 };

    fn offline(clock: &Clock, node: &str, id: u64, when: u64, heard: u64, among: usize) -> (Time, String, Seen) {
        let seen = Seen::Master(Observation::ExecutorOffline {
            id: ExecutorId(id),
            name: format!("e{id}"),
            at: clock.instant(Time::from_millis(when)),
            last_heard: clock.instant(Time::from_millis(heard)),
            among,
        });
        (Time::from_millis(when), node.to_owned(), seen)
    }

    fn check(clock: &Clock, events: &Events) -> Result<(), Violation> {
        no_mass_eviction(clock, events, POLICY, Duration::from_millis(200), &ClockSlack::default())
    }

    #[test]
    fn most_executors_at_once_only_after_the_hold() {
        let clock = Clock::start();
        // Three of four in one check at the TTL: a mass eviction.
        let at_ttl: Vec<_> = (1..=3).map(|id| offline(&clock, "m0", id, 10_500, 0, 4)).collect();
        let v = check(&clock, &at_ttl).unwrap_err();
        assert_eq!((v.rule, v.at), (Rule::NoMassEviction, Time::from_millis(10_500)), "{v}");
        assert!(v.detail.contains("3 of the 4"), "{v}");
        // The same three once the hold ran out: kept; one of them expired during the hold, that is fine too.
        let held: Vec<_> = [(1, 0), (2, 0), (3, 5_000)]
            .into_iter()
            .map(|(id, heard)| offline(&clock, "m0", id, 20_500, heard, 4))
            .collect();
        assert_eq!(check(&clock, &held), Ok(()));
        // Two of four is not more than half; one alone is never a mass eviction.
        let half: Vec<_> = (1..=2).map(|id| offline(&clock, "m0", id, 10_500, 0, 4)).collect();
        assert_eq!(check(&clock, &half), Ok(()));
        assert_eq!(check(&clock, &[offline(&clock, "m0", 1, 10_500, 0, 1)]), Ok(()));
        // Different checks, or different leaders, are different batches.
        let apart = [offline(&clock, "m0", 1, 10_500, 0, 3), offline(&clock, "m0", 2, 11_000, 0, 2)];
        assert_eq!(check(&clock, &apart), Ok(()));
        let leaders = [offline(&clock, "m0", 1, 10_500, 0, 3), offline(&clock, "m1", 2, 10_500, 0, 3)];
        assert_eq!(check(&clock, &leaders), Ok(()));
    }
}
