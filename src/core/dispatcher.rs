//! Two-phase dispatch on an executor: the bookkeeping of parked and running tasks, as plain synchronous state
//! (time in, decisions out; no clock, no I/O), so that every rule is testable without the network. The executor's
//! agent ([`super::agent`]) owns one and judges, before these rules, whether the executor takes a dispatch at all.
//!
//! Rules:
//! - [`Dispatcher::park`] (phase one) parks a validated request under its request id. It is refused when the task
//!   id already runs here ([`Refusal::AlreadyRunning`]), when its epoch is not newer than one this executor has
//!   started for that task ([`Refusal::StaleEpoch`]), when its request id is already parked, when the parking area
//!   is full or the capacity (running plus parked cost) would be exceeded.
//! - Only a confirmed dispatch raises the epoch an executor remembers for a task. A parked one is a claim nobody
//!   has vouched for yet (anyone can send one, with any epoch): were it remembered, a single unconfirmed request
//!   claiming epoch 2^64-1 would make this executor refuse every real dispatch of that task id until it restarts.
//!   So a parked request constrains nothing beyond its own slot, and the confirm judges the epoch again.
//! - A parked request expires `ttl` after it was parked (the executor's `dispatch-ttl`, 5 s by default).
//! - [`Dispatcher::confirm`] (phase two) of an unknown or expired request id is [`Refusal::NotFound`]; otherwise
//!   the task moves to the running set (its cost stays counted until it stops).
//! - Every incarnation that leaves the dispatcher without running on (it stopped, or its parked request expired,
//!   was cleared or could not be confirmed) is kept in a ledger of ended incarnations, reported in every heartbeat
//!   until one carrying it is acknowledged ([`Dispatcher::ended_report`], [`Dispatcher::ended_acked`]): the leader
//!   gives back the slots it reserved for a task that started and ended between two heartbeats. The ledger holds
//!   at most [`ENDED_MAX`] entries (the oldest go first; the leader's reservation window covers what is dropped).
//!
//! Invariants ([`Dispatcher::check_invariants`]): running and parked tasks together use at most the capacity;
//! the parking area holds at most its bound; a running task's epoch is the newest remembered for it; the ledger
//! holds at most [`ENDED_MAX`] entries, in the order they ended.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::ids::{Epoch, ExecutorId, LeaderEpoch, TaskId};
use super::planted::{Planted, Plants};
pub use super::registry::TaskKind;
use super::text::quote;
use super::time::Time;
use super::timing::HeartbeatTiming;

/// How many task ids' newest seen epochs are remembered beyond the running and parked ones. When more are seen,
/// the entries with the lowest epochs (the oldest, as epochs come from one cluster-wide counter) are forgotten.
pub const SEEN_MAX: usize = 65_536;

/// The most ended incarnations kept for the next heartbeat (the most one heartbeat may report).
pub const ENDED_MAX: usize = super::registry::ENDED_TASKS_MAX;

/// A validated dispatch request: everything a task factory needs to start the task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    pub task_id: TaskId,
    pub kind: TaskKind,
    /// The job type (`fake`) and the task's configuration (JSON).
    pub task_type: String,
    pub task_config: Vec<u8>,
    pub job_id: String,
    /// The epoch of this incarnation.
    pub epoch: Epoch,
    /// The master the task must heartbeat, and that master's epoch.
    pub master_id: String,
    pub master_address: String,
    pub master_epoch: Epoch,
    /// The leader epoch behind this dispatch.
    pub leader_epoch: LeaderEpoch,
    pub request_id: String,
    /// At least one slot.
    pub cost: u32,
    /// How the task heartbeats its master and when it fences itself (validated).
    pub timing: HeartbeatTiming,
    /// The registration the dispatcher placed the task on; only that registration may start it.
    pub executor: ExecutorId,
}

/// Why a dispatch call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("task {task} already runs on this executor (epoch {running}); it must stop before epoch {requested} can start here")]
    AlreadyRunning { task: TaskId, running: Epoch, requested: Epoch },
    #[error("task {task} epoch {requested} is stale: this executor has already seen epoch {seen} of it")]
    StaleEpoch { task: TaskId, seen: Epoch, requested: Epoch },
    #[error("request id {} is already parked on this executor", quote(.request_id))]
    DuplicateRequest { request_id: String },
    #[error(
        "the dispatch parking area of this executor is full ({max} requests waiting for confirmation); retry later"
    )]
    ParkingFull { max: usize },
    #[error("task {task} costs {cost} slots but this executor has only {free} of {capacity} free")]
    NoCapacity { task: TaskId, cost: u32, free: u32, capacity: u32 },
    #[error("no parked dispatch with request id {} for task {} (never parked here, already confirmed, or expired after {ttl:?})", quote(.request_id), quote(.task))]
    NotFound { task: String, request_id: String, ttl: Duration },
    #[error("executor {executor} is not registered with a master (registering again); dispatch elsewhere")]
    NotRegistered { executor: String },
    #[error("executor {executor} is shutting down (draining its tasks); dispatch elsewhere")]
    Draining { executor: String },
    #[error(
        "executor {executor} has fenced itself (no acknowledged heartbeat for its self-fence time); dispatch elsewhere"
    )]
    Fenced { executor: String },
    #[error(
        "the task was placed on executor {placed}, but {executor} is registered as {current} now; dispatch elsewhere"
    )]
    OtherRegistration { executor: String, placed: ExecutorId, current: ExecutorId },
    #[error(
        "task {task} epoch {epoch} was placed under leader epoch {placed_under}, but this executor has heard from \
         leader epoch {newest}: that placement may have been given up; place it again"
    )]
    DeposedLeader { task: TaskId, epoch: Epoch, placed_under: LeaderEpoch, newest: LeaderEpoch },
    #[error(
        "task {task} epoch {epoch} was stopped before it could start (the executor fenced itself, was declared \
         offline or began to shut down meanwhile); dispatch elsewhere"
    )]
    StoppedMeanwhile { task: TaskId, epoch: Epoch },
}

#[derive(Clone, Debug)]
struct Parked {
    spec: TaskSpec,
    expires: Time,
}

/// A task in the running set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    pub kind: TaskKind,
    pub epoch: Epoch,
    pub cost: u32,
    /// When it was confirmed: its self-fence counts from here, not from when it starts (its supervisor counts its
    /// TTL from the dispatch, so a task that starts late must not live longer for it).
    pub confirmed: Time,
    /// The task must start before this (confirmed + its self-fence time): later, its supervisor may have given
    /// it up and started another incarnation.
    pub start_by: Time,
}

/// The dispatch bookkeeping of one executor.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    ttl: Duration,
    max_parked: usize,
    capacity: u32,
    /// Request id → parked request.
    parked: BTreeMap<String, Parked>,
    running: BTreeMap<TaskId, Running>,
    /// The newest epoch confirmed (started) per task id.
    seen: BTreeMap<TaskId, Epoch>,
    /// Incarnations that ended here and that no acknowledged heartbeat has reported yet, in the order they ended,
    /// each with its place in that order.
    ended: VecDeque<(u64, TaskId, Epoch)>,
    /// The place of the next ended incarnation.
    ended_next: u64,
    /// The guard switches of the simulation's bug-finding runs (none in production).
    plants: Plants,
}

impl Dispatcher {
    /// `ttl`: how long a parked request waits for its confirmation; `max_parked`: the bound of the parking area;
    /// `capacity`: the slots running and parked tasks may use together.
    pub fn new(ttl: Duration, max_parked: usize, capacity: u32) -> Dispatcher {
        Dispatcher {
            ttl,
            max_parked,
            capacity,
            parked: BTreeMap::new(),
            running: BTreeMap::new(),
            seen: BTreeMap::new(),
            ended: VecDeque::new(),
            ended_next: 0,
            plants: Plants::NONE,
        }
    }

    /// Sets the guard switches (the simulation's bug-finding runs only).
    pub fn plant(&mut self, plants: Plants) {
        self.plants = plants;
    }

    /// The newest epoch confirmed of `task`, as the stale-epoch guard sees it (none with the guard switched off).
    fn seen(&self, task: &TaskId) -> Option<Epoch> {
        self.seen.get(task).copied().filter(|_| !self.plants.has(Planted::ExecutorTakesStaleEpoch))
    }

    /// Slots used by running and parked tasks.
    pub fn used(&self) -> u32 {
        let running: u32 = self.running.values().map(|r| r.cost).sum();
        let parked: u32 = self.parked.values().map(|p| p.spec.cost).sum();
        running.saturating_add(parked)
    }

    pub fn running(&self) -> &BTreeMap<TaskId, Running> {
        &self.running
    }

    pub fn parked_len(&self) -> usize {
        self.parked.len()
    }

    /// The jobs of the parked dispatches.
    pub fn parked_jobs(&self) -> impl Iterator<Item = String> + '_ {
        self.parked.values().map(|p| p.spec.task_id.as_str().split('/').next().unwrap_or_default().to_owned())
    }

    /// Phase one: park `spec` until `now + ttl`.
    pub fn park(&mut self, now: Time, spec: TaskSpec) -> Result<(), Refusal> {
        self.expire(now);
        if let Some(r) = self.running.get(&spec.task_id) {
            return Err(Refusal::AlreadyRunning { task: spec.task_id, running: r.epoch, requested: spec.epoch });
        }
        if let Some(seen) = self.seen(&spec.task_id) {
            if spec.epoch <= seen {
                return Err(Refusal::StaleEpoch { task: spec.task_id, seen, requested: spec.epoch });
            }
        }
        if self.parked.contains_key(&spec.request_id) {
            return Err(Refusal::DuplicateRequest { request_id: spec.request_id });
        }
        if self.parked.len() >= self.max_parked {
            return Err(Refusal::ParkingFull { max: self.max_parked });
        }
        let free = self.capacity.saturating_sub(self.used());
        if spec.cost > free {
            return Err(Refusal::NoCapacity { task: spec.task_id, cost: spec.cost, free, capacity: self.capacity });
        }
        let expires = now + self.ttl;
        self.parked.insert(spec.request_id.clone(), Parked { spec, expires });
        Ok(())
    }

    /// Phase two: the parked request `request_id` for `task_id` moves to the running set; its spec is returned for
    /// the caller to start.
    pub fn confirm(&mut self, now: Time, task_id: &str, request_id: &str) -> Result<TaskSpec, Refusal> {
        self.expire(now);
        let not_found =
            || Refusal::NotFound { task: task_id.to_owned(), request_id: request_id.to_owned(), ttl: self.ttl };
        match self.parked.get(request_id) {
            Some(p) if p.spec.task_id.as_str() == task_id => {}
            _ => return Err(not_found()),
        }
        let spec = self.parked.remove(request_id).map(|p| p.spec).ok_or_else(not_found)?;
        if let Some(r) = self.running.get(&spec.task_id) {
            let refusal =
                Refusal::AlreadyRunning { task: spec.task_id.clone(), running: r.epoch, requested: spec.epoch };
            self.end(spec.task_id, spec.epoch);
            return Err(refusal);
        }
        // An epoch of the same task confirmed since this one was parked (the same one, under another request id,
        // or a newer one): this one is stale.
        if let Some(seen) = self.seen(&spec.task_id) {
            if spec.epoch <= seen {
                let refusal = Refusal::StaleEpoch { task: spec.task_id.clone(), seen, requested: spec.epoch };
                self.end(spec.task_id, spec.epoch);
                return Err(refusal);
            }
        }
        let start_by = now + spec.timing.self_fence;
        let running = Running { kind: spec.kind, epoch: spec.epoch, cost: spec.cost, confirmed: now, start_by };
        self.running.insert(spec.task_id.clone(), running);
        self.remember(spec.task_id.clone(), spec.epoch);
        Ok(spec)
    }

    /// Drops the parked requests whose time is up; returns their request ids.
    pub fn expire(&mut self, now: Time) -> Vec<String> {
        let gone: Vec<String> = self.parked.iter().filter(|(_, p)| p.expires <= now).map(|(k, _)| k.clone()).collect();
        for k in &gone {
            if let Some(p) = self.parked.remove(k) {
                self.end(p.spec.task_id, p.spec.epoch);
            }
        }
        gone
    }

    /// The incarnation `epoch` of `task` stopped; returns whether it was the running one.
    pub fn stopped(&mut self, task: &TaskId, epoch: Epoch) -> bool {
        if self.running.get(task).is_some_and(|r| r.epoch == epoch) {
            self.running.remove(task);
            self.end(task.clone(), epoch);
            true
        } else {
            false
        }
    }

    /// Empties the running set and the parking area (the executor fenced itself or must register again); returns
    /// the tasks that were running. Seen epochs are kept; everything dropped counts as ended.
    pub fn clear(&mut self) -> Vec<(TaskId, Running)> {
        for p in std::mem::take(&mut self.parked).into_values() {
            self.end(p.spec.task_id, p.spec.epoch);
        }
        let running: Vec<(TaskId, Running)> = std::mem::take(&mut self.running).into_iter().collect();
        for (task, r) in &running {
            self.end(task.clone(), r.epoch);
        }
        running
    }

    /// The ended incarnations to report in the next heartbeat, and the mark to acknowledge them by.
    pub fn ended_report(&self) -> (Vec<(TaskId, Epoch)>, Option<u64>) {
        let list = self.ended.iter().map(|(_, t, e)| (t.clone(), *e)).collect();
        (list, self.ended.back().map(|(n, _, _)| *n))
    }

    /// A heartbeat carrying the ended incarnations up to `mark` (from [`Dispatcher::ended_report`]) was
    /// acknowledged: the leader knows of them; they are not reported again.
    pub fn ended_acked(&mut self, mark: u64) {
        while self.ended.front().is_some_and(|(n, _, _)| *n <= mark) {
            self.ended.pop_front();
        }
    }

    /// Forgets every ended incarnation (the executor registered anew: the leader gave its old id's reservations
    /// up with the id).
    pub fn forget_ended(&mut self) {
        self.ended.clear();
    }

    /// Checks the invariants in the module documentation; the error names the broken one with its ids.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.used() > self.capacity {
            return Err(format!(
                "running and parked tasks use {} slots of a capacity of {}",
                self.used(),
                self.capacity
            ));
        }
        if self.parked.len() > self.max_parked {
            return Err(format!("{} requests parked, above the bound of {}", self.parked.len(), self.max_parked));
        }
        for (request, p) in &self.parked {
            if *request != p.spec.request_id {
                return Err(format!("request {request} parked under another id ({})", p.spec.request_id));
            }
        }
        for (task, r) in &self.running {
            if self.seen.get(task) != Some(&r.epoch) {
                return Err(format!(
                    "task {task} runs epoch {} but the newest remembered is {:?}",
                    r.epoch,
                    self.seen.get(task)
                ));
            }
        }
        if self.ended.len() > ENDED_MAX {
            return Err(format!("{} ended incarnations kept, above the bound of {ENDED_MAX}", self.ended.len()));
        }
        let marks: Vec<u64> = self.ended.iter().map(|(n, _, _)| *n).collect();
        if marks.windows(2).any(|w| w[0] >= w[1]) || marks.last().is_some_and(|n| *n >= self.ended_next) {
            return Err(format!("the ended ledger is out of order: {marks:?} (next {})", self.ended_next));
        }
        Ok(())
    }

    fn end(&mut self, task: TaskId, epoch: Epoch) {
        if self.ended.len() >= ENDED_MAX {
            self.ended.pop_front();
        }
        self.ended.push_back((self.ended_next, task, epoch));
        self.ended_next += 1;
    }

    fn remember(&mut self, task: TaskId, epoch: Epoch) {
        let e = self.seen.entry(task).or_default();
        *e = (*e).max(epoch);
        while self.seen.len() > SEEN_MAX + self.running.len() + self.parked.len() + 1 {
            let protected =
                |t: &TaskId| self.running.contains_key(t) || self.parked.values().any(|p| &p.spec.task_id == t);
            let Some(oldest) =
                self.seen.iter().filter(|(t, _)| !protected(t)).min_by_key(|(_, e)| **e).map(|(t, _)| t.clone())
            else {
                break;
            };
            self.seen.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(task: &str, epoch: u64, request: &str, cost: u32) -> Box<TaskSpec> {
        Box::new(TaskSpec {
            task_id: TaskId::parse(task).unwrap(),
            kind: TaskKind::Worker,
            task_type: "sleep".to_owned(),
            task_config: vec![],
            job_id: "j".to_owned(),
            epoch: Epoch(epoch),
            master_id: "m".to_owned(),
            master_address: "10.0.0.1:1".to_owned(),
            master_epoch: Epoch(1),
            leader_epoch: LeaderEpoch(1),
            request_id: request.to_owned(),
            cost,
            timing: HeartbeatTiming::worker_default(),
            executor: ExecutorId(1),
        })
    }

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    enum Op {
        Park(Box<TaskSpec>),
        Confirm(&'static str, &'static str),
        Stop(&'static str, u64),
        Clear,
    }

    /// Runs the steps in order; each has the time, the operation and the expected refusal kind (None: accepted).
    fn run(steps: Vec<(u64, Op, Option<&str>)>) {
        let mut d = Dispatcher::new(Duration::from_secs(5), 2, 4);
        for (n, (at, op, want)) in steps.into_iter().enumerate() {
            let got: Option<Refusal> = match op {
                Op::Park(s) => d.park(ms(at), *s).err(),
                Op::Confirm(t, r) => d.confirm(ms(at), t, r).err(),
                Op::Stop(t, e) => {
                    assert!(d.stopped(&TaskId::parse(t).unwrap(), Epoch(e)), "step {n}: {t} was not running");
                    None
                }
                Op::Clear => {
                    d.clear();
                    None
                }
            };
            let kind = got.as_ref().map(|r| format!("{r:?}"));
            match (kind, want) {
                (None, None) => {}
                (Some(k), Some(w)) if k.starts_with(w) => {}
                (k, w) => panic!("step {n}: got {k:?}, want {w:?}"),
            }
            assert!(d.used() <= 4, "step {n}: over capacity");
            d.check_invariants().unwrap_or_else(|e| panic!("step {n}: {e}"));
        }
    }

    #[test]
    fn dispatch_rules_table() {
        use Op::*;
        run(vec![
            (0, Park(spec("a", 1, "r1", 1)), None),
            (1, Confirm("a", "r1"), None),
            // A running task id is refused, whatever its epoch.
            (2, Park(spec("a", 2, "r2", 1)), Some("AlreadyRunning")),
            (3, Park(spec("a", 1, "r3", 1)), Some("AlreadyRunning")),
            // A confirmed request is gone.
            (4, Confirm("a", "r1"), Some("NotFound")),
            (5, Stop("a", 1), None),
            // Stopped: an epoch not newer than the one seen is stale, a newer one is fine.
            (6, Park(spec("a", 1, "r4", 1)), Some("StaleEpoch")),
            (7, Park(spec("a", 2, "r5", 1)), None),
            // Expiry: parked at 7, gone at 5007; an epoch never confirmed leaves nothing behind.
            (5007, Confirm("a", "r5"), Some("NotFound")),
            (5008, Park(spec("a", 2, "r6", 1)), None),
            (5009, Park(spec("a", 3, "r6", 1)), Some("DuplicateRequest")),
            (5010, Confirm("a", "r6"), None),
            (5011, Stop("a", 2), None),
            (5012, Park(spec("a", 2, "r7", 1)), Some("StaleEpoch")),
        ]);
    }

    #[test]
    fn bounds_table() {
        use Op::*;
        run(vec![
            (0, Park(spec("a", 1, "r1", 1)), None),
            (0, Park(spec("b", 1, "r1", 1)), Some("DuplicateRequest")),
            (0, Park(spec("b", 1, "r2", 1)), None),
            // Two parked: the parking area (2) is full.
            (0, Park(spec("c", 1, "r3", 1)), Some("ParkingFull")),
            (1, Confirm("a", "r1"), None),
            (1, Confirm("b", "r2"), None),
            // Capacity 4, 2 used: a cost of 3 does not fit, 2 does.
            (2, Park(spec("c", 1, "r3", 3)), Some("NoCapacity")),
            (2, Park(spec("c", 1, "r4", 2)), None),
            (3, Park(spec("d", 1, "r5", 1)), Some("NoCapacity")),
            // Wrong task id for the request id.
            (4, Confirm("d", "r4"), Some("NotFound")),
            (4, Confirm("c", "r4"), None),
            (5, Clear, None),
            (6, Park(spec("d", 1, "r6", 4)), None),
            // Cleared tasks keep their seen epochs.
            (6, Park(spec("e", 1, "r6", 1)), Some("DuplicateRequest")),
            (7, Clear, None),
            (8, Park(spec("a", 1, "r7", 1)), Some("StaleEpoch")),
        ]);
    }

    #[test]
    fn a_confirmed_task_must_start_within_its_self_fence_time_from_the_confirmation() {
        let mut d = Dispatcher::new(Duration::from_secs(5), 8, 4);
        d.park(ms(0), *spec("a", 1, "r1", 1)).unwrap();
        let confirmed = d.confirm(ms(700), "a", "r1").unwrap();
        let r = &d.running()[&confirmed.task_id];
        assert_eq!((r.confirmed, r.start_by), (ms(700), ms(700) + HeartbeatTiming::worker_default().self_fence));
    }

    #[test]
    fn of_two_parked_epochs_the_first_confirmed_runs_and_an_older_one_never_after_a_newer() {
        let mut d = Dispatcher::new(Duration::from_secs(5), 8, 8);
        d.park(ms(0), *spec("a", 1, "r1", 1)).unwrap();
        d.park(ms(1), *spec("a", 2, "r2", 1)).unwrap();
        assert_eq!(d.confirm(ms(2), "a", "r2").unwrap().epoch, Epoch(2));
        assert!(matches!(d.confirm(ms(3), "a", "r1"), Err(Refusal::AlreadyRunning { .. })));
        assert!(d.stopped(&TaskId::parse("a").unwrap(), Epoch(2)));
        // Epoch 2 ran: epoch 1, parked before it, never starts after it.
        d.park(ms(4), *spec("a", 1, "r3", 1)).unwrap_err();
        assert_eq!(d.running().len(), 0);
        // The same epoch under two request ids starts once.
        d.park(ms(5), *spec("b", 4, "r4", 1)).unwrap();
        d.park(ms(5), *spec("b", 4, "r5", 1)).unwrap();
        d.confirm(ms(6), "b", "r4").unwrap();
        assert!(d.stopped(&TaskId::parse("b").unwrap(), Epoch(4)));
        assert!(matches!(d.confirm(ms(7), "b", "r5"), Err(Refusal::StaleEpoch { .. })));
    }

    #[test]
    fn an_unconfirmed_dispatch_never_raises_what_the_executor_remembers() {
        // Anyone may park a request claiming any epoch; until it is confirmed it must not stand in the way of the
        // real dispatches of that task id, even of a job that does not exist yet.
        let mut d = Dispatcher::new(Duration::from_secs(5), 8, 8);
        d.park(ms(0), *spec("later", u64::MAX, "bogus", 1)).unwrap();
        d.park(ms(1), *spec("later", 3, "real", 1)).unwrap();
        assert_eq!(d.confirm(ms(2), "later", "real").unwrap().epoch, Epoch(3));
        assert!(d.stopped(&TaskId::parse("later").unwrap(), Epoch(3)));
        // Expired, the bogus request leaves nothing behind: the next incarnation parks and starts.
        d.expire(ms(5000));
        d.park(ms(5001), *spec("later", 4, "real-2", 1)).unwrap();
        assert_eq!(d.confirm(ms(5002), "later", "real-2").unwrap().epoch, Epoch(4));
        // Confirmed, an epoch is remembered: an older one is refused from then on.
        assert!(d.stopped(&TaskId::parse("later").unwrap(), Epoch(4)));
        assert!(matches!(d.park(ms(5003), *spec("later", 3, "old", 1)), Err(Refusal::StaleEpoch { .. })));
    }

    #[test]
    fn every_incarnation_that_leaves_is_reported_ended_until_acknowledged() {
        let mut d = Dispatcher::new(Duration::from_secs(5), 8, 8);
        let ended = |d: &Dispatcher| -> Vec<(String, u64)> {
            d.ended_report().0.into_iter().map(|(t, e)| (t.as_str().to_owned(), e.0)).collect()
        };
        // Ran and stopped between two heartbeats.
        d.park(ms(0), *spec("a", 1, "r1", 1)).unwrap();
        d.confirm(ms(1), "a", "r1").unwrap();
        assert!(d.stopped(&TaskId::parse("a").unwrap(), Epoch(1)));
        // Parked, never confirmed.
        d.park(ms(2), *spec("b", 2, "r2", 1)).unwrap();
        d.expire(ms(5_002));
        // Parked, then a newer epoch confirmed before its own confirm came.
        d.park(ms(5_003), *spec("c", 3, "r3", 1)).unwrap();
        d.park(ms(5_004), *spec("c", 4, "r4", 1)).unwrap();
        d.confirm(ms(5_005), "c", "r4").unwrap();
        assert!(d.confirm(ms(5_005), "c", "r3").is_err());
        assert_eq!(ended(&d), [("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]);
        let (_, mark) = d.ended_report();
        // One more ends while the heartbeat carrying the first three is in flight; its acknowledgement keeps it.
        d.clear();
        d.ended_acked(mark.unwrap());
        assert_eq!(ended(&d), [("c".into(), 4)]);
        d.forget_ended();
        assert_eq!(d.ended_report(), (vec![], None));
        // Bounded: the oldest go first.
        for i in 0..(ENDED_MAX as u64 + 10) {
            d.end(TaskId::parse(&format!("t{i}")).unwrap(), Epoch(i));
        }
        let (list, _) = d.ended_report();
        assert_eq!(list.len(), ENDED_MAX);
        assert_eq!(list[0].1, Epoch(10));
    }
}
