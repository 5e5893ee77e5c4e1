//! Faults as data: a fault is one value ([`Fault`]) with its apply and its own heal, and a fault plan ([`Plan`]) is
//! a list of timed steps with a text form that prints and parses back exactly, so that a failing seed's plan can be
//! read, edited and replayed (`FOREMAN_SWARM_PLAN`).
//!
//! Invariants the module keeps:
//! - **A heal gives back exactly what its own apply took, and nothing another fault holds.** A node is taken down
//!   or paused by at most one step at a time (a step that finds its node down or paused breaks nothing, and says
//!   so), and only that step's heal brings it back. Clogs are counted per directed link: a link is clogged while
//!   any active fault clogs it, and unclogged when the last of them heals. The network's configuration is the
//!   composition of the active latency and loss faults (the highest latency bound, the highest loss rate), back to
//!   madsim's default only when the last of them heals.
//! - **Every apply and every heal is in the run's story**, recorded under the node name `faults` with its instant
//!   ([`Seen::FaultBegan`], [`Seen::FaultHealed`]): what the step broke (which node, which links, the network
//!   configuration that resulted) and what its heal gave back, clogs included.
//! - **A step lasts what the plan says**: it heals `lasts` after it was applied, and whatever is still broken when
//!   the fault phase ends heals then.
//! - **The text form round-trips**: `plan.to_string().parse() == Ok(plan)` for every plan the draw or the parser
//!   makes (steps in the order they begin, loss rates between 0 and 1, latency bounds of 2 ms or more), and text
//!   that is not such a plan is refused with the step and what is wrong with it, never a panic (see [`Plan`] for
//!   the grammar).
//!
//! **How a plan is drawn** ([`Plan::draw`]). Faults come in families ([`FAMILIES`]: the base mix of kills, pauses,
//! cuts and latency; cuts between executors; executor kills timed at the offline TTL; message loss; graceful
//! stops; the leader cut from every executor; a slow metastore; holds of a node at a fault point past the TTL of
//! what it holds up), and each family draws its steps from its own stream: a [`Stream`] seeded from the seed and
//! the family's name, never madsim's generator. A family's steps therefore depend only on the seed, the [`Scope`]
//! (the cluster's shape and the knobs the family times its faults by) and its own draws, and the plan moves nothing
//! else: the seed's shape, knobs and workload come from madsim's generator, which no fault draw touches. The rule:
//! **a new fault kind is a new family, under a new name** (appended to [`FAMILIES`]), so that adding it moves no
//! other step of any seed; changing a family's draw moves that family's steps (of every seed) and nothing else.
//! Steps are merged in the order they begin (families in [`FAMILIES`]' order at equal instants). Seeds pinned in
//! `sim/regressions.rs` carry their plan's text, so no change to the draw moves their faults.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use foreman::buggify::Point;
use foreman::core::rng::{Rng, SplitMix64};
use foreman::core::time::Time;

use crate::cluster::{Cluster, Seen};

/// The story's name for the fault plan's own records.
pub const FAULTS: &str = "faults";

/// A fault, as a plan schedules it. Node indices are the cluster's (`master-i`, `executor-i`); the leader is the
/// one leading when the fault is applied.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    KillLeader,
    KillMaster(usize),
    KillExecutor(usize),
    PauseExecutor(usize),
    PauseMaster(usize),
    /// Cut an executor from every master, both ways, or only its messages to them.
    CutExecutorFromMasters {
        executor: usize,
        both_ways: bool,
    },
    /// Cut an executor from every other executor, both ways (job masters from their workers), and, when
    /// `from_etcd`, from etcd too.
    CutExecutorFromExecutors {
        executor: usize,
        from_etcd: bool,
    },
    LeaderCutFromEtcd,
    AllMastersCutFromEtcd,
    /// Every message delayed by 1 ms to `max_ms`.
    Latency {
        max_ms: u64,
    },
    /// A share of all messages lost.
    Loss {
        rate: f64,
    },
    /// Ask a master to stop gracefully (SIGTERM: it steps down and gives its lease back); it starts again when the
    /// step heals.
    StopMaster(usize),
    /// Ask an executor to stop gracefully (SIGTERM: it drains and deregisters); it starts again when the step
    /// heals.
    StopExecutor(usize),
    /// Cut every executor from the leader (as it is when applied), its messages to them only one way, etcd and
    /// the other masters kept: the leader is the cut-off side.
    LeaderCutFromExecutors {
        both_ways: bool,
    },
    /// Every metastore request of every master waits up to `max` (part before it is sent, part after it is
    /// answered, so a write may be applied and its answer late): sustained metastore latency.
    SlowMetastore {
        max: Duration,
    },
    /// A node stalls at a fault point for `stall`: at its next pass there, or (`every`) at each pass while the step
    /// lasts. What it decided before the point reaches the world late: a stale write, heartbeat or answer.
    Hold {
        at: HoldAt,
        point: Point,
        stall: Duration,
        every: bool,
    },
    /// Clock faults (the `clocks` family): a master's or executor's clock runs at `ppm` parts per million of true
    /// time until the step heals (then at true rate again, from the reading it reached).
    ClockRate {
        node: Node,
        ppm: u64,
    },
    /// A master's or executor's clock jumps forward by `by` (never given back: a clock only moves forward).
    ClockJump {
        node: Node,
        by: Duration,
    },
}

/// The node a hold stalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldAt {
    /// The master leading when the hold is applied.
    Leader,
    Master(usize),
    Executor(usize),
}

impl fmt::Display for HoldAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldAt::Leader => write!(f, "leader"),
            HoldAt::Master(m) => write!(f, "master-{m}"),
            HoldAt::Executor(e) => write!(f, "executor-{e}"),
        }
    }
}

impl FromStr for HoldAt {
    type Err = String;

    fn from_str(text: &str) -> Result<HoldAt, String> {
        let number = |n: &str| n.parse::<usize>().map_err(|_| format!("hold: {text:?} is not a node number"));
        if text == "leader" {
            Ok(HoldAt::Leader)
        } else if let Some(m) = text.strip_prefix("master-") {
            Ok(HoldAt::Master(number(m)?))
        } else if let Some(e) = text.strip_prefix("executor-") {
            Ok(HoldAt::Executor(number(e)?))
        } else {
            Err(format!("hold: {text:?} is not leader, master-M or executor-E"))
        }
    }
}

/// One timed fault of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// When it is applied, from the start of the fault phase (the cluster built).
    pub at: Duration,
    pub fault: Fault,
    /// How long until it heals (the end of the fault phase heals what is still broken).
    pub lasts: Duration,
}

/// A fault plan: steps in the order of their `at`.
///
/// Its text is the steps separated by `;` (or new lines), each `<at> <fault> for <lasts>`, or `none` for a plan of
/// no step; durations are seconds (`12.345s`, `3s`; `ms` is read too), and a fault is one of `kill-leader`,
/// `kill-master(M)`, `kill-executor(E)`, `pause-master(M)`, `pause-executor(E)`, `stop-master(M)`,
/// `stop-executor(E)`, `cut-executor-from-masters(E, one-way|both-ways)`,
/// `cut-executor-from-executors(E, without-etcd|with-etcd)`, `cut-leader-from-etcd`, `cut-masters-from-etcd`,
/// `latency(<max>ms)`, `loss(<rate>)`. For example:
///
/// `4.1s kill-leader for 12.5s; 9.02s cut-executor-from-masters(2, one-way) for 3s; 30s loss(0.05) for 1.2s`
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    /// Whether every step fits a cluster of `masters` masters and `executors` executors and a fault phase of
    /// `phase`: the error names the first step that does not.
    pub fn check(&self, masters: usize, executors: usize, phase: Duration) -> Result<(), PlanError> {
        for (i, step) in self.steps.iter().enumerate() {
            let broken = |problem: String| PlanError { step: Some(i + 1), text: step.to_string(), problem };
            let (node, n, what) = match step.fault {
                Fault::KillMaster(m) | Fault::PauseMaster(m) | Fault::StopMaster(m) => (m, masters, "masters"),
                Fault::KillExecutor(e)
                | Fault::PauseExecutor(e)
                | Fault::StopExecutor(e)
                | Fault::CutExecutorFromMasters { executor: e, .. }
                | Fault::CutExecutorFromExecutors { executor: e, .. } => (e, executors, "executors"),
                Fault::Hold { at, point, .. } => {
                    let (on_master, node) = match at {
                        HoldAt::Leader => (true, None),
                        HoldAt::Master(m) => (true, Some((m, masters, "masters"))),
                        HoldAt::Executor(e) => (false, Some((e, executors, "executors"))),
                    };
                    if on_master != point.on_master() {
                        let runs = if point.on_master() { "a master" } else { "an executor" };
                        return Err(broken(format!("{} runs on {runs}, not on {at}", point.name())));
                    }
                    node.unwrap_or((0, 1, ""))
                }
                Fault::ClockRate { node, .. } | Fault::ClockJump { node, .. } => match node {
                    Node::Master(m) => (m, masters, "masters"),
                    Node::Executor(e) => (e, executors, "executors"),
                    Node::Etcd => (1, 0, "etcd clocks"),
                },
                _ => (0, 1, ""),
            };
            if node >= n {
                return Err(broken(format!("the cluster has {n} {what} (numbered from 0), no {node}")));
            }
            if step.at >= phase {
                return Err(broken(format!("it begins at or after the end of the fault phase ({})", Secs(phase))));
            }
        }
        Ok(())
    }

    /// The highest metastore latency any step sets.
    pub fn metastore_latency_max(&self) -> Option<Duration> {
        self.steps
            .iter()
            .filter_map(|s| match s.fault {
                Fault::SlowMetastore { max } => Some(max),
                _ => None,
            })
            .max()
    }

    /// What the plan's clock faults allow the §6 bounds: the largest rate error any step sets, and every jump
    /// added up (a plan with no clock fault allows nothing).
    pub fn clock_slack(&self) -> crate::checks::ClockSlack {
        let mut slack = crate::checks::ClockSlack::default();
        for s in &self.steps {
            match s.fault {
                Fault::ClockRate { ppm, .. } => {
                    slack.rate = slack.rate.max(ppm.abs_diff(1_000_000) as f64 / 1e6);
                }
                Fault::ClockJump { by, .. } => slack.jump += by,
                _ => {}
            }
        }
        slack
    }

    /// The highest latency bound any step sets.
    pub fn latency_max(&self) -> Option<Duration> {
        self.steps
            .iter()
            .filter_map(|s| match s.fault {
                Fault::Latency { max_ms } => Some(Duration::from_millis(max_ms)),
                _ => None,
            })
            .max()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Drawing.

/// What a plan is drawn for: the cluster's shape and the timings its families go by.
#[derive(Clone, Debug)]
pub struct Scope {
    pub masters: usize,
    pub executors: usize,
    /// The executors' offline TTL (kills are timed just before or after it runs out).
    pub offline_ttl: Duration,
    /// The election lease's TTL and the workers' offline TTL: holds stall past the TTL of what they hold up.
    pub lease_ttl: Duration,
    pub worker_offline_ttl: Duration,
    /// How long the fault phase lasts: every step begins within it.
    pub phase: Duration,
    /// The clock faults the knobs tolerate (`MasterConfig::clock_tolerance`): the `clocks` family draws within it.
    pub clocks: foreman::core::timing::ClockTolerance,
}

impl Scope {
    /// The scope of `masters` masters and `executors` executors with timings `knobs`, faults drawn within `phase`.
    pub fn of(masters: usize, executors: usize, knobs: &foreman::config::MasterConfig, phase: Duration) -> Scope {
        Scope {
            masters,
            executors,
            offline_ttl: knobs.executors.offline_ttl,
            lease_ttl: knobs.election.lease_ttl,
            worker_offline_ttl: knobs.workers.offline_ttl,
            phase,
            clocks: knobs.clock_tolerance(),
        }
    }
}

/// One family's stream of draws: SplitMix64 seeded from the seed and the family's name.
pub struct Stream(SplitMix64);

impl Stream {
    /// The stream of `family` for `seed`.
    pub fn new(seed: u64, family: &str) -> Stream {
        // FNV-1a of the name: each family's stream starts somewhere else for the same seed.
        let name =
            family.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        // One step of the generator mixes seed and name, so that neighbouring seeds start far apart too.
        Stream(SplitMix64::new(SplitMix64::new(seed ^ name).next_u64()))
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.0.below(hi - lo + 1)
    }

    /// One of `0..n` (`n` positive).
    pub fn index(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.0.unit() < p
    }

    /// A whole number of milliseconds in `lo..=hi`.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    /// One of `xs` (not empty).
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.index(xs.len())]
    }
}

/// A family of faults: its name (which seeds its stream) and how it draws its steps.
pub type Family = (&'static str, fn(&mut Stream, &Scope) -> Vec<Step>);

/// Every family, in the order their steps are merged at equal instants. Append; never rename (see the module's
/// doc).
pub const FAMILIES: &[Family] = &[
    ("base", draw_base),
    ("executor-cuts", draw_executor_cuts),
    ("ttl-kills", draw_ttl_kills),
    ("loss", draw_loss),
    ("graceful-stops", draw_graceful_stops),
    ("leader-executor-cuts", draw_leader_executor_cuts),
    ("slow-metastore", draw_slow_metastore),
    ("holds", draw_holds),
    ("clocks", draw_clocks),
];

/// The base mix: up to six faults, the leader's kill most often, then kills and pauses of executors and
/// masters, executors cut from the masters, the leader or every master cut from etcd, latency.
fn draw_base(s: &mut Stream, scope: &Scope) -> Vec<Step> {
    let last = (scope.phase.as_millis() as u64).saturating_sub(1).max(2_000);
    (0..s.range(0, 6))
        .map(|_| {
            let fault = match s.range(0, 15) {
                0..=3 => Fault::KillLeader,
                4 => Fault::KillMaster(s.index(scope.masters)),
                5 | 6 => Fault::KillExecutor(s.index(scope.executors)),
                7 | 8 => Fault::PauseExecutor(s.index(scope.executors)),
                9 => Fault::PauseMaster(s.index(scope.masters)),
                10 | 11 => {
                    Fault::CutExecutorFromMasters { executor: s.index(scope.executors), both_ways: s.chance(0.5) }
                }
                12 => Fault::LeaderCutFromEtcd,
                13 => Fault::AllMastersCutFromEtcd,
                _ => Fault::Latency { max_ms: s.pick(&[20, 100, 300]) },
            };
            Step { at: s.ms(2_000, last), fault, lasts: s.ms(500, 25_000) }
        })
        .collect()
}

/// Up to two executors cut from the other executors (job masters from their workers), and from etcd half of the
/// time, long enough, often, for a job master to give its cut-off workers up and start them elsewhere.
fn draw_executor_cuts(s: &mut Stream, scope: &Scope) -> Vec<Step> {
    (0..s.range(0, 2))
        .map(|_| {
            let fault =
                Fault::CutExecutorFromExecutors { executor: s.index(scope.executors), from_etcd: s.chance(0.5) };
            Step { at: s.ms(2_000, 40_000), fault, lasts: s.ms(5_000, 40_000) }
        })
        .collect()
}

/// Half of the time, an executor killed and restarted just before or just after its offline TTL runs out.
fn draw_ttl_kills(s: &mut Stream, scope: &Scope) -> Vec<Step> {
    (0..s.range(0, 1))
        .map(|_| {
            let near = s.ms(50, 400);
            let ttl = scope.offline_ttl;
            let lasts = if s.chance(0.5) { ttl.saturating_sub(near) } else { ttl + near };
            Step { at: s.ms(2_000, 40_000), fault: Fault::KillExecutor(s.index(scope.executors)), lasts }
        })
        .collect()
}

/// Three times in ten, a share of all messages lost for a while.
fn draw_loss(s: &mut Stream, _: &Scope) -> Vec<Step> {
    if !s.chance(0.3) {
        return vec![];
    }
    let fault = Fault::Loss { rate: s.pick(&[0.01, 0.05]) };
    vec![Step { at: s.ms(2_000, 50_000), fault, lasts: s.ms(1_000, 10_000) }]
}

/// Up to two graceful stops: an executor (most often) or a master asked to stop as SIGTERM does, started again
/// when its step heals.
fn draw_graceful_stops(s: &mut Stream, scope: &Scope) -> Vec<Step> {
    (0..s.range(0, 2))
        .map(|_| {
            let fault = if s.chance(0.7) {
                Fault::StopExecutor(s.index(scope.executors))
            } else {
                Fault::StopMaster(s.index(scope.masters))
            };
            Step { at: s.ms(2_000, 45_000), fault, lasts: s.ms(1_000, 20_000) }
        })
        .collect()
}

/// One seed in six: every executor cut from the leader (one way or both), for a while that often outlasts the
/// offline TTL, so that the leader sees most executors expire at once from the wrong side.
fn draw_leader_executor_cuts(s: &mut Stream, scope: &Scope) -> Vec<Step> {
    if !s.chance(1.0 / 6.0) {
        return vec![];
    }
    let fault = Fault::LeaderCutFromExecutors { both_ways: s.chance(0.5) };
    let longest = (scope.offline_ttl.as_millis() as u64 * 5 / 2).max(3_000);
    vec![Step { at: s.ms(2_000, 45_000), fault, lasts: s.ms(1_000, longest) }]
}

/// One seed in six: the masters' metastore slow by up to seconds for a while.
fn draw_slow_metastore(s: &mut Stream, _: &Scope) -> Vec<Step> {
    if !s.chance(1.0 / 6.0) {
        return vec![];
    }
    let max = Duration::from_millis(s.pick(&[500, 1_000, 2_500, 4_000]));
    vec![Step { at: s.ms(2_000, 45_000), fault: Fault::SlowMetastore { max }, lasts: s.ms(2_000, 25_000) }]
}

/// The points holds are drawn at, each with the TTL its stall is drawn against.
fn hold_ttl(point: Point, scope: &Scope) -> Duration {
    match point {
        Point::BeforeMetastoreWrite | Point::AfterMetastoreWrite | Point::LeaseKeepAlive => scope.lease_ttl,
        Point::HeartbeatSend | Point::HeartbeatReply | Point::BeforeOfflineDeclaration => scope.offline_ttl,
        Point::JobMasterReply
        | Point::CheckpointWrite
        | Point::DispatchAccept
        | Point::BetweenPreDispatchAndConfirm
        | Point::ConfirmReceived
        | Point::TaskHeartbeatSend => scope.worker_offline_ttl,
    }
}

/// Three seeds in ten: one or two holds, each stalling a node at a fault point for 1.2–2.5 times the TTL of what
/// it holds up (the lease for the leader's writes, the offline TTLs for heartbeats, answers and checkpoints), at its
/// next pass or at every pass for a while. A hold of the leader's write comes with a hold of its lease's renewal a
/// third of the time (a little later), so that the write reaches etcd after the leader lost its lease.
fn draw_holds(s: &mut Stream, scope: &Scope) -> Vec<Step> {
    if !s.chance(0.3) {
        return vec![];
    }
    let points = [
        Point::BeforeMetastoreWrite,
        Point::HeartbeatSend,
        Point::JobMasterReply,
        Point::CheckpointWrite,
        Point::DispatchAccept,
        Point::BeforeOfflineDeclaration,
    ];
    let mut steps = vec![];
    for _ in 0..s.range(1, 2) {
        let point = s.pick(&points);
        let ttl = hold_ttl(point, scope).as_millis() as u64;
        let stall = s.ms(ttl * 6 / 5, ttl * 5 / 2);
        let at = if point.on_master() {
            if s.chance(0.7) {
                HoldAt::Leader
            } else {
                HoldAt::Master(s.index(scope.masters))
            }
        } else {
            HoldAt::Executor(s.index(scope.executors))
        };
        let every = s.chance(0.3);
        let lasts = if every { stall + s.ms(0, stall.as_millis() as u64) } else { s.ms(1_000, 20_000) };
        let begins = s.ms(2_000, 45_000);
        steps.push(Step { at: begins, fault: Fault::Hold { at, point, stall, every }, lasts });
        if point == Point::BeforeMetastoreWrite && s.chance(1.0 / 3.0) {
            // A little later, so that a write is likely held already when the lease is let go.
            let lease = Fault::Hold { at, point: Point::LeaseKeepAlive, stall, every: false };
            steps.push(Step { at: begins + s.ms(500, 3_000), fault: lease, lasts });
        }
    }
    steps
}

// Clock faults: their own family, kept apart from the others' draws.

/// Half of the time, clock faults within what the knobs tolerate ([`Scope::clocks`]): one to three nodes' clocks
/// (masters or executors) set to a rate within the tolerated band for a while, and, one time in three, one node's
/// clock jumping forward by at most the tolerated jump (one jump a run: the jumps of a node within one TTL add up).
fn draw_clocks(s: &mut Stream, scope: &Scope) -> Vec<Step> {
    let band = (scope.clocks.rate * 1e6) as u64;
    if !s.chance(0.5) || band == 0 {
        return vec![];
    }
    let node = |s: &mut Stream| {
        let i = s.index(scope.masters + scope.executors);
        if i < scope.masters {
            Node::Master(i)
        } else {
            Node::Executor(i - scope.masters)
        }
    };
    let mut steps: Vec<Step> = (0..s.range(1, 3))
        .map(|_| {
            let node = node(s);
            let ppm = s.range(1_000_000 - band, 1_000_000 + band);
            Step { at: s.ms(0, 45_000), fault: Fault::ClockRate { node, ppm }, lasts: s.ms(2_000, 40_000) }
        })
        .collect();
    let jump_ms = scope.clocks.jump.as_millis() as u64;
    if s.chance(1.0 / 3.0) && jump_ms > 0 {
        let node = node(s);
        let by = s.ms(1, jump_ms);
        steps.push(Step { at: s.ms(2_000, 50_000), fault: Fault::ClockJump { node, by }, lasts: s.ms(500, 5_000) });
    }
    steps
}

impl Plan {
    /// The plan of `seed` for `scope`: every family's steps, each from its own stream, in the order they begin.
    pub fn draw(seed: u64, scope: &Scope) -> Plan {
        Plan::draw_families(seed, scope, FAMILIES)
    }

    fn draw_families(seed: u64, scope: &Scope, families: &[Family]) -> Plan {
        let mut steps: Vec<Step> =
            families.iter().flat_map(|(name, draw)| draw(&mut Stream::new(seed, name), scope)).collect();
        // Stable: at equal instants, families keep their order.
        steps.sort_by_key(|s| s.at);
        Plan { steps }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Text form.

/// Text that is not a plan: which step (counted from 1, `None` for the whole text), its text, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    pub step: Option<usize>,
    pub text: String,
    pub problem: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(n) => write!(f, "fault plan step {n} ({:?}): {}", self.text, self.problem),
            None => write!(f, "fault plan {:?}: {}", self.text, self.problem),
        }
    }
}

impl std::error::Error for PlanError {}

/// A duration in seconds, as the text form writes it: whole seconds, or as many decimals as it needs (`3s`,
/// `12.345s`, `0.000001s`), so every duration reads back exactly.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, nanos) = (self.0.as_secs(), self.0.subsec_nanos());
        if nanos == 0 {
            return write!(f, "{secs}s");
        }
        let decimals = format!("{nanos:09}");
        write!(f, "{secs}.{}s", decimals.trim_end_matches('0'))
    }
}

/// Reads `12.345s`, `3s` or `250ms` (at most nine decimals of a second, whole milliseconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let wrong = || format!("{text:?} is not a duration (write seconds, such as 12.345s, or whole milliseconds, 250ms)");
    if let Some(ms) = text.strip_suffix("ms") {
        if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
            return Err(wrong());
        }
        return ms.parse::<u64>().map(Duration::from_millis).map_err(|_| format!("{text:?} is too long a duration"));
    }
    let secs = text.strip_suffix('s').ok_or_else(wrong)?;
    let (whole, decimals) = secs.split_once('.').unwrap_or((secs, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(decimals) || (secs.contains('.') && decimals.is_empty()) {
        return Err(wrong());
    }
    if decimals.len() > 9 {
        return Err(format!("{text:?} has more than nine decimals (nanoseconds are the finest)"));
    }
    let whole: u64 = whole.parse().map_err(|_| format!("{text:?} is too long a duration"))?;
    let nanos: u32 = if decimals.is_empty() { 0 } else { format!("{decimals:0<9}").parse().map_err(|_| wrong())? };
    Ok(Duration::new(whole, nanos))
}

impl Fault {
    /// Whether the fault disturbs the masters only: a master killed, paused, stopped or held at a fault point, or the
    /// leader cut from etcd. The design claims every job master and worker keeps running through it (design.md §6
    /// failover: re-adopted, not restarted), which the wasted-work checker holds it to.
    pub fn masters_only(&self) -> bool {
        matches!(
            self,
            Fault::KillLeader
                | Fault::KillMaster(_)
                | Fault::PauseMaster(_)
                | Fault::StopMaster(_)
                | Fault::LeaderCutFromEtcd
                | Fault::Hold { at: HoldAt::Leader | HoldAt::Master(_), .. }
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fault::KillLeader => write!(f, "kill-leader"),
            Fault::KillMaster(m) => write!(f, "kill-master({m})"),
            Fault::KillExecutor(e) => write!(f, "kill-executor({e})"),
            Fault::PauseMaster(m) => write!(f, "pause-master({m})"),
            Fault::PauseExecutor(e) => write!(f, "pause-executor({e})"),
            Fault::StopMaster(m) => write!(f, "stop-master({m})"),
            Fault::StopExecutor(e) => write!(f, "stop-executor({e})"),
            Fault::CutExecutorFromMasters { executor, both_ways } => {
                let how = if both_ways { "both-ways" } else { "one-way" };
                write!(f, "cut-executor-from-masters({executor}, {how})")
            }
            Fault::CutExecutorFromExecutors { executor, from_etcd } => {
                let how = if from_etcd { "with-etcd" } else { "without-etcd" };
                write!(f, "cut-executor-from-executors({executor}, {how})")
            }
            Fault::LeaderCutFromEtcd => write!(f, "cut-leader-from-etcd"),
            Fault::AllMastersCutFromEtcd => write!(f, "cut-masters-from-etcd"),
            Fault::Latency { max_ms } => write!(f, "latency({max_ms}ms)"),
            Fault::Loss { rate } => write!(f, "loss({rate})"),
            Fault::LeaderCutFromExecutors { both_ways } => {
                write!(f, "cut-leader-from-executors({})", if both_ways { "both-ways" } else { "one-way" })
            }
            Fault::SlowMetastore { max } => write!(f, "slow-metastore({})", Secs(max)),
            Fault::Hold { at, point, stall, every } => {
                write!(f, "hold({at}, {}, {}, {})", point.name(), Secs(stall), if every { "every" } else { "once" })
            }
            Fault::ClockRate { node, ppm } => write!(f, "clock-rate({}, {})", clock_node(node), Rate(ppm)),
            Fault::ClockJump { node, by } => write!(f, "clock-jump({}, +{})", clock_node(node), Secs(by)),
        }
    }
}

/// The faults' names as the text writes them, with the arguments each takes.
const FAULT_FORMS: &str = "kill-leader, kill-master(M), kill-executor(E), pause-master(M), pause-executor(E), \
                           stop-master(M), stop-executor(E), cut-executor-from-masters(E, one-way|both-ways), \
                           cut-executor-from-executors(E, without-etcd|with-etcd), cut-leader-from-etcd, \
                           cut-masters-from-etcd, latency(<max>ms), loss(<rate>), \
                           cut-leader-from-executors(one-way|both-ways), slow-metastore(<max>), \
                           hold(leader|master-M|executor-E, <point>, <stall>, once|every), \
                           clock-rate(master M|executor E, <rate>), clock-jump(master M|executor E, +<by>)";

/// A node whose clock a clock fault turns, as the text writes it: `master 1`, `executor 2`.
fn clock_node(node: Node) -> String {
    match node {
        Node::Master(i) => format!("master {i}"),
        Node::Executor(i) => format!("executor {i}"),
        Node::Etcd => "etcd".to_owned(),
    }
}

fn parse_clock_node(name: &str, text: &str) -> Result<Node, String> {
    let wrong = || format!("{name}: {text:?} is not a node with a clock (master M or executor E)");
    let (kind, i) = text.split_once(' ').ok_or_else(wrong)?;
    let i: usize = i.trim().parse().map_err(|_| wrong())?;
    match kind {
        "master" => Ok(Node::Master(i)),
        "executor" => Ok(Node::Executor(i)),
        _ => Err(wrong()),
    }
}

/// A clock rate in parts per million, written as a decimal of true rate (`1.08`, `0.5`, `1`).
struct Rate(u64);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, part) = (self.0 / 1_000_000, self.0 % 1_000_000);
        if part == 0 {
            return write!(f, "{whole}");
        }
        write!(f, "{whole}.{}", format!("{part:06}").trim_end_matches('0'))
    }
}

/// Reads `1.08`, `0.5` or `2`: a positive rate, to a millionth.
fn parse_rate(text: &str) -> Result<u64, String> {
    let wrong = || format!("{text:?} is not a positive rate of true time to a millionth, such as 1.08");
    let (whole, part) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(part) || part.len() > 6 || (text.contains('.') && part.is_empty())
    {
        return Err(wrong());
    }
    let whole: u64 = whole.parse().map_err(|_| wrong())?;
    let part: u64 = if part.is_empty() { 0 } else { format!("{part:0<6}").parse().map_err(|_| wrong())? };
    let ppm = whole.checked_mul(1_000_000).and_then(|w| w.checked_add(part)).ok_or_else(wrong)?;
    if ppm == 0 || ppm > 100_000_000 {
        return Err(wrong());
    }
    Ok(ppm)
}

/// Every fault kind the text knows (the names of [`FAULT_FORMS`], without their arguments).
pub fn kinds() -> Vec<&'static str> {
    let mut kinds = vec![];
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, ch) in FAULT_FORMS.char_indices() {
        match ch {
            '(' => {
                if depth == 0 {
                    kinds.push(FAULT_FORMS[start..i].trim());
                }
                depth += 1;
            }
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                let name = FAULT_FORMS[start..i].trim();
                if !name.is_empty() && !name.ends_with(')') {
                    kinds.push(name);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = FAULT_FORMS[start..].trim();
    if !last.is_empty() && !last.ends_with(')') {
        kinds.push(last);
    }
    kinds
}

/// The kind of a step's text (`4.1s kill-master(1) for 3s` → `kill-master`).
pub fn kind_of_step(step: &str) -> &str {
    let fault = step.split_once(' ').map_or(step, |(_, rest)| rest);
    let end = fault.find(['(', ' ']).unwrap_or(fault.len());
    &fault[..end]
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(text: &str) -> Result<Fault, String> {
        let (name, args) = match text.split_once('(') {
            Some((name, rest)) => {
                let args = rest
                    .strip_suffix(')')
                    .ok_or_else(|| format!("fault {text:?} opens its arguments with '(' but does not end with ')'"))?;
                (name, args.split(',').map(str::trim).collect::<Vec<_>>())
            }
            None => (text, vec![]),
        };
        let want = |n: usize, form: &str| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!("{name} takes {n} argument(s), as in {form}; got {:?}", args.join(", ")))
            }
        };
        let index = |s: &str, of: &str| {
            s.parse::<usize>().map_err(|_| format!("{name}: {s:?} is not a {of} number (0, 1, 2, ...)"))
        };
        let flag = |s: &str, no: &str, yes: &str| match s {
            _ if s == no => Ok(false),
            _ if s == yes => Ok(true),
            _ => Err(format!("{name}: {s:?} is neither {no} nor {yes}")),
        };
        let fault = match name {
            "kill-leader" => want(0, "kill-leader").map(|()| Fault::KillLeader)?,
            "cut-leader-from-etcd" => want(0, "cut-leader-from-etcd").map(|()| Fault::LeaderCutFromEtcd)?,
            "cut-masters-from-etcd" => want(0, "cut-masters-from-etcd").map(|()| Fault::AllMastersCutFromEtcd)?,
            "kill-master" | "pause-master" | "stop-master" => {
                want(1, &format!("{name}(1)"))?;
                let m = index(args[0], "master")?;
                match name {
                    "kill-master" => Fault::KillMaster(m),
                    "pause-master" => Fault::PauseMaster(m),
                    _ => Fault::StopMaster(m),
                }
            }
            "kill-executor" | "pause-executor" | "stop-executor" => {
                want(1, &format!("{name}(2)"))?;
                let e = index(args[0], "executor")?;
                match name {
                    "kill-executor" => Fault::KillExecutor(e),
                    "pause-executor" => Fault::PauseExecutor(e),
                    _ => Fault::StopExecutor(e),
                }
            }
            "cut-executor-from-masters" => {
                want(2, "cut-executor-from-masters(2, one-way)")?;
                let executor = index(args[0], "executor")?;
                Fault::CutExecutorFromMasters { executor, both_ways: flag(args[1], "one-way", "both-ways")? }
            }
            "cut-executor-from-executors" => {
                want(2, "cut-executor-from-executors(2, with-etcd)")?;
                let executor = index(args[0], "executor")?;
                Fault::CutExecutorFromExecutors { executor, from_etcd: flag(args[1], "without-etcd", "with-etcd")? }
            }
            "latency" => {
                want(1, "latency(300ms)")?;
                let max_ms = args[0]
                    .strip_suffix("ms")
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| format!("latency: {:?} is not whole milliseconds, such as 300ms", args[0]))?;
                if max_ms < 2 {
                    return Err(format!("latency: {max_ms}ms is below the least delay (1ms); give at least 2ms"));
                }
                Fault::Latency { max_ms }
            }
            "cut-leader-from-executors" => {
                want(1, "cut-leader-from-executors(both-ways)")?;
                Fault::LeaderCutFromExecutors { both_ways: flag(args[0], "one-way", "both-ways")? }
            }
            "slow-metastore" => {
                want(1, "slow-metastore(2.5s)")?;
                let max = parse_duration(args[0]).map_err(|e| format!("slow-metastore: {e}"))?;
                Fault::SlowMetastore { max }
            }
            "hold" => {
                want(4, "hold(executor-2, heartbeat-send, 12s, every)")?;
                let at: HoldAt = args[0].parse()?;
                let point = Point::from_name(args[1]).ok_or_else(|| {
                    let names: Vec<&str> = Point::ALL.iter().map(|p| p.name()).collect();
                    format!("hold: {:?} is not a fault point; the points are {}", args[1], names.join(", "))
                })?;
                let stall = parse_duration(args[2]).map_err(|e| format!("hold: {e}"))?;
                Fault::Hold { at, point, stall, every: flag(args[3], "once", "every")? }
            }
            "loss" => {
                want(1, "loss(0.05)")?;
                let rate = args[0]
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("loss: {:?} is not a rate between 0 and 1, such as 0.05", args[0]))?;
                Fault::Loss { rate }
            }
            "clock-rate" => {
                want(2, "clock-rate(executor 2, 1.08)")?;
                let node = parse_clock_node(name, args[0])?;
                let ppm = parse_rate(args[1]).map_err(|e| format!("{name}: {e}"))?;
                Fault::ClockRate { node, ppm }
            }
            "clock-jump" => {
                want(2, "clock-jump(executor 0, +1.5s)")?;
                let node = parse_clock_node(name, args[0])?;
                let by = args[1]
                    .strip_prefix('+')
                    .ok_or_else(|| format!("{name}: {:?} does not start with '+' (clocks only jump forward)", args[1]))
                    .and_then(|d| parse_duration(d).map_err(|e| format!("{name}: {e}")))?;
                if by.is_zero() {
                    return Err(format!("{name}: a jump of zero is no fault"));
                }
                Fault::ClockJump { node, by }
            }
            _ => return Err(format!("unknown fault {name:?}; the faults are {FAULT_FORMS}")),
        };
        Ok(fault)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} for {}", Secs(self.at), self.fault, Secs(self.lasts))
    }
}

impl FromStr for Step {
    type Err = String;

    fn from_str(text: &str) -> Result<Step, String> {
        let form = "a step is <at> <fault> for <lasts>, such as 4.1s kill-executor(2) for 12.5s";
        let (at, rest) = text.split_once(' ').ok_or_else(|| form.to_owned())?;
        let (fault, lasts) = rest.rsplit_once(" for ").ok_or_else(|| format!("no \" for <lasts>\": {form}"))?;
        let at = parse_duration(at.trim()).map_err(|e| format!("when it begins: {e}"))?;
        let lasts = parse_duration(lasts.trim()).map_err(|e| format!("how long it lasts: {e}"))?;
        Ok(Step { at, fault: fault.trim().parse()?, lasts })
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return write!(f, "none");
        }
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}

impl FromStr for Plan {
    type Err = PlanError;

    fn from_str(text: &str) -> Result<Plan, PlanError> {
        let whole = |problem: &str| PlanError { step: None, text: text.to_owned(), problem: problem.to_owned() };
        if text.trim().is_empty() {
            return Err(whole("no text; a plan of no fault is written `none`"));
        }
        if text.trim() == "none" {
            return Ok(Plan::default());
        }
        let mut steps: Vec<Step> = vec![];
        for (i, piece) in text.split([';', '\n']).map(str::trim).filter(|p| !p.is_empty()).enumerate() {
            let broken = |problem: String| PlanError { step: Some(i + 1), text: piece.to_owned(), problem };
            if piece == "none" {
                return Err(broken("`none` stands for a whole plan of no fault, not for one step".to_owned()));
            }
            let step: Step = piece.parse().map_err(broken)?;
            if let Some(before) = steps.last().filter(|before| before.at > step.at) {
                return Err(broken(format!(
                    "it begins at {}, before the step ahead of it ({}): steps go in the order they begin",
                    Secs(step.at),
                    Secs(before.at)
                )));
            }
            steps.push(step);
        }
        Ok(Plan { steps })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Applying and healing.

/// A node of the cluster, as faults name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    Etcd,
    Master(usize),
    Executor(usize),
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Etcd => write!(f, "etcd"),
            Node::Master(i) => write!(f, "master-{i}"),
            Node::Executor(i) => write!(f, "executor-{i}"),
        }
    }
}

/// A directed link: messages from the first node to the second.
pub type Link = (Node, Node);

/// A latency or loss fault while it is active.
#[derive(Clone, Copy, Debug, PartialEq)]
enum NetworkFault {
    Latency { max_ms: u64 },
    Loss { rate: f64 },
}

/// What the active faults hold broken, each thing by whom: the faults' shared bookkeeping, pure (the cluster is
/// told what changes).
#[derive(Debug, Default)]
pub struct Broken {
    /// Nodes down (killed, or asked to stop), each by one step.
    down: BTreeSet<Node>,
    paused: BTreeSet<Node>,
    /// Per directed link, how many active faults clog it.
    clogs: BTreeMap<Link, u32>,
    /// The active latency and loss faults, by step number.
    network: BTreeMap<usize, NetworkFault>,
    /// The active slow-metastore faults, by step number: the masters' latency dial is the highest of them.
    slow: BTreeMap<usize, Duration>,
    /// Per node, the active clock-rate faults by step number: the node's clock runs at the latest one's rate.
    rates: BTreeMap<Node, BTreeMap<usize, u64>>,
}

impl Broken {
    /// Counts one more fault clogging `link`; whether the link was free until now (and must be clogged).
    pub fn clog(&mut self, link: Link) -> bool {
        let n = self.clogs.entry(link).or_default();
        *n += 1;
        *n == 1
    }

    /// Counts one fault fewer clogging `link`; whether none is left (and the link must be unclogged).
    pub fn unclog(&mut self, link: Link) -> bool {
        match self.clogs.get_mut(&link) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.clogs.remove(&link);
                true
            }
            None => false,
        }
    }

    /// The network configuration the active latency and loss faults compose to: the highest latency bound and
    /// the highest loss rate among them, madsim's default for what none of them sets.
    pub fn network_config(&self) -> madsim::net::Config {
        let mut config = madsim::net::Config::default();
        let latency = self.network.values().filter_map(|n| match n {
            NetworkFault::Latency { max_ms } => Some(*max_ms),
            NetworkFault::Loss { .. } => None,
        });
        if let Some(max_ms) = latency.max() {
            config.send_latency = Duration::from_millis(1)..Duration::from_millis(max_ms);
        }
        let loss = self.network.values().filter_map(|n| match n {
            NetworkFault::Loss { rate } => Some(*rate),
            NetworkFault::Latency { .. } => None,
        });
        if let Some(rate) = loss.max_by(f64::total_cmp) {
            config.packet_loss_rate = rate;
        }
        config
    }
}

impl Broken {
    /// The rate `node`'s clock runs at under the active clock-rate faults (the latest applied holds; true rate
    /// when none does).
    pub fn clock_rate(&self, node: Node) -> u64 {
        self.rates.get(&node).and_then(|r| r.last_key_value()).map_or(1_000_000, |(_, ppm)| *ppm)
    }
}

/// The network configuration as the story tells it.
fn describe(config: &madsim::net::Config) -> String {
    format!("latency {:?}..{:?}, loss {}", config.send_latency.start, config.send_latency.end, config.packet_loss_rate)
}

/// What a node fault does to its node.
#[derive(Clone, Copy, Debug)]
enum Act {
    Kill,
    /// Asked to stop gracefully; down until the step heals, as a killed node.
    Stop,
    Pause,
}

/// The kinds of fault, by what they break.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A node's fault point held (the node: `None` for the leader when applied).
    Hold(Option<Node>, Point, Duration, bool),
    /// The masters' metastore slowed.
    Slow(Duration),
    /// One node (`None`: whichever master leads when it is applied).
    Node(Option<Node>, Act),
    /// Links, as [`Fault::links`] lists them.
    Cut,
    Network(NetworkFault),
    /// A node's clock (the `clocks` family).
    Clock(Node),
}

/// What one applied step broke: exactly what its heal gives back.
#[derive(Clone, Debug, PartialEq)]
pub enum Active {
    /// The node this step took down (killed, or asked to stop): its heal starts it again.
    Down(Node),
    /// The node this step paused: its heal resumes it.
    Paused(Node),
    /// The links this step clogs: its heal stops holding them (each unclogged once no other fault holds it).
    Clogged(Vec<Link>),
    /// This step's latency or loss (by step number): its heal takes it out of the network's composition.
    Network(usize),
    /// The hold this step (by number) set at a node's fault point: its heal releases it.
    Held(Node, usize),
    /// This step's metastore latency (by number): its heal takes it out of the masters' dial.
    Slow(usize),
    /// This step's rate of a node's clock (by step number): its heal takes it out of the node's rates.
    ClockRate(Node, usize),
    /// A node's clock this step made jump: nothing to give back (a clock only moves forward).
    ClockJumped(Node),
}

/// A node's fault points.
fn points_of(c: &Cluster, node: Node) -> &foreman::buggify::FaultPoints {
    match node {
        Node::Master(i) => &c.masters[i].points,
        Node::Executor(i) => &c.executors[i].points,
        Node::Etcd => unreachable!("no fault holds etcd"),
    }
}

/// Sets every master's metastore latency to the highest the active slow-metastore faults ask (none: zero); what
/// it set, for the story.
fn set_metastore_latency(c: &Cluster, b: &Broken) -> String {
    let max = b.slow.values().max().copied().unwrap_or_default();
    for m in &c.masters {
        m.points.latency().set(max);
    }
    format!("every master's metastore requests now wait up to {max:?}")
}

fn node_id(c: &Cluster, node: Node) -> madsim::task::NodeId {
    match node {
        Node::Etcd => c.etcd.id(),
        Node::Master(i) => c.masters[i].node.id(),
        Node::Executor(i) => c.executors[i].node.id(),
    }
}

/// Links as the story tells them: `a↔b` for both directions of a pair, `a→b` for one.
fn links_text(links: &[Link]) -> String {
    let mut parts = vec![];
    let mut i = 0;
    while i < links.len() {
        let (from, to) = links[i];
        if links.get(i + 1) == Some(&(to, from)) {
            parts.push(format!("{from}↔{to}"));
            i += 2;
        } else {
            parts.push(format!("{from}→{to}"));
            i += 1;
        }
    }
    parts.join(", ")
}

/// What a change to links says: the links it changed, and those another fault holds as they were.
fn links_change(verb: &str, changed: &[Link], held: &[Link], held_as: &str) -> String {
    let mut text =
        if changed.is_empty() { format!("{verb} nothing") } else { format!("{verb} {}", links_text(changed)) };
    if !held.is_empty() {
        text += &format!("; {} {held_as} by another fault", links_text(held));
    }
    text
}

impl Fault {
    /// The fault's kind as coverage counts it: its name in the text, and for a hold the point it holds
    /// (`hold/heartbeat-send`).
    pub fn kind_name(&self) -> String {
        match self {
            Fault::Hold { point, .. } => format!("hold/{}", point.name()),
            other => other.to_string().split('(').next().unwrap_or_default().to_owned(),
        }
    }

    /// Breaks what this fault names, as step number `step`: what to heal (none when the fault found nothing to
    /// break), and what it did, for the story.
    pub fn apply(&self, c: &Cluster, b: &mut Broken, step: usize) -> (Option<Active>, String) {
        match self.kind() {
            Kind::Hold(target, point, stall, every) => {
                let node = match target {
                    Some(node) => node,
                    None => match c.leaders().first() {
                        Some(&l) => Node::Master(l),
                        None => return (None, "nothing: no master leads".to_owned()),
                    },
                };
                points_of(c, node).hold(step, point, stall, every);
                let how = if every { "every pass" } else { "its next pass" };
                (Some(Active::Held(node, step)), format!("holds {node} at {} for {stall:?}, {how}", point.name()))
            }
            Kind::Slow(max) => {
                b.slow.insert(step, max);
                (Some(Active::Slow(step)), set_metastore_latency(c, b))
            }
            // A node fault: one node, down or paused by this step alone.
            Kind::Node(target, act) => {
                let node = match target {
                    Some(node) => node,
                    None => match c.leaders().first() {
                        Some(&l) => Node::Master(l),
                        None => return (None, "nothing: no master leads".to_owned()),
                    },
                };
                if b.down.contains(&node) {
                    return (None, format!("nothing: {node} is down already"));
                }
                if b.paused.contains(&node) {
                    return (None, format!("nothing: {node} is paused already"));
                }
                let (verb, active) = match act {
                    Act::Kill => ("killed", Active::Down(node)),
                    Act::Stop => ("asked to stop", Active::Down(node)),
                    Act::Pause => ("paused", Active::Paused(node)),
                };
                match (act, node) {
                    (Act::Kill, Node::Master(i)) => c.kill_master(i),
                    (Act::Kill, Node::Executor(i)) => c.kill_executor(i),
                    (Act::Stop, Node::Master(i)) => c.stop_master(i),
                    (Act::Stop, Node::Executor(i)) => c.stop_executor(i),
                    (Act::Pause, Node::Master(i)) => c.pause_master(i),
                    (Act::Pause, Node::Executor(i)) => c.pause_executor(i),
                    (_, Node::Etcd) => unreachable!("no fault takes etcd down or pauses it"),
                }
                match act {
                    Act::Pause => b.paused.insert(node),
                    Act::Kill | Act::Stop => b.down.insert(node),
                };
                (Some(active), format!("{verb} {node}"))
            }
            // A cut: links clogged, counted per link.
            Kind::Cut => {
                let links = match self.links(c) {
                    Ok(links) => links,
                    Err(nothing) => return (None, nothing),
                };
                let (mut clogged, mut held) = (vec![], vec![]);
                for &(from, to) in &links {
                    if b.clog((from, to)) {
                        c.net().clog_link(node_id(c, from), node_id(c, to));
                        clogged.push((from, to));
                    } else {
                        held.push((from, to));
                    }
                }
                (Some(Active::Clogged(links)), links_change("clogged", &clogged, &held, "clogged already"))
            }
            // A clock fault: the node's dial turned; rates are composed per node (the latest active one holds).
            Kind::Clock(node) => {
                let dial = match node {
                    Node::Master(i) => &c.masters[i].dial,
                    Node::Executor(i) => &c.executors[i].dial,
                    Node::Etcd => unreachable!("etcd's clock is true time"),
                };
                match *self {
                    Fault::ClockRate { ppm, .. } => {
                        b.rates.entry(node).or_default().insert(step, ppm);
                        let now = b.clock_rate(node);
                        dial.set_rate_ppm(now);
                        (Some(Active::ClockRate(node, step)), format!("clock of {node} now runs at {}", Rate(now)))
                    }
                    Fault::ClockJump { by, .. } => {
                        dial.jump(by);
                        (Some(Active::ClockJumped(node)), format!("clock of {node} jumped forward {}", Secs(by)))
                    }
                    _ => unreachable!("only clock faults are of the clock kind"),
                }
            }
            // Latency or loss: one more term of the network's composition.
            Kind::Network(fault) => {
                b.network.insert(step, fault);
                let config = b.network_config();
                let text = format!("network now {}", describe(&config));
                c.net().update_config(|n| *n = config);
                (Some(Active::Network(step)), text)
            }
        }
    }

    /// Which of the three kinds of fault this is: a node's (its node, `None` for the leader when applied), a cut,
    /// or the network's.
    fn kind(&self) -> Kind {
        let master = |i| Some(Node::Master(i));
        let executor = |i| Some(Node::Executor(i));
        match *self {
            Fault::KillLeader => Kind::Node(None, Act::Kill),
            Fault::KillMaster(i) => Kind::Node(master(i), Act::Kill),
            Fault::StopMaster(i) => Kind::Node(master(i), Act::Stop),
            Fault::PauseMaster(i) => Kind::Node(master(i), Act::Pause),
            Fault::KillExecutor(i) => Kind::Node(executor(i), Act::Kill),
            Fault::StopExecutor(i) => Kind::Node(executor(i), Act::Stop),
            Fault::PauseExecutor(i) => Kind::Node(executor(i), Act::Pause),
            Fault::CutExecutorFromMasters { .. }
            | Fault::CutExecutorFromExecutors { .. }
            | Fault::LeaderCutFromEtcd
            | Fault::AllMastersCutFromEtcd => Kind::Cut,
            Fault::Latency { max_ms } => Kind::Network(NetworkFault::Latency { max_ms }),
            Fault::Loss { rate } => Kind::Network(NetworkFault::Loss { rate }),
            Fault::LeaderCutFromExecutors { .. } => Kind::Cut,
            Fault::SlowMetastore { max } => Kind::Slow(max),
            Fault::Hold { at, point, stall, every } => {
                let node = match at {
                    HoldAt::Leader => None,
                    HoldAt::Master(m) => master(m),
                    HoldAt::Executor(e) => executor(e),
                };
                Kind::Hold(node, point, stall, every)
            }
            Fault::ClockRate { node, .. } | Fault::ClockJump { node, .. } => Kind::Clock(node),
        }
    }

    /// The directed links a cut clogs, or why it clogs none.
    fn links(&self, c: &Cluster) -> Result<Vec<Link>, String> {
        let masters = (0..c.masters.len()).map(Node::Master);
        let mut links = vec![];
        match *self {
            Fault::CutExecutorFromMasters { executor, both_ways } => {
                let e = Node::Executor(executor);
                for m in masters {
                    links.push((e, m));
                    if both_ways {
                        links.push((m, e));
                    }
                }
            }
            Fault::CutExecutorFromExecutors { executor, from_etcd } => {
                let e = Node::Executor(executor);
                let mut others: Vec<Node> =
                    (0..c.executors.len()).filter(|o| *o != executor).map(Node::Executor).collect();
                if from_etcd {
                    others.push(Node::Etcd);
                }
                for o in others {
                    links.extend([(e, o), (o, e)]);
                }
            }
            Fault::LeaderCutFromEtcd => {
                let Some(&l) = c.leaders().first() else { return Err("nothing: no master leads".to_owned()) };
                links.extend([(Node::Master(l), Node::Etcd), (Node::Etcd, Node::Master(l))]);
            }
            Fault::AllMastersCutFromEtcd => {
                for m in masters {
                    links.extend([(m, Node::Etcd), (Node::Etcd, m)]);
                }
            }
            Fault::LeaderCutFromExecutors { both_ways } => {
                let Some(&l) = c.leaders().first() else { return Err("nothing: no master leads".to_owned()) };
                let l = Node::Master(l);
                for e in (0..c.executors.len()).map(Node::Executor) {
                    links.push((e, l));
                    if both_ways {
                        links.push((l, e));
                    }
                }
            }
            _ => {}
        }
        if links.is_empty() {
            return Err("nothing: no link to cut".to_owned());
        }
        Ok(links)
    }
}

impl Active {
    /// Gives back what this step broke; what it did, for the story.
    pub fn heal(&self, c: &Cluster, b: &mut Broken) -> String {
        match self {
            Active::Down(node) => {
                b.down.remove(node);
                match *node {
                    Node::Master(i) => c.restart_master(i),
                    Node::Executor(i) => c.restart_executor(i),
                    Node::Etcd => unreachable!("faults never take etcd down"),
                }
                format!("started {node} again")
            }
            Active::Paused(node) => {
                b.paused.remove(node);
                match *node {
                    Node::Master(i) => c.resume_master(i),
                    Node::Executor(i) => c.resume_executor(i),
                    Node::Etcd => unreachable!("faults never pause etcd"),
                }
                format!("resumed {node}")
            }
            Active::Clogged(links) => {
                let (mut unclogged, mut held) = (vec![], vec![]);
                for &(from, to) in links {
                    if b.unclog((from, to)) {
                        c.net().unclog_link(node_id(c, from), node_id(c, to));
                        unclogged.push((from, to));
                    } else {
                        held.push((from, to));
                    }
                }
                links_change("unclogged", &unclogged, &held, "still clogged")
            }
            Active::ClockRate(node, step) => {
                if let Some(rates) = b.rates.get_mut(node) {
                    rates.remove(step);
                    if rates.is_empty() {
                        b.rates.remove(node);
                    }
                }
                let now = b.clock_rate(*node);
                match *node {
                    Node::Master(i) => c.masters[i].dial.set_rate_ppm(now),
                    Node::Executor(i) => c.executors[i].dial.set_rate_ppm(now),
                    Node::Etcd => unreachable!("etcd's clock is true time"),
                }
                format!("clock of {node} runs at {} again", Rate(now))
            }
            Active::ClockJumped(node) => format!("clock of {node} stays ahead (a clock only moves forward)"),
            Active::Network(step) => {
                b.network.remove(step);
                let config = b.network_config();
                let text = format!("network now {}", describe(&config));
                c.net().update_config(|n| *n = config);
                text
            }
            Active::Held(node, step) => {
                points_of(c, *node).release(*step);
                format!("released the hold of {node}")
            }
            Active::Slow(step) => {
                b.slow.remove(step);
                set_metastore_latency(c, b)
            }
        }
    }
}

/// Runs `plan` on `c`: each step applied at `start + at` and healed `lasts` later, and at `end` (the end of the
/// fault phase) every step still active healed, in the order their heals were due. A heal due at the instant a
/// step begins goes first. Every apply and heal is recorded in the story.
pub async fn play(c: &Cluster, plan: &Plan, start: Time, end: Time) {
    let mut broken = Broken::default();
    // (due, step number, what to heal), in the order they were applied.
    let mut active: Vec<(Time, usize, Active)> = vec![];
    for (i, step) in plan.steps.iter().enumerate() {
        let at = start + step.at;
        heal_due(c, &mut broken, &mut active, at.min(end)).await;
        if at >= end {
            break;
        }
        tokio::time::sleep_until(c.clock.instant(at)).await;
        let number = i + 1;
        let (heal, broke) = step.fault.apply(c, &mut broken, number);
        c.recorder.record(FAULTS, Seen::FaultBegan { step: number, plan: step.to_string(), broke });
        if let Some(heal) = heal {
            active.push((c.clock.now() + step.lasts, number, heal));
        }
    }
    heal_due(c, &mut broken, &mut active, end).await;
    tokio::time::sleep_until(c.clock.instant(end)).await;
    active.sort_by_key(|(due, number, _)| (*due, *number));
    for (_, number, heal) in active {
        heal_one(c, &mut broken, number, &heal);
    }
}

/// Heals every active step due at or before `until`, each at its instant.
async fn heal_due(c: &Cluster, b: &mut Broken, active: &mut Vec<(Time, usize, Active)>, until: Time) {
    loop {
        let Some(next) =
            (0..active.len()).filter(|&k| active[k].0 <= until).min_by_key(|&k| (active[k].0, active[k].1))
        else {
            return;
        };
        let (due, number, heal) = active.remove(next);
        tokio::time::sleep_until(c.clock.instant(due)).await;
        heal_one(c, b, number, &heal);
    }
}

fn heal_one(c: &Cluster, b: &mut Broken, number: usize, heal: &Active) {
    let healed = heal.heal(c, b);
    c.recorder.record(FAULTS, Seen::FaultHealed { step: number, healed });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_read_in_pairs() {
        let (e, m, etcd) = (Node::Executor(1), Node::Master(0), Node::Etcd);
        assert_eq!(links_text(&[(e, m), (m, e), (e, etcd)]), "executor-1↔master-0, executor-1→etcd");
        assert_eq!(
            links_change("unclogged", &[(e, m)], &[(m, e)], "still clogged"),
            "unclogged executor-1→master-0; master-0→executor-1 still clogged by another fault"
        );
    }

    fn step(at_ms: u64, fault: Fault, lasts_ms: u64) -> Step {
        Step { at: Duration::from_millis(at_ms), fault, lasts: Duration::from_millis(lasts_ms) }
    }

    /// One plan with every fault kind, each form of its arguments included.
    fn every_kind() -> Plan {
        let faults = [
            Fault::KillLeader,
            Fault::KillMaster(1),
            Fault::KillExecutor(7),
            Fault::PauseExecutor(0),
            Fault::PauseMaster(2),
            Fault::CutExecutorFromMasters { executor: 3, both_ways: true },
            Fault::CutExecutorFromMasters { executor: 3, both_ways: false },
            Fault::CutExecutorFromExecutors { executor: 1, from_etcd: true },
            Fault::CutExecutorFromExecutors { executor: 1, from_etcd: false },
            Fault::LeaderCutFromEtcd,
            Fault::AllMastersCutFromEtcd,
            Fault::Latency { max_ms: 300 },
            Fault::Loss { rate: 0.05 },
            Fault::Loss { rate: 0.1 + 0.2 },
            Fault::StopMaster(0),
            Fault::StopExecutor(4),
            Fault::LeaderCutFromExecutors { both_ways: true },
            Fault::LeaderCutFromExecutors { both_ways: false },
            Fault::SlowMetastore { max: Duration::from_millis(2_500) },
            Fault::Hold {
                at: HoldAt::Leader,
                point: Point::BeforeMetastoreWrite,
                stall: Duration::from_secs(7),
                every: false,
            },
            Fault::Hold {
                at: HoldAt::Master(1),
                point: Point::LeaseKeepAlive,
                stall: Duration::from_millis(7_250),
                every: true,
            },
            Fault::Hold {
                at: HoldAt::Executor(2),
                point: Point::HeartbeatSend,
                stall: Duration::from_secs(12),
                every: true,
            },
            Fault::ClockRate { node: Node::Executor(2), ppm: 1_080_000 },
            Fault::ClockRate { node: Node::Master(1), ppm: 930_000 },
            Fault::ClockRate { node: Node::Master(0), ppm: 2_000_000 },
            Fault::ClockJump { node: Node::Executor(0), by: Duration::from_millis(1_500) },
        ];
        let steps = faults.into_iter().enumerate().map(|(i, f)| step(2_000 + 1_111 * i as u64, f, 500 + 7 * i as u64));
        Plan { steps: steps.collect() }
    }

    /// Every kind of [`every_kind`] is named by [`kinds`] (which the coverage report lists, reached or not), and
    /// [`kind_of_step`] reads it back from the step's text.
    #[test]
    fn every_fault_kind_is_known_by_name() {
        let known = kinds();
        for step in every_kind().steps {
            let text = step.to_string();
            let kind = kind_of_step(&text);
            assert!(known.contains(&kind), "{kind} (of {text}) is not in {known:?}");
        }
        assert_eq!(known.len(), known.iter().collect::<BTreeSet<_>>().len(), "{known:?}");
    }

    #[test]
    fn a_plan_reads_back_as_it_was_written() {
        let plan = every_kind();
        let text = plan.to_string();
        assert_eq!(text.parse::<Plan>(), Ok(plan.clone()), "{text}");
        // One step a line reads the same.
        assert_eq!(text.replace("; ", "\n").parse::<Plan>(), Ok(plan));
        assert_eq!("none".parse::<Plan>(), Ok(Plan::default()));
        assert_eq!(Plan::default().to_string(), "none");
        let odd = Plan {
            steps: vec![Step {
                at: Duration::new(3, 1),
                fault: Fault::KillLeader,
                lasts: Duration::new(0, 120_000_000),
            }],
        };
        assert_eq!(odd.to_string(), "3.000000001s kill-leader for 0.12s");
        assert_eq!(odd.to_string().parse::<Plan>(), Ok(odd));
    }

    fn scope(masters: usize, executors: usize) -> Scope {
        let clocks = foreman::core::timing::ClockTolerance { rate: 0.02, jump: Duration::from_millis(300) };
        Scope {
            masters,
            executors,
            offline_ttl: Duration::from_millis(7_777),
            lease_ttl: Duration::from_secs(3),
            worker_offline_ttl: Duration::from_millis(9_100),
            phase: Duration::from_secs(60),
            clocks,
        }
    }

    #[test]
    fn drawn_plans_read_back_and_fit_their_cluster() {
        let mut kinds = BTreeSet::new();
        for seed in 0..2_000u64 {
            let (masters, executors) = (1 + seed as usize % 3, 2 + seed as usize % 7);
            let plan = Plan::draw(seed, &scope(masters, executors));
            let text = plan.to_string();
            assert_eq!(text.parse::<Plan>(), Ok(plan.clone()), "seed {seed}: {text}");
            assert_eq!(plan.check(masters, executors, Duration::from_secs(60)), Ok(()), "seed {seed}");
            assert_eq!(plan, Plan::draw(seed, &scope(masters, executors)), "seed {seed} draws the same plan again");
            kinds.extend(
                plan.steps.iter().map(|s| s.fault.to_string().split('(').next().unwrap_or_default().to_owned()),
            );
        }
        assert_eq!(kinds.len(), 18, "every fault kind is drawn: {kinds:?}");
    }

    #[test]
    fn a_new_family_moves_no_other_step() {
        // Its steps, and only its, last this long.
        const MARK: u64 = 1_234_567;
        fn extra(s: &mut Stream, scope: &Scope) -> Vec<Step> {
            (0..s.range(1, 3))
                .map(|_| step(s.range(2_000, 50_000), Fault::PauseMaster(s.index(scope.masters)), MARK))
                .collect()
        }
        let mut more = FAMILIES.to_vec();
        more.push(("extra", extra));
        for seed in 0..200u64 {
            let before = Plan::draw(seed, &scope(3, 5));
            let after = Plan::draw_families(seed, &scope(3, 5), &more);
            assert!(after.steps.iter().any(|s| s.lasts == Duration::from_millis(MARK)), "seed {seed}: no new step");
            let others: Vec<Step> =
                after.steps.into_iter().filter(|s| s.lasts != Duration::from_millis(MARK)).collect();
            assert_eq!(others, before.steps, "seed {seed}");
        }
    }

    #[test]
    fn a_step_reads_as_the_module_says() {
        let plan: Plan =
            "4.1s kill-leader for 12.5s; 9.02s cut-executor-from-masters(2, one-way) for 3s; 30s loss(0.05) for 1200ms"
                .parse()
                .expect("a plan");
        assert_eq!(
            plan.steps,
            vec![
                step(4_100, Fault::KillLeader, 12_500),
                step(9_020, Fault::CutExecutorFromMasters { executor: 2, both_ways: false }, 3_000),
                step(30_000, Fault::Loss { rate: 0.05 }, 1_200),
            ]
        );
        assert_eq!(
            plan.to_string(),
            "4.1s kill-leader for 12.5s; 9.02s cut-executor-from-masters(2, one-way) for 3s; 30s loss(0.05) for 1.2s"
        );
    }

    #[test]
    fn text_that_is_not_a_plan_says_which_step_and_why() {
        // (text, the step named, a part of what is wrong)
        let table: &[(&str, Option<usize>, &str)] = &[
            ("", None, "written `none`"),
            ("   ", None, "written `none`"),
            ("4s kill-leader for 1s; 5s kill-lead for 1s", Some(2), "unknown fault \"kill-lead\""),
            ("4s kill-leader", Some(1), "no \" for <lasts>\""),
            ("kill-leader", Some(1), "a step is <at> <fault> for <lasts>"),
            ("4 kill-leader for 1s", Some(1), "when it begins: \"4\" is not a duration"),
            ("4s kill-leader for 1.s", Some(1), "how long it lasts: \"1.s\" is not a duration"),
            ("4s kill-leader for 1.0000000001s", Some(1), "more than nine decimals"),
            ("4s kill-leader for 99999999999999999999s", Some(1), "too long a duration"),
            ("4s kill-executor(x) for 1s", Some(1), "\"x\" is not a executor number"),
            ("4s kill-executor(-1) for 1s", Some(1), "not a executor number"),
            ("4s kill-executor() for 1s", Some(1), "not a executor number"),
            ("4s kill-executor(1, 2) for 1s", Some(1), "takes 1 argument(s)"),
            ("4s kill-leader(1) for 1s", Some(1), "takes 0 argument(s)"),
            ("4s kill-executor(1 for 1s", Some(1), "does not end with ')'"),
            ("4s cut-executor-from-masters(1, sideways) for 1s", Some(1), "neither one-way nor both-ways"),
            ("4s cut-executor-from-executors(1) for 1s", Some(1), "takes 2 argument(s)"),
            ("4s latency(0.3s) for 1s", Some(1), "not whole milliseconds"),
            ("4s latency(1ms) for 1s", Some(1), "at least 2ms"),
            ("4s loss(1.5) for 1s", Some(1), "not a rate between 0 and 1"),
            ("4s loss(NaN) for 1s", Some(1), "not a rate between 0 and 1"),
            ("5s kill-leader for 1s; 4s kill-leader for 1s", Some(2), "before the step ahead of it (5s)"),
            ("5s kill-leader for 1s; none", Some(2), "stands for a whole plan"),
            ("4s cut-leader-from-executors(sideways) for 1s", Some(1), "neither one-way nor both-ways"),
            ("4s slow-metastore(2.5) for 1s", Some(1), "slow-metastore: \"2.5\" is not a duration"),
            ("4s hold(leader, heartbeat-send, 7s) for 1s", Some(1), "takes 4 argument(s)"),
            ("4s hold(boss, heartbeat-send, 7s, once) for 1s", Some(1), "not leader, master-M or executor-E"),
            ("4s hold(leader, nowhere, 7s, once) for 1s", Some(1), "not a fault point"),
            ("4s hold(leader, lease-keep-alive, 7s, twice) for 1s", Some(1), "neither once nor every"),
            ("4s clock-rate(executor 1, 0) for 1s", Some(1), "not a positive rate"),
            ("4s clock-rate(executor 1, 1.0000001) for 1s", Some(1), "to a millionth"),
            ("4s clock-rate(etcd, 1.1) for 1s", Some(1), "not a node with a clock"),
            ("4s clock-rate(executor x, 1.1) for 1s", Some(1), "not a node with a clock"),
            ("4s clock-jump(master 0, 1s) for 1s", Some(1), "clocks only jump forward"),
            ("4s clock-jump(master 0, +0s) for 1s", Some(1), "a jump of zero"),
        ];
        for (text, step, part) in table {
            let e = text.parse::<Plan>().expect_err(text);
            assert_eq!(e.step, *step, "{text}: {e}");
            assert!(e.to_string().contains(part), "{text}: {e} does not say {part:?}");
        }
    }

    #[test]
    fn a_plan_is_checked_against_its_cluster() {
        let plan: Plan = "2s kill-master(2) for 1s; 3s stop-executor(4) for 1s".parse().expect("a plan");
        assert_eq!(plan.check(3, 5, Duration::from_secs(60)), Ok(()));
        let e = plan.check(2, 5, Duration::from_secs(60)).expect_err("no master 2");
        assert_eq!(e.step, Some(1));
        assert!(e.problem.contains("2 masters"), "{e}");
        let e = plan.check(3, 4, Duration::from_secs(60)).expect_err("no executor 4");
        assert_eq!(e.step, Some(2));
        let e = plan.check(3, 5, Duration::from_secs(3)).expect_err("past the phase");
        assert_eq!(e.step, Some(2));
        assert!(e.problem.contains("fault phase (3s)"), "{e}");
        let plan: Plan =
            "2s hold(executor-1, heartbeat-send, 9s, once) for 1s; 3s hold(master-0, heartbeat-send, 9s, once) for 1s"
                .parse()
                .expect("a plan");
        let e = plan.check(3, 5, Duration::from_secs(60)).expect_err("an executor's point on a master");
        assert_eq!(e.step, Some(2));
        assert!(e.problem.contains("heartbeat-send runs on an executor, not on master-0"), "{e}");
        let e = plan.check(3, 1, Duration::from_secs(60)).expect_err("no executor 1");
        assert_eq!(e.step, Some(1));
    }

    #[test]
    fn clogs_are_counted_per_link() {
        let mut b = Broken::default();
        let link = (Node::Master(0), Node::Etcd);
        let back = (Node::Etcd, Node::Master(0));
        assert!(b.clog(link), "the first cut clogs");
        assert!(!b.clog(link), "the second finds it clogged");
        assert!(b.clog(back));
        assert!(!b.unclog(link), "the first heal leaves it clogged: another cut holds it");
        assert!(b.unclog(link), "the last heal unclogs");
        assert!(!b.unclog(link), "nothing holds it any more");
        assert!(b.unclog(back));
    }

    #[test]
    fn the_network_is_the_composition_of_the_active_faults() {
        let mut b = Broken::default();
        let default = madsim::net::Config::default();
        assert_eq!(b.network_config(), default);
        let ms = Duration::from_millis;
        b.network.insert(1, NetworkFault::Latency { max_ms: 300 });
        b.network.insert(2, NetworkFault::Latency { max_ms: 20 });
        b.network.insert(3, NetworkFault::Loss { rate: 0.01 });
        b.network.insert(4, NetworkFault::Loss { rate: 0.05 });
        let c = b.network_config();
        assert_eq!((c.send_latency, c.packet_loss_rate), (ms(1)..ms(300), 0.05));
        b.network.remove(&1);
        b.network.remove(&4);
        let c = b.network_config();
        assert_eq!((c.send_latency, c.packet_loss_rate), (ms(1)..ms(20), 0.01), "the others still hold");
        b.network.remove(&2);
        let c = b.network_config();
        assert_eq!((c.send_latency, c.packet_loss_rate), (default.send_latency.clone(), 0.01));
        b.network.remove(&3);
        assert_eq!(b.network_config(), default, "the default once the last heals");
    }
}
