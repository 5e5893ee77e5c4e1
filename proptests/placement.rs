//! Placement ([`Placer`]) against a direct statement of design.md §7.
//!
//! The model holds up to 12 executors (capacity, labels from small alphabets so selectors often hit, reported
//! usage) and the live reservations (task → executor, cost, incarnation, expiry). Operations: upserts, removals,
//! usage reports (running tasks and ended incarnations, each settling the reservations made for that incarnation
//! or an older one), the leader's word that an incarnation ended, placements with random selectors (`Eq`, `Neq`,
//! `Regex` with simple patterns), costs, resource pins and incarnations, releases, reservation expiry and time
//! advances. After every step the property asserts
//! `Placer::check`, that the placer's usage and reservations equal the model's, and at every placement that:
//! a success picks a present executor that satisfies every selector and its pin, fits (`placement_fits` with the
//! usage seen before the call), and under `LeastLoaded` (`BinPack`) has the minimal (maximal) utilization after
//! placing among the executors the model says fit; a failure is exactly the error the model predicts (cost,
//! pins, no executors, which selector, how much capacity); and the same RNG seed makes the same choice.

use std::collections::BTreeMap;
use std::time::Duration;

use foreman::core::ids::{Epoch, ExecutorId, TaskId};
use foreman::core::invariants::placement_fits;
use foreman::core::labels::{Labels, Selector, SelectorOp};
use foreman::core::placement::{
    PlacementError, PlacementPolicy, PlacementRequest, Placer, ResourcePin, Strategy as Scoring,
};
use foreman::core::rng::SplitMix64;
use foreman::core::time::Time;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::gen::{advance, config, millis, rule, task};

const KEYS: [&str; 3] = ["zone", "disk", "gpu"];
const VALUES: [&str; 3] = ["a", "b", "c"];
const PATTERNS: [&str; 7] = ["^a", "a|b", "[bc]", "^c$", ".", "b$", "x"];
/// Executor ids 1..=12 exist; 13 never does (a pin to it is unavailable).
const EXECUTORS: u64 = 12;

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Upsert {
        id: u64,
        capacity: u32,
        labels: Labels,
        reported: u32,
    },
    Remove {
        id: u64,
    },
    /// Running (task, incarnation, cost) and ended (task, incarnation).
    Report {
        id: u64,
        tasks: Vec<(u8, u64, u32)>,
        ended: Vec<(u8, u64)>,
    },
    /// The leader learned that this incarnation of the task ended.
    Ended {
        task: u8,
        epoch: u64,
    },
    Place {
        task: u8,
        epoch: Option<u64>,
        cost: u32,
        selectors: Vec<Selector>,
        pins: Vec<ResourcePin>,
        seed: u64,
    },
    Release {
        task: u8,
    },
    Expire,
}

fn labels() -> impl Strategy<Value = Labels> {
    prop::collection::vec(prop::option::weighted(0.6, prop::sample::select(&VALUES[..])), KEYS.len())
        .prop_map(|vs| KEYS.iter().zip(vs).filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string()))).collect())
}

fn selector() -> impl Strategy<Value = Selector> {
    let key = prop::sample::select(&KEYS[..]);
    prop_oneof![
        (key.clone(), prop::sample::select(&VALUES[..])).prop_map(|(k, v)| Selector::new(k, SelectorOp::Eq, v)),
        (key.clone(), prop::sample::select(&VALUES[..])).prop_map(|(k, v)| Selector::new(k, SelectorOp::Neq, v)),
        (key, prop::sample::select(&PATTERNS[..])).prop_map(|(k, p)| Selector::new(k, SelectorOp::Regex, p)),
    ]
    .prop_map(|s| s.expect("generated selectors are valid"))
}

fn pin() -> impl Strategy<Value = ResourcePin> {
    (0u8..3, prop::option::weighted(0.7, 1..=EXECUTORS + 1))
        .prop_map(|(r, e)| ResourcePin { resource: format!("/local/r{r}"), executor: e.map(ExecutorId) })
}

fn op() -> impl Strategy<Value = Op> {
    let id = 1..=EXECUTORS;
    prop_oneof![
        2 => advance(2_000, 10_000).prop_map(Op::Advance),
        4 => (id.clone(), 1u32..9, labels(), prop_oneof![3 => Just(0u32), 1 => 0u32..10])
            .prop_map(|(id, capacity, labels, reported)| Op::Upsert { id, capacity, labels, reported }),
        1 => id.clone().prop_map(|id| Op::Remove { id }),
        2 => (id, prop::collection::vec((0u8..10, 1u64..6, 1u32..4), 0..4), prop::collection::vec((0u8..10, 1u64..6), 0..4))
            .prop_map(|(id, tasks, ended)| Op::Report { id, tasks, ended }),
        1 => (0u8..10, 1u64..6).prop_map(|(task, epoch)| Op::Ended { task, epoch }),
        6 => (
            0u8..10,
            prop::option::weighted(0.8, 1u64..6),
            prop_oneof![1 => Just(0u32), 12 => 1u32..5],
            prop::collection::vec(selector(), 0..3),
            prop_oneof![4 => Just(vec![]), 1 => prop::collection::vec(pin(), 1..3)],
            any::<u64>(),
        )
            .prop_map(|(task, epoch, cost, selectors, pins, seed)| Op::Place { task, epoch, cost, selectors, pins, seed }),
        1 => (0u8..10).prop_map(|task| Op::Release { task }),
        1 => Just(Op::Expire),
    ]
}

#[derive(Clone, Debug)]
struct MExec {
    capacity: u32,
    labels: Labels,
    reported: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MRes {
    executor: ExecutorId,
    cost: u32,
    epoch: Option<u64>,
    expires_at: Time,
}

impl MRes {
    /// design.md §7 and placement.rs: a report of incarnation `epoch` settles a reservation made for it or an older
    /// one; a report that the task runs also settles one made for an unknown incarnation, an ended one never.
    fn settled_by(&self, epoch: u64, running: bool) -> bool {
        self.epoch.map_or(running, |e| epoch >= e)
    }
}

#[derive(Debug, Default)]
struct Model {
    executors: BTreeMap<ExecutorId, MExec>,
    reservations: BTreeMap<TaskId, MRes>,
}

impl Model {
    fn used(&self, id: ExecutorId) -> u64 {
        let reserved: u64 = self.reservations.values().filter(|r| r.executor == id).map(|r| u64::from(r.cost)).sum();
        u64::from(self.executors[&id].reported) + reserved
    }

    fn free(&self, id: ExecutorId) -> u64 {
        u64::from(self.executors[&id].capacity).saturating_sub(self.used(id))
    }

    fn remove(&mut self, id: ExecutorId) {
        self.executors.remove(&id);
        self.reservations.retain(|_, r| r.executor != id);
    }

    /// The outcome design.md §7 asks for, as the set of acceptable executors (all tied at the best score) or the
    /// one error. Called after the task's own earlier reservation was released.
    fn expect(&self, cost: u32, selectors: &[Selector], pins: &[ResourcePin], strategy: Scoring) -> Expected {
        if cost == 0 {
            return Expected::Err(PlacementError::ZeroCost);
        }
        let mut pinned: Option<(&str, ExecutorId)> = None;
        for p in pins {
            let Some(e) = p.executor else { continue };
            match pinned {
                None => pinned = Some((&p.resource, e)),
                Some((first, fe)) if fe != e => {
                    return Expected::Err(PlacementError::ResourceConflict {
                        first: first.to_owned(),
                        first_executor: fe,
                        second: p.resource.clone(),
                        second_executor: e,
                    })
                }
                Some(_) => {}
            }
        }
        let mut candidates: Vec<ExecutorId> = match pinned {
            Some((resource, e)) if !self.executors.contains_key(&e) => {
                return Expected::Err(PlacementError::PinnedUnavailable { resource: resource.to_owned(), executor: e })
            }
            Some((_, e)) => vec![e],
            None => self.executors.keys().copied().collect(),
        };
        if candidates.is_empty() {
            return Expected::Err(PlacementError::NoExecutors);
        }
        for sel in selectors {
            let before = candidates.len();
            candidates.retain(|id| sel.matches(&self.executors[id].labels));
            if candidates.is_empty() {
                return Expected::Err(match pinned {
                    Some((resource, executor)) => PlacementError::PinnedRejected {
                        resource: resource.to_owned(),
                        executor,
                        selector: sel.to_string(),
                    },
                    None => PlacementError::SelectorUnsatisfied { selector: sel.to_string(), candidates: before },
                });
            }
        }
        let best_free = candidates.iter().map(|&id| self.free(id)).max().expect("candidates are not empty");
        let fit: Vec<ExecutorId> = candidates.iter().copied().filter(|&id| self.free(id) >= u64::from(cost)).collect();
        if fit.is_empty() {
            return Expected::Err(match pinned {
                Some((resource, executor)) => {
                    PlacementError::PinnedFull { resource: resource.to_owned(), executor, free: best_free as u32, cost }
                }
                None => PlacementError::InsufficientCapacity {
                    cost,
                    best_free: best_free as u32,
                    largest: candidates.iter().map(|id| self.executors[id].capacity).max().unwrap_or(0),
                    candidates: candidates.len(),
                },
            });
        }
        // Utilization after placing, as an exact fraction (used + cost) / capacity.
        let util = |id: ExecutorId| (self.used(id) + u64::from(cost), u64::from(self.executors[&id].capacity));
        let cmp = |a: (u64, u64), b: (u64, u64)| (a.0 * b.1).cmp(&(b.0 * a.1));
        let best = fit
            .iter()
            .map(|&id| util(id))
            .reduce(|a, b| match (strategy, cmp(a, b)) {
                (Scoring::LeastLoaded, std::cmp::Ordering::Greater) | (Scoring::BinPack, std::cmp::Ordering::Less) => b,
                _ => a,
            })
            .expect("fit is not empty");
        Expected::Ok(fit.into_iter().filter(|&id| cmp(util(id), best).is_eq()).collect())
    }
}

#[derive(Debug)]
enum Expected {
    Ok(Vec<ExecutorId>),
    Err(PlacementError),
}

fn run(policy: PlacementPolicy, ops: &[Op]) -> Result<(), TestCaseError> {
    let strategy = policy.strategy;
    let ttl = policy.reservation_ttl;
    let mut placer = Placer::new(policy);
    let mut m = Model::default();
    let mut now = Time::ZERO;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Advance(d) => now = now + Duration::from_millis(*d),
            Op::Upsert { id, capacity, labels, reported } => {
                let id = ExecutorId(*id);
                placer.upsert(id, *capacity, labels, *reported);
                // Same labels: capacity and usage are updated in place. Other labels: it is a different
                // executor as far as placement goes, and the old one's reservations go with it.
                if m.executors.get(&id).is_some_and(|e| &e.labels != labels) {
                    m.remove(id);
                }
                m.executors.insert(id, MExec { capacity: *capacity, labels: labels.clone(), reported: *reported });
            }
            Op::Remove { id } => {
                placer.remove(ExecutorId(*id));
                m.remove(ExecutorId(*id));
            }
            Op::Report { id, tasks, ended } => {
                let id = ExecutorId(*id);
                let reported: Vec<(TaskId, u64, u32)> = tasks.iter().map(|&(t, e, c)| (task(t), e, c)).collect();
                let ended: Vec<(TaskId, u64)> = ended.iter().map(|&(t, e)| (task(t), e)).collect();
                placer.report(
                    id,
                    reported.iter().map(|(t, e, c)| (t, Epoch(*e), *c)),
                    ended.iter().map(|(t, e)| (t, Epoch(*e))),
                );
                if let Some(e) = m.executors.get_mut(&id) {
                    e.reported = reported.iter().map(|(_, _, c)| c).sum();
                    let settles =
                        reported.iter().map(|(t, e, _)| (t, *e, true)).chain(ended.iter().map(|(t, e)| (t, *e, false)));
                    for (t, epoch, running) in settles {
                        if m.reservations.get(t).is_some_and(|r| r.executor == id && r.settled_by(epoch, running)) {
                            m.reservations.remove(t);
                        }
                    }
                }
            }
            Op::Ended { task: t, epoch } => {
                let t = task(*t);
                placer.ended(&t, Epoch(*epoch));
                if m.reservations.get(&t).is_some_and(|r| r.settled_by(*epoch, false)) {
                    m.reservations.remove(&t);
                }
            }
            Op::Place { task: t, epoch, cost, selectors, pins, seed } => {
                let t = task(*t);
                let req =
                    PlacementRequest { task: &t, epoch: epoch.map(Epoch), cost: *cost, selectors, resources: pins };
                let twin = placer.clone().place(now, &req, &mut SplitMix64::new(*seed));
                let got = placer.place(now, &req, &mut SplitMix64::new(*seed));
                prop_assert_eq!(&got, &twin, "step {}: same seed, same choice", step);
                if *cost > 0 {
                    m.reservations.remove(&t);
                }
                match (m.expect(*cost, selectors, pins, strategy), got) {
                    (Expected::Ok(best), Ok(p)) => {
                        let present = m.executors.contains_key(&p.executor);
                        rule(placement_fits(now, &t, p.executor, present, 0, 0, 0))?;
                        let e = &m.executors[&p.executor];
                        let used_before = m.used(p.executor);
                        rule(placement_fits(now, &t, p.executor, present, used_before, *cost, e.capacity))?;
                        for sel in selectors.iter() {
                            prop_assert!(
                                sel.matches(&e.labels),
                                "step {}: {} does not satisfy {}",
                                step,
                                p.executor,
                                sel
                            );
                        }
                        if let Some(pinned) = pins.iter().find_map(|p| p.executor) {
                            prop_assert_eq!(p.executor, pinned, "step {}: pin ignored", step);
                        }
                        prop_assert!(
                            best.contains(&p.executor),
                            "step {}: {:?} chose {} but the best are {:?}",
                            step,
                            strategy,
                            p.executor,
                            best
                        );
                        let free_after = u64::from(e.capacity) - used_before - u64::from(*cost);
                        prop_assert_eq!(u64::from(p.free_after), free_after, "step {}", step);
                        let res = MRes { executor: p.executor, cost: *cost, epoch: *epoch, expires_at: now + ttl };
                        m.reservations.insert(t.clone(), res);
                    }
                    (Expected::Err(want), Err(e)) => prop_assert_eq!(e, want, "step {}", step),
                    (want, got) => {
                        return Err(TestCaseError::fail(format!("step {step}: expected {want:?}, got {got:?}")))
                    }
                }
            }
            Op::Release { task: t } => {
                placer.release(&task(*t));
                m.reservations.remove(&task(*t));
            }
            Op::Expire => {
                let next = placer.expire(now);
                m.reservations.retain(|_, r| r.expires_at > now);
                prop_assert_eq!(next, m.reservations.values().map(|r| r.expires_at).min(), "step {}", step);
            }
        }
        rule(placer.check())?;
        prop_assert_eq!(placer.len(), m.executors.len(), "step {}", step);
        for id in (1..=EXECUTORS + 1).map(ExecutorId) {
            let want = m.executors.contains_key(&id).then(|| m.used(id));
            prop_assert_eq!(placer.used(id), want, "step {}: usage of {}", step, id);
        }
        for t in (0..10).map(task) {
            prop_assert_eq!(placer.reservation(&t), m.reservations.get(&t).map(|r| r.executor), "step {}", step);
        }
    }
    Ok(())
}

fn policy() -> impl Strategy<Value = PlacementPolicy> {
    (prop_oneof![Just(Scoring::LeastLoaded), Just(Scoring::BinPack)], millis(1, 6_000))
        .prop_map(|(strategy, ttl)| PlacementPolicy { strategy, reservation_ttl: Duration::from_millis(ttl) })
}

proptest! {
    #![proptest_config(config())]

    /// Filters, capacity, score, errors and determinism of placement decisions.
    #[test]
    fn placement_follows_the_model(policy in policy(), ops in prop::collection::vec(op(), 1..60)) {
        run(policy, &ops)?;
    }
}
