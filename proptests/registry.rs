//! The executor registry ([`Registry`]) against a map of id → last heard with the TTL rule (design.md §5 rule 7,
//! §6).
//!
//! The model holds the next id, each registered executor's last-heard time, whether this leader has heard from
//! it (restored executors are unconfirmed), its capacity and reported usage, the reservations of tasks placed
//! on it, and the self-suspicion start. Operations: registrations (some invalid), heartbeats from live, removed
//! and never-issued ids, repeated registrations (same process: the same id, heard again; a restarted one: not a
//! repeat), removals, liveness checks, placements, time advances and leader changes (a `restore`
//! from the live records, with the persisted id counter sometimes lagging). After every step the properties
//! assert `Registry::check_invariants`, that ids strictly increase and are never reused (`ExecutorIds`), that a
//! removed id's heartbeat is refused with `DeclaredOffline` and an unknown high id's with `Unknown`, that each
//! entry's last-heard and expiry (`last_heard + offline_ttl`) equal the model's, and that only confirmed
//! executors are placed on, within capacity. With `suspect_fraction: 1.0` a check declares offline exactly the
//! model's expired set; with the default 0.5 it either evicts all expired executors or holds all of them, and no
//! executor is ever held for `suspect_hold` or longer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use foreman::core::ids::{Epoch, ExecutorId, TaskId};
use foreman::core::invariants::{placement_fits, ExecutorIds};
use foreman::core::labels::Labels;
use foreman::core::placement::{PlacementError, PlacementPolicy, PlacementRequest};
use foreman::core::registry::{
    ExecutorRecord, ExecutorSpec, Registry, RegistryError, RegistryPolicy, ReportedTask, Status, TaskKind,
};
use foreman::core::rng::SplitMix64;
use foreman::core::time::Time;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::gen::{advance, config, millis, rule, task};

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Register {
        capacity: u32,
    },
    /// `which` picks among the ids issued so far (live or removed); `None` is a never-issued id `ahead` above
    /// the counter.
    /// `fenced`: the executor was fenced when it sent it (no work for it until a heartbeat says it is not).
    Heartbeat {
        which: Option<prop::sample::Index>,
        ahead: u64,
        tasks: Vec<(u8, u32)>,
        fenced: bool,
    },
    Remove {
        which: prop::sample::Index,
    },
    /// The registration of the `which`-th issued id again, by the same process or (`same` false) a restarted one.
    Repeat {
        which: prop::sample::Index,
        same: bool,
    },
    Check,
    Place {
        task: u8,
        cost: u32,
        seed: u64,
    },
    /// A leader change `gap` ms later; the persisted id counter lags by up to `lag` (a lost counter write).
    Failover {
        gap: u64,
        lag: prop::sample::Index,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => advance(1_500, 12_000).prop_map(Op::Advance),
        3 => prop_oneof![1 => Just(0u32), 8 => 1u32..5].prop_map(|capacity| Op::Register { capacity }),
        6 => (
            prop::option::weighted(0.9, any::<prop::sample::Index>()),
            0u64..3,
            prop::collection::vec((0u8..6, 1u32..3), 0..3),
            prop::bool::weighted(0.15),
        )
            .prop_map(|(which, ahead, tasks, fenced)| Op::Heartbeat { which, ahead, tasks, fenced }),
        1 => any::<prop::sample::Index>().prop_map(|which| Op::Remove { which }),
        2 => (any::<prop::sample::Index>(), prop::bool::weighted(0.8)).prop_map(|(which, same)| Op::Repeat { which, same }),
        4 => Just(Op::Check),
        2 => (0u8..6, 1u32..3, any::<u64>()).prop_map(|(task, cost, seed)| Op::Place { task, cost, seed }),
        1 => (advance(2_000, 8_000), any::<prop::sample::Index>()).prop_map(|(gap, lag)| Op::Failover { gap, lag }),
    ]
}

#[derive(Clone, Debug)]
struct MExec {
    last_heard: Time,
    confirmed: bool,
    /// Heard under its id since this leader admitted it (restored ones count as heard): only then placeable.
    heard: bool,
    /// Its latest heartbeat said it was fenced: not placeable until one says it is not.
    fenced: bool,
    capacity: u32,
    reported: u64,
}

impl MExec {
    fn placeable(&self) -> bool {
        self.confirmed && self.heard && !self.fenced
    }
}

#[derive(Debug)]
struct Model {
    ttl: Duration,
    next_id: u64,
    /// Every id ever handed out.
    issued: Vec<ExecutorId>,
    executors: BTreeMap<ExecutorId, MExec>,
    /// task → (executor, cost, expiry): placed, not yet reported by that executor, its window not yet over.
    reservations: BTreeMap<TaskId, (ExecutorId, u64, Time)>,
    suspect_since: Option<Time>,
    /// When each currently held executor was first held (since it last expired).
    held_since: BTreeMap<ExecutorId, Time>,
}

impl Model {
    fn expired(&self, now: Time) -> BTreeSet<ExecutorId> {
        self.executors.iter().filter(|(_, e)| e.last_heard + self.ttl <= now).map(|(&id, _)| id).collect()
    }

    fn used(&self, id: ExecutorId) -> u64 {
        let reserved: u64 = self.reservations.values().filter(|(e, _, _)| *e == id).map(|(_, c, _)| c).sum();
        self.executors[&id].reported + reserved
    }

    fn remove(&mut self, id: ExecutorId) {
        self.executors.remove(&id);
        self.reservations.retain(|_, (e, _, _)| *e != id);
        self.held_since.remove(&id);
    }
}

fn spec(n: usize, capacity: u32) -> ExecutorSpec {
    ExecutorSpec {
        name: format!("ex-{n}"),
        address: format!("10.0.0.{}:10340", n % 250 + 1),
        capacity,
        labels: Labels::new(),
        instance: n as u64 + 1,
    }
}

fn run(policy: RegistryPolicy, ops: &[Op]) -> Result<(), TestCaseError> {
    let placement = PlacementPolicy::default();
    let fraction = policy.suspect_fraction;
    let hold = policy.suspect_hold;
    let mut reg = Registry::new(policy.clone(), placement.clone());
    let mut ids = ExecutorIds::default();
    let mut m = Model {
        ttl: policy.offline_ttl,
        next_id: 1,
        issued: vec![],
        executors: BTreeMap::new(),
        reservations: BTreeMap::new(),
        suspect_since: None,
        held_since: BTreeMap::new(),
    };
    let mut now = Time::ZERO;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Advance(d) => now = now + Duration::from_millis(*d),
            Op::Register { capacity } => match reg.register(now, spec(m.issued.len(), *capacity)) {
                Ok(record) => {
                    prop_assert!(*capacity > 0, "step {}: capacity 0 accepted", step);
                    prop_assert_eq!(record.id, ExecutorId(m.next_id), "step {}", step);
                    rule(ids.on_register(now, record.id))?;
                    m.next_id += 1;
                    m.issued.push(record.id);
                    let e = MExec {
                        last_heard: now,
                        confirmed: true,
                        heard: false,
                        fenced: false,
                        capacity: *capacity,
                        reported: 0,
                    };
                    m.executors.insert(record.id, e);
                }
                Err(e) => {
                    prop_assert!(*capacity == 0, "step {}: refused {:?}", step, e);
                    let capacity_refused = matches!(e, RegistryError::InvalidSpec { field: "capacity", .. });
                    prop_assert!(capacity_refused, "step {}: {:?}", step, e);
                }
            },
            Op::Heartbeat { which, ahead, tasks, fenced } => {
                let id = match which {
                    Some(i) if !m.issued.is_empty() => m.issued[i.index(m.issued.len())],
                    _ => ExecutorId(m.next_id + ahead),
                };
                let reported: Vec<ReportedTask> = tasks
                    .iter()
                    .map(|&(t, cost)| ReportedTask { task: task(t), kind: TaskKind::Worker, epoch: Epoch(1), cost })
                    .collect();
                let got = reg.heartbeat_reporting(now, id, reported, &[], *fenced);
                let want = match m.executors.get_mut(&id) {
                    Some(e) => {
                        e.last_heard = now;
                        e.confirmed = true;
                        e.heard = true;
                        e.fenced = *fenced;
                        e.reported = tasks.iter().map(|&(_, c)| u64::from(c)).sum();
                        if *fenced {
                            // Out of the placer: whatever was reserved there is given up with it.
                            m.reservations.retain(|_, (on, _, _)| *on != id);
                        }
                        for &(t, _) in tasks {
                            if m.reservations.get(&task(t)).is_some_and(|(on, _, _)| *on == id) {
                                m.reservations.remove(&task(t));
                            }
                        }
                        m.held_since.remove(&id);
                        Ok(())
                    }
                    None if m.issued.contains(&id) => Err(RegistryError::DeclaredOffline { id }),
                    None => Err(RegistryError::Unknown { id }),
                };
                prop_assert_eq!(got, want, "step {}", step);
            }
            Op::Remove { which } => {
                if !m.issued.is_empty() {
                    let id = m.issued[which.index(m.issued.len())];
                    let got = reg.remove(id).map(|r| r.id);
                    prop_assert_eq!(got, m.executors.contains_key(&id).then_some(id), "step {}", step);
                    m.remove(id);
                }
            }
            Op::Repeat { which, same } => {
                if !m.issued.is_empty() {
                    let i = which.index(m.issued.len());
                    let id = m.issued[i];
                    let mut again = spec(i, 1);
                    if !same {
                        again.instance += 1_000_000;
                    }
                    let got = reg.repeat(now, &again).map(|r| r.id);
                    let want = match m.executors.get_mut(&id) {
                        Some(e) if *same && e.confirmed => {
                            e.last_heard = now;
                            e.confirmed = true;
                            m.held_since.remove(&id);
                            Some(id)
                        }
                        _ => None,
                    };
                    prop_assert_eq!(got, want, "step {}: repeat of {} (same process: {})", step, id, same);
                }
            }
            Op::Check => {
                let out = reg.check(now);
                // Reservations whose window is over go on the same cadence.
                m.reservations.retain(|_, (_, _, expires)| *expires > now);
                let expired = m.expired(now);
                let offline: BTreeSet<ExecutorId> = out.offline.iter().map(|r| r.id).collect();
                let held: BTreeSet<ExecutorId> = out.held.iter().copied().collect();
                prop_assert_eq!(offline.len(), out.offline.len(), "step {}: an executor declared offline twice", step);
                // All or nothing: every expired executor goes, or every one is held.
                prop_assert!(
                    (offline == expired && held.is_empty()) || (held == expired && offline.is_empty()),
                    "step {}: expired {:?}, offline {:?}, held {:?}",
                    step,
                    expired,
                    offline,
                    held
                );
                let mass = expired.len() >= 2 && expired.len() as f64 > fraction * m.executors.len() as f64;
                let began = mass && m.suspect_since.is_none();
                let since = *m.suspect_since.get_or_insert(now);
                let hold_until = since + hold;
                prop_assert_eq!(out.suspicion_began, began, "step {}", step);
                if mass && now < hold_until {
                    prop_assert_eq!(&held, &expired, "step {}: a mass expiry within the hold is held", step);
                    prop_assert_eq!(out.next_deadline, Some(hold_until), "step {}", step);
                    for &id in &expired {
                        let first = *m.held_since.entry(id).or_insert(now);
                        prop_assert!(
                            now - first < hold,
                            "step {}: {} held since {} (hold {:?})",
                            step,
                            id,
                            first,
                            hold
                        );
                    }
                } else {
                    prop_assert_eq!(&offline, &expired, "step {}: every expired executor goes offline", step);
                    m.suspect_since = None;
                    for id in expired {
                        m.remove(id);
                    }
                    let next = m.executors.values().map(|e| e.last_heard + m.ttl).min();
                    prop_assert_eq!(out.next_deadline, next, "step {}", step);
                }
                if fraction >= 1.0 {
                    prop_assert!(out.held.is_empty() && !out.suspicion_began, "step {}: no guard at 1.0", step);
                }
            }
            Op::Place { task: t, cost, seed } => {
                let t = task(*t);
                let req = PlacementRequest { task: &t, epoch: None, cost: *cost, selectors: &[], resources: &[] };
                // The usage the placer shows before the call agrees with the model's; placing a task again gives
                // up its earlier reservation first, so the fit is judged without it.
                for (&id, e) in &m.executors {
                    prop_assert_eq!(reg.placer().used(id), e.placeable().then(|| m.used(id)), "step {}: {}", step, id);
                }
                m.reservations.remove(&t);
                let fits = |id: ExecutorId| m.used(id) + u64::from(*cost) <= u64::from(m.executors[&id].capacity);
                let confirmed: Vec<ExecutorId> =
                    m.executors.iter().filter(|(_, e)| e.placeable()).map(|(&id, _)| id).collect();
                match reg.place(now, &req, &mut SplitMix64::new(*seed)) {
                    Ok(p) => {
                        let e = m.executors.get(&p.executor);
                        prop_assert!(
                            e.is_some_and(|e| e.placeable()),
                            "step {}: placed on {} ({:?})",
                            step,
                            p.executor,
                            e
                        );
                        let e = &m.executors[&p.executor];
                        let used = m.used(p.executor);
                        rule(placement_fits(now, &t, p.executor, true, used, *cost, e.capacity))?;
                        m.reservations.insert(t, (p.executor, u64::from(*cost), now + placement.reservation_ttl));
                    }
                    Err(PlacementError::NoExecutors) => {
                        prop_assert!(
                            confirmed.is_empty(),
                            "step {}: no executors, but {:?} are confirmed",
                            step,
                            confirmed
                        )
                    }
                    Err(PlacementError::InsufficientCapacity { .. }) => {
                        let fit: Vec<_> = confirmed.iter().copied().filter(|&id| fits(id)).collect();
                        prop_assert!(fit.is_empty(), "step {}: no capacity, but {:?} fit", step, fit);
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("step {step}: unexpected {e:?}"))),
                }
            }
            Op::Failover { gap, lag } => {
                let records: Vec<ExecutorRecord> = reg.iter().map(|v| v.record.clone()).collect();
                // The persisted counter may lag behind the highest restored id, never behind a removed one.
                let removed_max = m.issued.iter().filter(|id| !m.executors.contains_key(id)).map(|id| id.0).max();
                let lo = removed_max.map_or(1, |r| r + 1);
                let persisted = lo + lag.index((m.next_id - lo + 1) as usize) as u64;
                now = now + Duration::from_millis(*gap);
                reg = Registry::restore(policy.clone(), placement.clone(), now, ExecutorId(persisted), records);
                prop_assert_eq!(
                    reg.next_id(),
                    ExecutorId(m.next_id),
                    "step {}: counter raised above the records",
                    step
                );
                for e in m.executors.values_mut() {
                    *e = MExec { last_heard: now, confirmed: false, heard: true, fenced: false, reported: 0, ..*e };
                }
                m.reservations.clear();
                m.suspect_since = None;
                m.held_since.clear();
            }
        }
        rule(reg.check_invariants())?;
        prop_assert_eq!(reg.suspecting(), m.suspect_since.is_some(), "step {}", step);
        prop_assert_eq!(reg.next_id(), ExecutorId(m.next_id), "step {}", step);
        prop_assert_eq!(reg.len(), m.executors.len(), "step {}", step);
        for v in reg.iter() {
            let Some(e) = m.executors.get(&v.record.id) else {
                return Err(TestCaseError::fail(format!("step {step}: {} is not in the model", v.record.id)));
            };
            prop_assert_eq!(v.last_heard, e.last_heard, "step {}: {}", step, v.record.id);
            prop_assert_eq!(v.expires_at, e.last_heard + m.ttl, "step {}: {}", step, v.record.id);
            let status = if e.confirmed { Status::Online } else { Status::Unconfirmed };
            prop_assert_eq!(v.status, status, "step {}: {}", step, v.record.id);
            let used = reg.placer().used(v.record.id);
            prop_assert_eq!(used, e.placeable().then(|| m.used(v.record.id)), "step {}: {}", step, v.record.id);
        }
    }
    Ok(())
}

fn policy(suspect_fraction: f64) -> impl Strategy<Value = RegistryPolicy> {
    (millis(1_000, 5_000), millis(1_000, 8_000)).prop_map(move |(ttl, hold)| RegistryPolicy {
        offline_ttl: Duration::from_millis(ttl),
        suspect_fraction,
        suspect_hold: Duration::from_millis(hold),
        one_offline_per_check: false,
    })
}

proptest! {
    #![proptest_config(config())]

    /// With the mass-expiry guard off, every check declares offline exactly the expired executors.
    #[test]
    fn registry_expires_exactly_the_silent(policy in policy(1.0), ops in prop::collection::vec(op(), 1..60)) {
        run(policy, &ops)?;
    }

    /// With the default guard, a mass expiry is held as a whole, and never for `suspect_hold` or longer.
    #[test]
    fn registry_holds_mass_expiry_for_a_bounded_time(
        policy in policy(RegistryPolicy::default().suspect_fraction),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(policy, &ops)?;
    }
}
