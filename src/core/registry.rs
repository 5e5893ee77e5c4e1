//! The executor registry: who is online, judged by heartbeats (design.md §5 rule 7, §6).
//!
//! Executors register and get an id from a counter that only grows, so an id is never reused; an executor the
//! leader declared offline that heartbeats again is refused and must register anew. `check(now)` declares
//! offline *every* executor whose TTL expired, in one pass, unless so many expired at once that the leader more
//! likely lost the network than the executors their lives: then it suspects itself and holds those evictions for
//! a bounded time. A new leader restores the registry with a fresh TTL for every executor and places nothing on
//! an executor until it has heard from it (its usage is unknown until then).
//!
//! The registry owns the [`Placer`] and keeps it in step: the placer holds exactly the confirmed online executors.
//!
//! Invariants ([`Registry::check_invariants`]): every id is below `next_id`; the placer holds exactly the
//! confirmed entries, with their labels and capacity; no entry's TTL runs past `last_heard + offline_ttl`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ids::{Epoch, ExecutorId, TaskId};
use super::labels::{validate_labels, LabelError, Labels};
use super::placement::{Placement, PlacementError, PlacementPolicy, PlacementRequest, Placer};
use super::planted::{Planted, Plants};
use super::rng::Rng;
use super::time::Time;

/// The most slots one executor may declare.
pub const CAPACITY_MAX: u32 = 1_000_000;
/// The most tasks one heartbeat may report.
pub const REPORTED_TASKS_MAX: usize = 100_000;
/// The most ended incarnations one heartbeat may report (an executor keeps at most this many unacknowledged).
pub const ENDED_TASKS_MAX: usize = 4_096;
/// The longest executor name and address.
pub const NAME_MAX_LEN: usize = 63;
pub const ADDRESS_MAX_LEN: usize = 255;

/// Liveness settings of the registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegistryPolicy {
    /// With no heartbeat for this long, an executor is declared offline.
    pub offline_ttl: Duration,
    /// If more than this fraction of the executors expire at once (and at least two), the leader suspects
    /// itself. 1.0 turns the guard off.
    pub suspect_fraction: f64,
    /// How long the leader holds evictions while it suspects itself; then it evicts anyway.
    pub suspect_hold: Duration,
    /// A planted bug (the simulation's bug-finding runs only): each check declares at most one executor offline,
    /// as the original system did.
    pub one_offline_per_check: bool,
}

impl Default for RegistryPolicy {
    fn default() -> RegistryPolicy {
        RegistryPolicy {
            offline_ttl: Duration::from_secs(10),
            suspect_fraction: 0.5,
            suspect_hold: Duration::from_secs(10),
            one_offline_per_check: false,
        }
    }
}

/// What an executor says about itself when it registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorSpec {
    pub name: String,
    pub address: String,
    pub capacity: u32,
    pub labels: Labels,
    /// Drawn by the executor process when it starts (0: not given). A registration whose name and instance match
    /// a registered executor is a repeat (a retried call whose earlier attempt was admitted, its reply lost or
    /// late) and gets that executor's id back instead of a second id nobody will ever heartbeat.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub instance: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The durable form of a registered executor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorRecord {
    pub id: ExecutorId,
    pub spec: ExecutorSpec,
}

/// What kind of task an executor reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskKind {
    JobMaster,
    Worker,
}

/// One task an executor reports running.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedTask {
    pub task: TaskId,
    pub kind: TaskKind,
    pub epoch: Epoch,
    pub cost: u32,
}

/// One incarnation an executor reports ended since its last acknowledged heartbeat: it ran and stopped, or its
/// dispatch was parked and never confirmed. Its slots are free again; a reservation made for it can go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndedTask {
    pub task: TaskId,
    pub epoch: Epoch,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RegistryError {
    #[error("executor {field} {} is not valid: {rule}", super::text::quote(.value))]
    InvalidSpec { field: &'static str, value: String, rule: String },
    #[error("executor labels are not valid: {0}")]
    InvalidLabels(#[from] LabelError),
    #[error("executor {id} was declared offline; it must stop its tasks and register again")]
    DeclaredOffline { id: ExecutorId },
    #[error("executor {id} was never registered with this cluster; it must register")]
    Unknown { id: ExecutorId },
    #[error("a heartbeat reported {count} tasks; at most {max} are allowed")]
    TooManyTasks { count: usize, max: usize },
    #[error("a heartbeat reported {count} ended tasks; at most {max} are allowed")]
    TooManyEnded { count: usize, max: usize },
}

/// Whether the leader has heard from an executor during its term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Restored by a new leader and not yet heard from: it has a fresh TTL but nothing is placed on it.
    Unconfirmed,
    /// Registered with, or heard from by, this leader.
    Online,
    /// Heard from, shutting down: nothing is placed on it any more; it deregisters once its tasks stopped (or
    /// expires like any other, if it goes silent first). It stays draining until it leaves.
    Draining,
}

/// A registered executor as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorView {
    pub record: ExecutorRecord,
    pub status: Status,
    pub last_heard: Time,
    pub expires_at: Time,
    pub tasks: Vec<ReportedTask>,
}

/// An executor as the registry holds it, borrowed: what [`Registry::get`] and [`Registry::iter`] give, so that a
/// pass over every executor (the job manager's checks and placements, each step) copies nothing;
/// [`ExecutorRef::to_view`] makes the owned [`ExecutorView`] an answer keeps.
#[derive(Clone, Copy, Debug)]
pub struct ExecutorRef<'a> {
    pub record: &'a ExecutorRecord,
    pub status: Status,
    pub last_heard: Time,
    pub expires_at: Time,
    pub tasks: &'a [ReportedTask],
}

impl ExecutorRef<'_> {
    pub fn to_view(&self) -> ExecutorView {
        ExecutorView {
            record: self.record.clone(),
            status: self.status,
            last_heard: self.last_heard,
            expires_at: self.expires_at,
            tasks: self.tasks.to_vec(),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    record: ExecutorRecord,
    status: Status,
    last_heard: Time,
    expires_at: Time,
    tasks: Vec<ReportedTask>,
    /// This leader took a heartbeat under this id since it admitted it (restored ones count as heard before). An
    /// executor it admitted gets no work before: the registration's answer may never reach the executor (its call
    /// timed out and it registers again), and a dispatch to an id its executor does not know is refused, a job
    /// master's start thrown away (swarm seed 1796432208, found by the wasted-work checker: a job master placed on
    /// such an id 23 ms after the registration was written, at the cluster's start, with no fault).
    heartbeated: bool,
    /// A dispatch could not connect to it: no work is placed on it until this time (one offline TTL later).
    unreachable_until: Option<Time>,
    /// Its latest heartbeat said it was fenced when sent: it takes no dispatch until a heartbeat of its is
    /// acknowledged, so nothing is placed on it until one says otherwise. A heartbeat sent during a cut and
    /// delivered late is no proof the executor takes work (a leader resumed from a pause placed job masters four
    /// times in a second on an executor still fenced by a cut just healed, each dispatch refused: swarm seed
    /// 1795945331, found by the wasted-work checker).
    fenced: bool,
}

/// What one liveness check decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Declared offline now: their records are to be deleted and their work moved.
    pub offline: Vec<ExecutorRecord>,
    /// Expired but held, because the leader suspects itself.
    pub held: Vec<ExecutorId>,
    /// The leader began to suspect itself in this check.
    pub suspicion_began: bool,
    /// When the next executor would expire (or the hold end), if any.
    pub next_deadline: Option<Time>,
    /// How many executors the registry held when the check began (those declared offline now among them).
    pub among: usize,
}

/// The executor registry of one leader term.
#[derive(Clone, Debug)]
pub struct Registry {
    policy: RegistryPolicy,
    next_id: ExecutorId,
    entries: BTreeMap<ExecutorId, Entry>,
    placer: Placer,
    suspect_since: Option<Time>,
    /// The guard switches of the simulation's bug-finding runs (none in production).
    plants: Plants,
}

impl Registry {
    /// An empty registry: the first leader of a new cluster.
    pub fn new(policy: RegistryPolicy, placement: PlacementPolicy) -> Registry {
        Registry {
            policy,
            next_id: ExecutorId(1),
            entries: BTreeMap::new(),
            placer: Placer::new(placement),
            suspect_since: None,
            plants: Plants::NONE,
        }
    }

    /// A new leader's registry: every persisted executor gets a fresh TTL from `now` and stays unconfirmed (not
    /// placed on) until it heartbeats. `next_id` is the persisted counter; it is raised above every restored id
    /// in case the counter write was lost.
    pub fn restore(
        policy: RegistryPolicy,
        placement: PlacementPolicy,
        now: Time,
        next_id: ExecutorId,
        records: impl IntoIterator<Item = ExecutorRecord>,
    ) -> Registry {
        let mut r = Registry::new(policy, placement);
        r.next_id = next_id.max(ExecutorId(1));
        for record in records {
            r.next_id = r.next_id.max(record.id.next());
            let expires_at = now + r.policy.offline_ttl;
            r.entries.insert(
                record.id,
                Entry {
                    record,
                    status: Status::Unconfirmed,
                    last_heard: now,
                    expires_at,
                    tasks: vec![],
                    heartbeated: true,
                    fenced: false,
                    unreachable_until: None,
                },
            );
        }
        r
    }

    pub fn policy(&self) -> &RegistryPolicy {
        &self.policy
    }

    /// The id the next registration will get; every id below it was used.
    pub fn next_id(&self) -> ExecutorId {
        self.next_id
    }

    /// Validates a registration.
    pub fn validate_spec(spec: &ExecutorSpec) -> Result<(), RegistryError> {
        let invalid = |field, value: &str, rule: &str| RegistryError::InvalidSpec {
            field,
            value: value.to_owned(),
            rule: rule.to_owned(),
        };
        let name_ok = !spec.name.is_empty()
            && spec.name.len() <= NAME_MAX_LEN
            && spec.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(invalid("name", &spec.name, "use 1 to 63 letters, digits, '-', '_' and '.'"));
        }
        let address_ok = spec.address.len() <= ADDRESS_MAX_LEN
            && spec.address.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) && !host.contains("://")
            });
        if !address_ok {
            return Err(invalid("address", &spec.address, "write host:port with a port from 1 to 65535, no scheme"));
        }
        if spec.capacity == 0 || spec.capacity > CAPACITY_MAX {
            return Err(invalid("capacity", &spec.capacity.to_string(), "declare 1 to 1000000 slots"));
        }
        validate_labels(&spec.labels)?;
        Ok(())
    }

    /// The executor a registration repeats, if it is one (same name and process instance as an executor this
    /// leader admitted or heard from, see [`ExecutorSpec::instance`]): hearing it again keeps that executor online for another TTL, and
    /// the caller answers with its id; nothing new needs to be written.
    pub fn repeat(&mut self, now: Time, spec: &ExecutorSpec) -> Option<ExecutorRecord> {
        if spec.instance == 0 {
            return None;
        }
        // Only an executor this leader admitted or heard: a restored one may be a registration whose write was
        // reported failed (the process then registered again, under a newer id), and must not hand that older id
        // back (found by the swarm).
        let e = self.entries.values_mut().find(|e| {
            e.status == Status::Online && e.record.spec.name == spec.name && e.record.spec.instance == spec.instance
        })?;
        e.last_heard = now;
        e.expires_at = now + self.policy.offline_ttl;
        e.status = Status::Online;
        if e.unreachable_until.is_some_and(|until| now < until) {
            return Some(e.record.clone());
        }
        e.unreachable_until = None;
        let (id, capacity) = (e.record.id, e.record.spec.capacity);
        let reported = e.tasks.iter().fold(0u32, |sum, t| sum.saturating_add(t.cost));
        let record = e.record.clone();
        if e.heartbeated && !e.fenced && !self.placer.contains(id) {
            self.placer.upsert(id, capacity, &record.spec.labels, reported);
        }
        Some(record)
    }

    /// Admits a new executor with the next id. The caller persists the record and [`Registry::next_id`] before
    /// answering; if that fails it calls [`Registry::remove`] (the id stays used).
    pub fn register(&mut self, now: Time, spec: ExecutorSpec) -> Result<ExecutorRecord, RegistryError> {
        Self::validate_spec(&spec)?;
        let id = self.next_id;
        self.next_id = id.next();
        let record = ExecutorRecord { id, spec };
        // Not placeable until its first heartbeat under this id (see [`Entry::heartbeated`]).
        let expires_at = now + self.policy.offline_ttl;
        self.entries.insert(
            id,
            Entry {
                record: record.clone(),
                status: Status::Online,
                last_heard: now,
                expires_at,
                tasks: vec![],
                heartbeated: false,
                unreachable_until: None,
                fenced: false,
            },
        );
        Ok(record)
    }

    /// A heartbeat of an executor that was not fenced when it sent it: see [`Registry::heartbeat_reporting`].
    pub fn heartbeat(
        &mut self,
        now: Time,
        id: ExecutorId,
        tasks: Vec<ReportedTask>,
        ended: &[EndedTask],
    ) -> Result<(), RegistryError> {
        self.heartbeat_reporting(now, id, tasks, ended, false)
    }

    /// A heartbeat: the executor stays online for another TTL and its report becomes the truth for its usage;
    /// the reservations its report settles (the tasks it runs, the incarnations that ended there) are released.
    /// `fenced`: it was fenced when it sent it, and gets no work until a heartbeat says it is not.
    pub fn heartbeat_reporting(
        &mut self,
        now: Time,
        id: ExecutorId,
        tasks: Vec<ReportedTask>,
        ended: &[EndedTask],
        fenced: bool,
    ) -> Result<(), RegistryError> {
        if tasks.len() > REPORTED_TASKS_MAX {
            return Err(RegistryError::TooManyTasks { count: tasks.len(), max: REPORTED_TASKS_MAX });
        }
        if ended.len() > ENDED_TASKS_MAX {
            return Err(RegistryError::TooManyEnded { count: ended.len(), max: ENDED_TASKS_MAX });
        }
        let Some(e) = self.entries.get_mut(&id) else {
            if self.plants.has(Planted::OfflineHeartbeatAccepted) && id < self.next_id {
                return Ok(());
            }
            return Err(if id < self.next_id {
                RegistryError::DeclaredOffline { id }
            } else {
                RegistryError::Unknown { id }
            });
        };
        e.last_heard = now;
        e.expires_at = now + self.policy.offline_ttl;
        // Heard, maybe through a follower: a leader that could not connect to it still holds it out for a while.
        let held = e.unreachable_until.is_some_and(|until| now < until);
        if !held {
            e.unreachable_until = None;
        }
        if e.status != Status::Draining {
            e.status = Status::Online;
        }
        e.fenced = fenced;
        if fenced {
            self.placer.remove(id);
        }
        if e.status != Status::Draining && !held && !fenced {
            let reported = tasks.iter().fold(0u32, |sum, t| sum.saturating_add(t.cost));
            if !self.placer.contains(id) {
                self.placer.upsert(id, e.record.spec.capacity, &e.record.spec.labels, reported);
            }
            self.placer.report(
                id,
                tasks.iter().map(|t| (&t.task, t.epoch, t.cost)),
                ended.iter().map(|t| (&t.task, t.epoch)),
            );
        }
        e.tasks = tasks;
        if !std::mem::replace(&mut e.heartbeated, true) {
            self.supersede_older(id);
        }
        Ok(())
    }

    /// The first heartbeat under `id` proves its process alive now: every older id of its name under another
    /// process instance (the process restarted, or was replaced) gets no new work from here on. Placing there only
    /// wastes a dispatch the executor at that address refuses (swarm seed 95002: a job master placed on the id of
    /// a process restarted seconds before, found by the wasted-work checker). Not at the registration: a dead
    /// process's registration may arrive late, after its successor's, and must not take work from it (seed
    /// 95558); nor from a heartbeat under an older id. The old id is not declared offline early: only its TTL
    /// running out proves its tasks stopped (two live processes under one name, a misconfiguration, look like a
    /// restart from here); until then it stays as a draining one does.
    fn supersede_older(&mut self, id: ExecutorId) {
        let Some(spec) = self.entries.get(&id).map(|e| e.record.spec.clone()) else { return };
        if spec.instance == 0 {
            return;
        }
        for e in self.entries.range_mut(..id).map(|(_, e)| e) {
            let other_process = e.record.spec.name == spec.name && e.record.spec.instance != spec.instance;
            if other_process && e.status == Status::Online {
                e.status = Status::Draining;
                self.placer.remove(e.record.id);
            }
        }
    }

    /// A dispatch to executor `id` could not connect to it at `now`: nothing more is placed on it for one offline
    /// TTL, heard or not (a leader cut off from its executors hears them through its followers), so the jobs' tries
    /// are not spent on dispatches that cannot arrive (swarm seed 300504: a job failed after 100 refused connections
    /// in 30 s of a leader cut from every executor). Its TTL runs on as before; the first check or heartbeat after
    /// the hold makes it placeable again. Whether it was placeable before.
    pub fn unreachable(&mut self, now: Time, id: ExecutorId) -> bool {
        let Some(e) = self.entries.get_mut(&id) else { return false };
        if e.status != Status::Online || e.unreachable_until.is_some() {
            return false;
        }
        e.unreachable_until = Some(now + self.policy.offline_ttl);
        self.placer.remove(id);
        true
    }

    /// Executor `id` said it is shutting down: nothing more is placed on it. Call it after the heartbeat that
    /// said so was taken. Whether it was not draining before.
    pub fn drain(&mut self, id: ExecutorId) -> Result<bool, RegistryError> {
        let Some(e) = self.entries.get_mut(&id) else { return Err(RegistryError::Unknown { id }) };
        let began = e.status != Status::Draining;
        e.status = Status::Draining;
        self.placer.remove(id);
        Ok(began)
    }

    /// Takes an executor out of the registry (it deregistered, or its registration could not be persisted).
    pub fn remove(&mut self, id: ExecutorId) -> Option<ExecutorRecord> {
        self.placer.remove(id);
        self.entries.remove(&id).map(|e| e.record)
    }

    /// The liveness check: declares offline every executor whose TTL expired by `now`, unless the leader
    /// suspects itself (see [`RegistryPolicy::suspect_fraction`]). Reservations whose window ended by `now` are
    /// released on the same cadence.
    pub fn check(&mut self, now: Time) -> CheckOutcome {
        self.placer.expire(now);
        // Holds of unreachable executors that ran out: placeable again, on their last report.
        for (&id, e) in self.entries.iter_mut() {
            if e.unreachable_until.is_some_and(|until| until <= now) {
                e.unreachable_until = None;
                if e.status == Status::Online && e.heartbeated && !e.fenced {
                    let reported = e.tasks.iter().fold(0u32, |sum, t| sum.saturating_add(t.cost));
                    self.placer.upsert(id, e.record.spec.capacity, &e.record.spec.labels, reported);
                }
            }
        }
        // The whole TTL, unless the guard is switched off (then half of it: before the executor's self-fence).
        let early = if self.plants.has(Planted::EarlyOffline) { self.policy.offline_ttl / 2 } else { Duration::ZERO };
        let expired: Vec<ExecutorId> =
            self.entries.iter().filter(|(_, e)| e.expires_at <= now + early).map(|(&id, _)| id).collect();
        let mut out = CheckOutcome { among: self.entries.len(), ..CheckOutcome::default() };
        let mass = !self.plants.has(Planted::NoEvictionHold)
            && expired.len() >= 2
            && expired.len() as f64 > self.policy.suspect_fraction * self.entries.len() as f64;
        if mass {
            let since = *self.suspect_since.get_or_insert_with(|| {
                out.suspicion_began = true;
                now
            });
            let hold_until = since + self.policy.suspect_hold;
            if now < hold_until {
                out.held = expired;
                out.next_deadline = Some(hold_until);
                return out;
            }
        }
        self.suspect_since = None;
        let mut expired = expired;
        if self.policy.one_offline_per_check {
            expired.truncate(1);
        }
        for id in expired {
            if let Some(record) = self.remove(id) {
                out.offline.push(record);
            }
        }
        out.next_deadline = self.entries.values().map(|e| e.expires_at).min();
        out
    }

    /// Incarnation `epoch` of `task` holds no slot, as the leader learned otherwise than from its executor (see
    /// [`Placer::ended`]).
    pub fn task_ended(&mut self, task: &TaskId, epoch: Epoch) {
        self.placer.ended(task, epoch);
    }

    /// Plants the bug "one offline executor per check" (the simulation's bug-finding runs only).
    pub fn plant_one_offline_per_check(&mut self) {
        self.policy.one_offline_per_check = true;
    }

    /// Sets the guard switches (the simulation's bug-finding runs only). With
    /// [`Planted::RestoredPlacedUnheard`], every restored executor is placed on at once, before it is heard.
    pub fn plant(&mut self, plants: Plants) {
        self.plants = plants;
        self.placer.plant(plants);
        if plants.has(Planted::RestoredPlacedUnheard) {
            for e in self.entries.values_mut().filter(|e| e.status == Status::Unconfirmed) {
                e.status = Status::Online;
                self.placer.upsert(e.record.id, e.record.spec.capacity, &e.record.spec.labels, 0);
            }
        }
    }

    /// Whether the leader currently suspects itself of being cut off.
    pub fn suspecting(&self) -> bool {
        self.suspect_since.is_some()
    }

    /// Places a task on a confirmed online executor (see [`Placer::place`]).
    pub fn place(
        &mut self,
        now: Time,
        req: &PlacementRequest<'_>,
        rng: &mut impl Rng,
    ) -> Result<Placement, PlacementError> {
        self.placer.place(now, req, rng)
    }

    pub fn placer(&self) -> &Placer {
        &self.placer
    }

    pub fn placer_mut(&mut self) -> &mut Placer {
        &mut self.placer
    }

    /// Whether an executor is registered (confirmed or not).
    pub fn contains(&self, id: ExecutorId) -> bool {
        self.entries.contains_key(&id)
    }

    /// One executor.
    pub fn get(&self, id: ExecutorId) -> Option<ExecutorRef<'_>> {
        self.entries.get(&id).map(view)
    }

    /// The name an executor registered under, without a copy of its entry (the role check asks it of every
    /// heartbeat and job master message).
    pub fn name(&self, id: ExecutorId) -> Option<&str> {
        self.entries.get(&id).map(|e| e.record.spec.name.as_str())
    }

    /// When this leader last heard from an executor that it registered or heard from in its term; `None` for one
    /// not yet confirmed (restored by a new leader) or unknown.
    pub fn last_heard(&self, id: ExecutorId) -> Option<Time> {
        self.entries.get(&id).filter(|e| e.status == Status::Online).map(|e| e.last_heard)
    }

    /// Every registered executor, in id order.
    pub fn iter(&self) -> impl Iterator<Item = ExecutorRef<'_>> + '_ {
        self.entries.values().map(view)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks the invariants; the message names the one broken and the ids involved.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (&id, e) in &self.entries {
            if id >= self.next_id {
                return Err(format!("registry: {id} is not below next_id {}", self.next_id));
            }
            if e.record.id != id {
                return Err(format!("registry: entry {id} holds record {}", e.record.id));
            }
            if e.expires_at > e.last_heard + self.policy.offline_ttl {
                return Err(format!(
                    "registry: {id} expires at {} past last_heard {} + ttl",
                    e.expires_at, e.last_heard
                ));
            }
            let placed = self.placer.contains(id);
            if placed != placeable(e) {
                return Err(format!(
                    "registry: {id} is {:?} (unreachable until {:?}) but schedulable={placed}",
                    e.status, e.unreachable_until
                ));
            }
        }
        if self.placer.len() != self.entries.values().filter(|e| placeable(e)).count() {
            return Err("registry: the placer holds executors the registry does not have online".to_owned());
        }
        self.placer.check()
    }
}

/// Whether the placer must hold `e`: online, heard under its id since it registered, not held out as unreachable,
/// and not fenced by its own latest word.
fn placeable(e: &Entry) -> bool {
    e.status == Status::Online && e.heartbeated && e.unreachable_until.is_none() && !e.fenced
}

fn view(e: &Entry) -> ExecutorRef<'_> {
    ExecutorRef {
        record: &e.record,
        status: e.status,
        last_heard: e.last_heard,
        expires_at: e.expires_at,
        tasks: &e.tasks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::SplitMix64;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    fn spec(name: &str) -> ExecutorSpec {
        ExecutorSpec {
            name: name.into(),
            address: format!("{name}:10340"),
            capacity: 4,
            labels: Labels::new(),
            instance: 0,
        }
    }

    fn reg() -> Registry {
        Registry::new(RegistryPolicy::default(), PlacementPolicy::default())
    }

    fn task(s: &str, cost: u32) -> ReportedTask {
        ReportedTask { task: TaskId::parse(s).unwrap(), kind: TaskKind::Worker, epoch: Epoch(1), cost }
    }

    #[test]
    fn ids_are_never_reused() {
        let mut r = reg();
        let a = r.register(ms(0), spec("a")).unwrap().id;
        r.remove(a);
        let b = r.register(ms(0), spec("a")).unwrap().id;
        assert!(b > a);
        // A restored registry continues above the highest restored id even if the counter lagged behind.
        let rec = ExecutorRecord { id: ExecutorId(40), spec: spec("x") };
        let r = Registry::restore(RegistryPolicy::default(), PlacementPolicy::default(), ms(0), ExecutorId(3), [rec]);
        assert_eq!(r.next_id(), ExecutorId(41));
    }

    /// Swarm seed 95002 (the wasted-work checker): a restarted process registers under a new id while its old id
    /// still has TTL left; once the new id is heard, the old id gets no new work, yet expires only by its TTL. A
    /// registration alone proves nothing (seed 95558: a dead process's late registration must not take the work of
    /// its live successor), nor does a heartbeat under the older id.
    #[test]
    fn a_restarted_process_leaves_its_old_id_without_new_work() {
        let mut r = reg();
        let ttl = RegistryPolicy::default().offline_ttl;
        let old = r.register(ms(0), ExecutorSpec { instance: 7, ..spec("a") }).unwrap().id;
        let other = r.register(ms(1_000), ExecutorSpec { instance: 3, ..spec("b") }).unwrap().id;
        let new = r.register(ms(1_000), ExecutorSpec { instance: 8, ..spec("a") }).unwrap().id;
        assert_eq!(r.get(old).unwrap().status, Status::Online, "registered, not heard yet");
        r.heartbeat(ms(1_100), old, vec![], &[]).unwrap();
        assert_eq!(r.get(new).unwrap().status, Status::Online, "the older id's heartbeat supersedes nothing");
        r.heartbeat(ms(1_200), new, vec![], &[]).unwrap();
        assert_eq!(r.get(old).unwrap().status, Status::Draining);
        assert_eq!((r.get(new).unwrap().status, r.get(other).unwrap().status), (Status::Online, Status::Online));
        r.check_invariants().unwrap();
        // A late registration of the dead process, heard never: its successor keeps its work.
        let late = r.register(ms(1_300), ExecutorSpec { instance: 7, ..spec("a") }).unwrap().id;
        assert_eq!((r.get(new).unwrap().status, r.get(late).unwrap().status), (Status::Online, Status::Online));
        // Still awaited: declared offline when its TTL runs out, not before.
        r.heartbeat(ms(1_300), other, vec![], &[]).unwrap();
        r.heartbeat(ms(1_300), new, vec![], &[]).unwrap();
        let heard = ttl.as_millis() as u64 + 1_100;
        assert!(r.check(ms(heard - 1)).offline.is_empty());
        let out = r.check(ms(heard + 1));
        assert_eq!(out.offline.iter().map(|rec| rec.id).collect::<Vec<_>>(), vec![old]);
        // A registration without an instance cannot tell a restart: it supersedes nothing.
        let mut r = reg();
        let a = r.register(ms(0), spec("a")).unwrap().id;
        let b = r.register(ms(1), spec("a")).unwrap().id;
        r.heartbeat(ms(2), b, vec![], &[]).unwrap();
        assert_eq!(r.get(a).unwrap().status, Status::Online);
    }

    /// Swarm seed 300504: an executor a dispatch could not reach gets no more work until it is heard again.
    #[test]
    fn an_unreachable_executor_gets_no_work_until_heard() {
        let mut r = reg();
        let a = r.register(ms(0), ExecutorSpec { instance: 1, ..spec("a") }).unwrap().id;
        let ttl = RegistryPolicy::default().offline_ttl.as_millis() as u64;
        assert!(r.unreachable(ms(0), a), "it was placeable");
        assert!(!r.unreachable(ms(1), a), "once is enough");
        assert_eq!(r.get(a).unwrap().status, Status::Online, "still online: its TTL decides");
        let schedulable = |r: &Registry| r.check_invariants().map(|_| r.placer.contains(a));
        assert_eq!(schedulable(&r), Ok(false));
        // Heard (through a follower, say) within the hold: still held out, but alive.
        r.heartbeat(ms(ttl - 10), a, vec![], &[]).unwrap();
        assert_eq!(schedulable(&r), Ok(false));
        assert!(r.check(ms(ttl - 5)).offline.is_empty());
        // The hold over: the check makes it placeable again, and so would a heartbeat.
        assert!(r.check(ms(ttl)).offline.is_empty());
        assert_eq!(schedulable(&r), Ok(true));
        assert!(r.unreachable(ms(ttl), a));
        r.heartbeat(ms(2 * ttl), a, vec![], &[]).unwrap();
        assert_eq!(schedulable(&r), Ok(true));
        assert!(!r.unreachable(ms(0), ExecutorId(99)), "an unknown id changes nothing");
    }

    /// Swarm seed 1796432208: an id whose registration's answer never reached its executor got a job master.
    #[test]
    fn a_registered_executor_gets_work_only_once_heard_under_its_id() {
        let mut r = reg();
        let first = ExecutorSpec { instance: 7, ..spec("a") };
        let a = r.register(ms(0), first.clone()).unwrap().id;
        let schedulable = |r: &Registry| r.check_invariants().map(|_| r.placer.contains(a));
        assert_eq!(schedulable(&r), Ok(false), "registered, its executor may not know the id yet");
        // Its repeat (the answer was lost) is not proof either; its heartbeat under the id is.
        assert_eq!(r.repeat(ms(100), &first).map(|rec| rec.id), Some(a));
        assert_eq!(schedulable(&r), Ok(false));
        r.heartbeat(ms(200), a, vec![], &[]).unwrap();
        assert_eq!(schedulable(&r), Ok(true));
    }

    #[test]
    fn a_repeated_registration_gets_the_same_id_and_counts_as_hearing_it() {
        let mut r = reg();
        let ttl = RegistryPolicy::default().offline_ttl;
        let first = ExecutorSpec { instance: 7, ..spec("a") };
        let a = r.register(ms(0), first.clone()).unwrap().id;
        // The same process again (its first reply was lost): the same id, another TTL from now.
        let later = ms(ttl.as_millis() as u64 - 1);
        assert_eq!(r.repeat(later, &first).map(|rec| rec.id), Some(a));
        assert!(r.check(ms(ttl.as_millis() as u64 + 1)).offline.is_empty(), "the repeat was heard");
        // Another process of that name (restarted), or a registration without an instance: not a repeat.
        assert_eq!(r.repeat(later, &ExecutorSpec { instance: 8, ..spec("a") }), None);
        assert_eq!(r.repeat(later, &spec("a")), None);
        assert_eq!(r.repeat(later, &ExecutorSpec { instance: 7, ..spec("b") }), None);
        // Once declared offline, the same process registering again is a new executor.
        let out = r.check(later + ttl + Duration::from_millis(1));
        assert_eq!(out.offline.iter().map(|rec| rec.id).collect::<Vec<_>>(), vec![a]);
        assert_eq!(r.repeat(later + ttl * 2, &first), None);
        assert!(r.register(later + ttl * 2, first.clone()).unwrap().id > a);
        // Restored by a new leader and not heard from yet: maybe a registration reported failed, so not a repeat.
        let rec = ExecutorRecord { id: ExecutorId(9), spec: first.clone() };
        let mut r =
            Registry::restore(RegistryPolicy::default(), PlacementPolicy::default(), ms(0), ExecutorId(10), [rec]);
        assert_eq!(r.repeat(ms(1), &first), None);
        r.heartbeat(ms(2), ExecutorId(9), vec![], &[]).unwrap();
        assert_eq!(r.repeat(ms(3), &first).map(|rec| rec.id), Some(ExecutorId(9)));
    }

    #[test]
    fn registration_validation_table() {
        let base = spec("ok");
        // (mutation, field named in the error)
        let table: Vec<(ExecutorSpec, &str)> = vec![
            (ExecutorSpec { name: "".into(), ..base.clone() }, "name"),
            (ExecutorSpec { name: "a b".into(), ..base.clone() }, "name"),
            (ExecutorSpec { address: "nohost".into(), ..base.clone() }, "address"),
            (ExecutorSpec { address: "h:0".into(), ..base.clone() }, "address"),
            (ExecutorSpec { address: "http://h:1".into(), ..base.clone() }, "address"),
            (ExecutorSpec { capacity: 0, ..base.clone() }, "capacity"),
            (ExecutorSpec { capacity: CAPACITY_MAX + 1, ..base.clone() }, "capacity"),
            (ExecutorSpec { labels: [("bad key".into(), "v".into())].into(), ..base.clone() }, "labels"),
        ];
        for (s, field) in table {
            let mut r = reg();
            let e = r.register(ms(0), s.clone()).unwrap_err().to_string();
            assert!(e.contains(field), "{s:?}: {e}");
            assert!(r.is_empty() && r.next_id() == ExecutorId(1), "a refused registration changes nothing");
        }
    }

    /// Two executors heard at 10 ms: `a` runs nothing, `b` a task of cost 3 (least-loaded placement picks `a`).
    fn empty_a_busy_b() -> (Registry, ExecutorId, ExecutorId) {
        let mut r = reg();
        let a = r.register(ms(0), spec("a")).unwrap().id;
        let b = r.register(ms(0), spec("b")).unwrap().id;
        r.heartbeat(ms(10), a, vec![], &[]).unwrap();
        r.heartbeat(ms(10), b, vec![task("x", 3)], &[]).unwrap();
        (r, a, b)
    }

    #[test]
    fn an_executor_that_says_it_is_fenced_gets_nothing_until_a_heartbeat_says_it_is_not() {
        let (mut r, a, b) = empty_a_busy_b();
        // A heartbeat a sent while fenced (delivered late, after a cut): it keeps a alive, and a out of placement.
        r.heartbeat_reporting(ms(20), a, vec![], &[], true).unwrap();
        r.check_invariants().unwrap();
        assert_eq!(r.get(a).unwrap().status, Status::Online, "alive: its TTL runs from this heartbeat");
        let ttl = RegistryPolicy::default().offline_ttl.as_millis() as u64;
        assert_eq!(r.get(a).unwrap().expires_at, ms(20 + ttl));
        let t = TaskId::parse("t").unwrap();
        let req = PlacementRequest { task: &t, epoch: None, cost: 1, selectors: &[], resources: &[] };
        for seed in 0..16 {
            assert_eq!(r.clone().place(ms(30), &req, &mut SplitMix64::new(seed)).unwrap().executor, b, "seed {seed}");
        }
        // Still fenced: still nothing. Then a heartbeat sent once its fence was lifted: a is the emptier one again.
        r.heartbeat_reporting(ms(520), a, vec![], &[], true).unwrap();
        assert_eq!(r.clone().place(ms(530), &req, &mut SplitMix64::new(0)).unwrap().executor, b);
        r.heartbeat(ms(1_020), a, vec![], &[]).unwrap();
        r.check_invariants().unwrap();
        for seed in 0..16 {
            assert_eq!(
                r.clone().place(ms(1_030), &req, &mut SplitMix64::new(seed)).unwrap().executor,
                a,
                "seed {seed}"
            );
        }
    }

    #[test]
    fn a_draining_executor_gets_nothing_new_stays_draining_and_still_expires() {
        let (mut r, a, b) = empty_a_busy_b();
        assert_eq!(r.drain(a), Ok(true));
        assert_eq!(r.drain(a), Ok(false), "already draining");
        assert_eq!(r.drain(ExecutorId(99)), Err(RegistryError::Unknown { id: ExecutorId(99) }));
        r.check_invariants().unwrap();
        // a is the emptier one, yet every placement goes to b.
        let t = TaskId::parse("t").unwrap();
        let req = PlacementRequest { task: &t, epoch: None, cost: 1, selectors: &[], resources: &[] };
        for seed in 0..16 {
            assert_eq!(r.clone().place(ms(20), &req, &mut SplitMix64::new(seed)).unwrap().executor, b);
        }
        // Its heartbeats keep it alive but never make it placeable again.
        r.heartbeat(ms(500), a, vec![], &[]).unwrap();
        assert_eq!(r.get(a).unwrap().status, Status::Draining);
        r.check_invariants().unwrap();
        // Silent past its TTL, it is declared offline like any other.
        let ttl = RegistryPolicy::default().offline_ttl.as_millis() as u64;
        r.heartbeat(ms(ttl + 400), b, vec![], &[]).unwrap();
        assert_eq!(r.check(ms(ttl + 500)).offline.iter().map(|rec| rec.id).collect::<Vec<_>>(), vec![a]);
        r.check_invariants().unwrap();
    }

    #[test]
    fn heartbeat_outcomes_table() {
        let mut r = reg();
        let a = r.register(ms(0), spec("a")).unwrap().id;
        let b = r.register(ms(0), spec("b")).unwrap().id;
        r.remove(b);
        // (executor, expected)
        assert_eq!(r.heartbeat(ms(100), a, vec![task("t", 2)], &[]), Ok(()));
        assert_eq!(r.heartbeat(ms(100), b, vec![], &[]), Err(RegistryError::DeclaredOffline { id: b }));
        assert_eq!(
            r.heartbeat(ms(100), ExecutorId(99), vec![], &[]),
            Err(RegistryError::Unknown { id: ExecutorId(99) })
        );
        assert_eq!(r.get(a).unwrap().expires_at, ms(10_100));
        assert_eq!(r.placer().used(a), Some(2));
        r.check_invariants().unwrap();
    }

    #[test]
    fn every_expired_executor_goes_offline_in_one_check() {
        let mut r = Registry::new(
            RegistryPolicy { suspect_fraction: 1.0, ..RegistryPolicy::default() },
            PlacementPolicy::default(),
        );
        let ids: Vec<_> = (0..5).map(|i| r.register(ms(0), spec(&format!("e{i}"))).unwrap().id).collect();
        r.heartbeat(ms(5_000), ids[4], vec![], &[]).unwrap();
        assert!(r.check(ms(9_999)).offline.is_empty());
        let out = r.check(ms(10_000));
        assert_eq!(out.offline.iter().map(|x| x.id).collect::<Vec<_>>(), ids[..4].to_vec());
        assert_eq!(out.next_deadline, Some(ms(15_000)));
        for &id in &ids[..4] {
            assert_eq!(r.heartbeat(ms(10_001), id, vec![], &[]), Err(RegistryError::DeclaredOffline { id }));
        }
        r.check_invariants().unwrap();
    }

    #[test]
    fn mass_expiry_is_held_then_evicted() {
        let mut r = reg();
        let ids: Vec<_> = (0..4).map(|i| r.register(ms(0), spec(&format!("e{i}"))).unwrap().id).collect();
        r.heartbeat(ms(9_000), ids[0], vec![], &[]).unwrap();
        // Three of four expire at once: more than half, so the leader suspects itself and holds.
        let out = r.check(ms(10_000));
        assert!(out.suspicion_began && out.offline.is_empty() && out.held.len() == 3);
        assert_eq!(out.next_deadline, Some(ms(20_000)));
        // One comes back during the hold: now two of four expired, not more than half: evicted at once.
        r.heartbeat(ms(12_000), ids[1], vec![], &[]).unwrap();
        r.heartbeat(ms(12_000), ids[0], vec![], &[]).unwrap();
        let out = r.check(ms(12_500));
        assert_eq!(out.offline.len(), 2);
        assert!(!r.suspecting());
    }

    #[test]
    fn mass_expiry_hold_is_bounded() {
        let mut r = reg();
        for i in 0..3 {
            r.register(ms(0), spec(&format!("e{i}"))).unwrap();
        }
        assert_eq!(r.check(ms(10_000)).held.len(), 3);
        assert_eq!(r.check(ms(19_999)).held.len(), 3);
        let out = r.check(ms(20_000));
        assert_eq!(out.offline.len(), 3);
        assert!(r.is_empty());
    }

    #[test]
    fn a_lone_executor_is_never_a_mass_expiry() {
        let mut r = reg();
        r.register(ms(0), spec("a")).unwrap();
        assert_eq!(r.check(ms(10_000)).offline.len(), 1);
    }

    #[test]
    fn restored_executors_get_a_fresh_ttl_and_are_not_placed_on_until_heard() {
        let records = (1..=2).map(|i| ExecutorRecord { id: ExecutorId(i), spec: spec(&format!("e{i}")) });
        let mut r = Registry::restore(
            RegistryPolicy::default(),
            PlacementPolicy::default(),
            ms(50_000),
            ExecutorId(3),
            records,
        );
        assert_eq!(r.get(ExecutorId(1)).unwrap().status, Status::Unconfirmed);
        assert_eq!(r.last_heard(ExecutorId(1)), None, "not heard from in this term");
        assert!(r.check(ms(59_999)).offline.is_empty());
        let t = TaskId::parse("t").unwrap();
        let req = PlacementRequest { task: &t, epoch: None, cost: 1, selectors: &[], resources: &[] };
        assert_eq!(r.place(ms(50_000), &req, &mut SplitMix64::new(1)), Err(PlacementError::NoExecutors));
        r.heartbeat(ms(50_100), ExecutorId(2), vec![task("x", 3)], &[]).unwrap();
        assert_eq!(r.last_heard(ExecutorId(2)), Some(ms(50_100)));
        let p = r.place(ms(50_100), &req, &mut SplitMix64::new(1)).unwrap();
        assert_eq!((p.executor, p.free_after), (ExecutorId(2), 0));
        r.check_invariants().unwrap();
    }

    #[test]
    fn too_many_reported_tasks_are_refused_without_effect() {
        let mut r = reg();
        let a = r.register(ms(0), spec("a")).unwrap().id;
        let many = vec![task("t", 1); REPORTED_TASKS_MAX + 1];
        assert!(matches!(r.heartbeat(ms(1), a, many, &[]), Err(RegistryError::TooManyTasks { .. })));
        assert_eq!(r.get(a).unwrap().last_heard, ms(0));
    }

    #[test]
    fn reservations_go_with_the_report_of_their_end_or_their_window() {
        let mut r = reg();
        let a = r.register(ms(0), spec("a")).unwrap().id;
        r.heartbeat(ms(0), a, vec![], &[]).unwrap();
        let place = |r: &mut Registry, t: &TaskId, epoch: u64, at: u64| {
            let req = PlacementRequest { task: t, epoch: Some(Epoch(epoch)), cost: 1, selectors: &[], resources: &[] };
            r.place(ms(at), &req, &mut SplitMix64::new(1)).unwrap();
        };
        let (t1, t2, t3) =
            (TaskId::parse("j/w1").unwrap(), TaskId::parse("j/w2").unwrap(), TaskId::parse("j").unwrap());
        place(&mut r, &t1, 7, 0);
        place(&mut r, &t2, 8, 0);
        place(&mut r, &t3, 9, 0);
        assert_eq!(r.placer().used(a), Some(3));
        // t1 ran and ended between two heartbeats: its end comes in the next report.
        let ended = [EndedTask { task: t1.clone(), epoch: Epoch(7) }];
        r.heartbeat(ms(500), a, vec![], &ended).unwrap();
        assert_eq!(r.placer().used(a), Some(2));
        // The leader heard t3 (a job master) exit.
        r.task_ended(&t3, Epoch(9));
        assert_eq!(r.placer().used(a), Some(1));
        // t2's dispatch went unanswered and nothing ever reported it: its window ends with the reservation TTL.
        r.heartbeat(ms(9_000), a, vec![], &[]).unwrap();
        r.check(ms(9_999));
        assert_eq!(r.placer().used(a), Some(1));
        r.check(ms(10_000));
        assert_eq!(r.placer().used(a), Some(0));
        r.check_invariants().unwrap();
        let many = vec![EndedTask { task: t1, epoch: Epoch(1) }; ENDED_TASKS_MAX + 1];
        assert!(matches!(r.heartbeat(ms(10_001), a, vec![], &many), Err(RegistryError::TooManyEnded { .. })));
        assert_eq!(r.get(a).unwrap().last_heard, ms(9_000));
    }
}
