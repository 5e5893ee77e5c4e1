//! The master's metrics: counters and a histogram that the async layer bumps where it applies a decision, gauges
//! read from the leader's term when scraped, and their Prometheus text exposition (format 0.0.4), written by hand.
//!
//! Invariants:
//! - every metric is described once, by [`Metric::family`] (name, type, help), and the exposition writes each family's
//!   `# HELP` and `# TYPE` lines even when it has no sample (a follower holds no registry and no jobs);
//! - counters only grow, for the life of the process (a new term does not reset them);
//! - label values come from fixed sets (states, task kinds, rejection reasons), never from ids or names, so the
//!   number of series is bounded whatever the cluster does.
//!
//! `src/core` stays pure: nothing here is called from it; the leader counts the core's verdicts after it applies
//! them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::core::job::JobState;
use crate::meta::{RequestKind, Requests};

/// Counters and histograms an operator (through `/metrics`) and the simulator read.
#[derive(Debug)]
pub struct Stats {
    /// Writes refused because this master was no longer the leader.
    pub fenced_writes: AtomicU64,
    /// Terms this master began.
    pub terms: AtomicU64,
    /// Executors this master declared offline.
    pub executors_offline: AtomicU64,
    /// Writes whose outcome had to be settled by a re-read.
    pub unknown_writes: AtomicU64,
    /// Leader-only calls this master forwarded to the leader as a follower: executors' heartbeats, then the rest.
    pub forwarded_calls: [AtomicU64; 2],
    /// Job masters placed by the leader loop (their start written), by this master.
    pub job_master_placements: AtomicU64,
    /// Workers placed for job masters (`ScheduleTask` answered with an executor), by this master.
    pub worker_placements: AtomicU64,
    /// Placement attempts that found no executor, or were refused, indexed by [`Rejection`].
    pub placement_rejections: [AtomicU64; Rejection::ALL.len()],
    /// The gap between consecutive accepted heartbeats of one executor, as this leader received them.
    pub heartbeat_gaps: Histogram,
    /// The CPU time of each tick of the leader loop: the job manager's periodic pass and the carrying out of what
    /// it decided (the host's thread CPU clock, in the simulation too).
    pub tick_cpu: Histogram,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            fenced_writes: AtomicU64::new(0),
            terms: AtomicU64::new(0),
            executors_offline: AtomicU64::new(0),
            unknown_writes: AtomicU64::new(0),
            forwarded_calls: Default::default(),
            job_master_placements: AtomicU64::new(0),
            worker_placements: AtomicU64::new(0),
            placement_rejections: Default::default(),
            heartbeat_gaps: Histogram::heartbeat_gaps(),
            tick_cpu: Histogram::with_bounds_us(&TICK_CPU_BOUNDS_US),
        }
    }
}

impl Stats {
    /// Counts one rejected placement.
    pub fn reject(&self, why: Rejection) {
        self.placement_rejections[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Rejected placements so far for `why`.
    pub fn rejections(&self, why: Rejection) -> u64 {
        self.placement_rejections[why as usize].load(Ordering::Relaxed)
    }
}

pub use crate::core::manager::Rejection;

/// The upper bounds of the heartbeat-gap buckets, in microseconds: 0.1 s to 30 s (executors heartbeat every 500 ms
/// by default and are declared offline after 10 s of silence).
pub const HEARTBEAT_GAP_BOUNDS_US: [u64; 9] =
    [100_000, 250_000, 500_000, 750_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000];

/// The upper bounds of the leader's tick CPU buckets, in microseconds: a tick over a handful of executors takes
/// tens of microseconds, one over a thousand executors and ten thousand jobs milliseconds.
pub const TICK_CPU_BOUNDS_US: [u64; 12] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 250_000, 1_000_000];

/// A histogram of durations with fixed bucket bounds and one bucket above them, and the largest observation.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in microseconds, ascending.
    bounds_us: &'static [u64],
    /// Observations per bucket (not cumulative); the last is above every bound.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

impl Histogram {
    /// A histogram with upper bounds `bounds_us` (microseconds, ascending).
    pub fn with_bounds_us(bounds_us: &'static [u64]) -> Histogram {
        Histogram {
            bounds_us,
            buckets: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
        }
    }

    /// The heartbeat gaps' histogram: bounds [`HEARTBEAT_GAP_BOUNDS_US`].
    pub fn heartbeat_gaps() -> Histogram {
        Histogram::with_bounds_us(&HEARTBEAT_GAP_BOUNDS_US)
    }

    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = self.bounds_us.iter().position(|&b| us <= b).unwrap_or(self.bounds_us.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(us, Ordering::Relaxed);
        self.max_micros.fetch_max(us, Ordering::Relaxed);
    }

    /// Adds every observation of `other` (a histogram of the same bounds) to this one.
    pub fn absorb(&self, other: &Histogram) {
        debug_assert_eq!(self.bounds_us, other.bounds_us, "histograms of different bounds");
        for (mine, theirs) in self.buckets.iter().zip(other.buckets.iter()) {
            mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.count.fetch_add(other.count(), Ordering::Relaxed);
        self.sum_micros.fetch_add(other.sum_micros.load(Ordering::Relaxed), Ordering::Relaxed);
        self.max_micros.fetch_max(other.max_micros.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The sum of the observations so far.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros.load(Ordering::Relaxed))
    }

    /// The largest observation so far (zero without any).
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_micros.load(Ordering::Relaxed))
    }

    /// The upper bound of the bucket holding the `q`-quantile (0 < q <= 1) of the observations, `None` without
    /// any; above the last bound, the largest observation.
    pub fn quantile_bound(&self, q: f64) -> Option<Duration> {
        let (rows, total) = self.counts();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let i = rows.iter().position(|&c| c >= rank).unwrap_or(rows.len() - 1);
        Some(self.bounds_us.get(i).map_or_else(|| self.max(), |&us| Duration::from_micros(us)))
    }

    /// Cumulative counts per bucket and their total.
    fn counts(&self) -> (Vec<u64>, u64) {
        let mut total = 0;
        let rows = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        (rows, total)
    }

    /// `(upper bound in seconds or +Inf, cumulative count)` per bucket, then the sum in seconds and the count.
    fn cumulative(&self) -> (Vec<(String, u64)>, f64, u64) {
        let (counts, total) = self.counts();
        let rows = counts
            .into_iter()
            .enumerate()
            .map(|(i, c)| (self.bounds_us.get(i).map_or_else(|| "+Inf".to_owned(), |&us| seconds(us)), c))
            .collect();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        // The count is read last: with concurrent observations it may run ahead of the buckets, never behind.
        (rows, sum, self.count().max(total))
    }
}

/// `us` microseconds as a decimal number of seconds, shortest form (`0.00005`, `0.25`, `1`, `30`).
fn seconds(us: u64) -> String {
    let text = format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A metric family: its name, type and help text.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// Every metric family the master exposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    IsLeader,
    LeaderEpoch,
    Terms,
    Executors,
    ExecutorSlots,
    ExecutorsOffline,
    HeartbeatGaps,
    Jobs,
    Placements,
    Rejections,
    FencedWrites,
    UnknownWrites,
    ForwardedCalls,
    CorruptRecords,
    TickCpu,
    MetastoreRequests,
}

impl Metric {
    /// Every family, in the order of the exposition.
    pub const ALL: [Metric; 16] = [
        Metric::IsLeader,
        Metric::LeaderEpoch,
        Metric::Terms,
        Metric::Executors,
        Metric::ExecutorSlots,
        Metric::ExecutorsOffline,
        Metric::HeartbeatGaps,
        Metric::Jobs,
        Metric::Placements,
        Metric::Rejections,
        Metric::FencedWrites,
        Metric::UnknownWrites,
        Metric::ForwardedCalls,
        Metric::CorruptRecords,
        Metric::TickCpu,
        Metric::MetastoreRequests,
    ];

    pub fn family(self) -> Family {
        let (name, kind, help) = match self {
            Metric::IsLeader => {
                ("foreman_is_leader", Kind::Gauge, "1 while this master leads and serves (its recovery done), else 0.")
            }
            Metric::LeaderEpoch => (
                "foreman_leader_epoch",
                Kind::Gauge,
                "The leader epoch this master acts under (recovering or serving); 0 while it does not lead.",
            ),
            Metric::Terms => (
                "foreman_leader_terms_total",
                Kind::Counter,
                "Leader terms this master began; the sum over all masters counts the leader changes.",
            ),
            Metric::Executors => (
                "foreman_executors",
                Kind::Gauge,
                "Executors in the leader's registry by state: online (heard from in this term), unconfirmed \
                 (restored by a new leader, not yet heard from) or draining (shutting down, nothing new placed \
                 there). Only the leader has samples.",
            ),
            Metric::ExecutorSlots => (
                "foreman_executor_slots",
                Kind::Gauge,
                "Task slots of the registered executors: capacity, or used (reported and reserved). Only the leader \
                 has samples.",
            ),
            Metric::ExecutorsOffline => (
                "foreman_executors_declared_offline_total",
                Kind::Counter,
                "Executors this master declared offline (their TTL passed without a heartbeat), once the verdict \
                 was written.",
            ),
            Metric::HeartbeatGaps => (
                "foreman_executor_heartbeat_gap_seconds",
                Kind::Histogram,
                "Time between two consecutive accepted heartbeats of one executor as the leader received them \
                 (compare with the heartbeat interval and the offline TTL). The first heartbeat of a term is not \
                 observed.",
            ),
            Metric::Jobs => (
                "foreman_jobs",
                Kind::Gauge,
                "Jobs by state, as the leader holds them; corrupt: jobs whose stored record does not decode (they \
                 never run and can only be deleted). Only the leader has samples.",
            ),
            Metric::Placements => (
                "foreman_placements_total",
                Kind::Counter,
                "Tasks this master placed on an executor, by kind: job_master (by the leader loop, once written) \
                 or worker (ScheduleTask answered).",
            ),
            Metric::Rejections => (
                "foreman_placement_rejections_total",
                Kind::Counter,
                "Placements not made, by reason; a job that does not fit counts again on every leader-loop pass.",
            ),
            Metric::FencedWrites => (
                "foreman_fenced_writes_total",
                Kind::Counter,
                "Metastore writes refused because this master no longer led (each one ends its term).",
            ),
            Metric::UnknownWrites => (
                "foreman_unknown_writes_total",
                Kind::Counter,
                "Metastore writes whose outcome was unknown (no answer in time) and had to be settled by a re-read.",
            ),
            Metric::ForwardedCalls => (
                "foreman_forwarded_calls_total",
                Kind::Counter,
                "Leader-only calls this master took as a follower and forwarded to the leader, reached or not, by \
                 call: heartbeat (an executor's) or other. Executors call the leader directly once a heartbeat \
                 reply names its address: heartbeats grow here after a leader change (a few per executor) and while an \
                 executor cannot reach the leader's address.",
            ),
            Metric::CorruptRecords => (
                "foreman_corrupt_records",
                Kind::Gauge,
                "Stored records the leader found corrupt (they do not decode, or name another id than their key), \
                 by kind: job (shown as corrupt until deleted) or executor (its executor registers again). Only the \
                 leader has samples.",
            ),
            Metric::TickCpu => (
                "foreman_leader_tick_cpu_seconds",
                Kind::Histogram,
                "CPU time of each tick of the leader loop: a pass of the job manager when one of its deadlines \
                 comes (offline checks, placement retries, backoffs, reservations' expiry) and the carrying out of \
                 what it decided. It grows with the cluster.",
            ),
            Metric::MetastoreRequests => (
                "foreman_metastore_requests_total",
                Kind::Counter,
                "Requests this master sent to the metastore, by op: read, write (a transaction), lease (grant, \
                 keep-alive, revoke) or election (campaign, resign); failed and timed-out ones included.",
            ),
        };
        Family { name, kind, help }
    }
}

/// What a leader's term shows at scrape time (the job manager's figures).
pub use crate::core::manager::TermGauges;

/// The gauges of one scrape: the master's role, and its term's view when it leads and serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    pub serving: bool,
    pub epoch: u64,
    pub term: Option<TermGauges>,
}

/// The lowercase name of a job state, as the JSON API and `--output json` spell it.
pub fn job_state_label(s: JobState) -> String {
    crate::rpc::views::job_state_name(super::convert::state_to_wire(s) as i32)
}

/// The Prometheus text exposition (format 0.0.4) of `gauges`, `stats` and the metastore's `requests`.
pub fn render(gauges: &Gauges, stats: &Stats, requests: &Requests) -> String {
    let mut out = Exposition::default();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    for metric in Metric::ALL {
        let family = metric.family();
        out.family(&family);
        let n = family.name;
        match metric {
            Metric::IsLeader => out.sample(n, &[], u64::from(gauges.serving)),
            Metric::LeaderEpoch => out.sample(n, &[], gauges.epoch),
            Metric::Terms => out.sample(n, &[], load(&stats.terms)),
            Metric::Executors => {
                if let Some(t) = &gauges.term {
                    out.sample(n, &[("state", "online")], t.executors_online);
                    out.sample(n, &[("state", "unconfirmed")], t.executors_unconfirmed);
                    out.sample(n, &[("state", "draining")], t.executors_draining);
                }
            }
            Metric::ExecutorSlots => {
                if let Some(t) = &gauges.term {
                    out.sample(n, &[("kind", "capacity")], t.slots_capacity);
                    out.sample(n, &[("kind", "used")], t.slots_used);
                }
            }
            Metric::ExecutorsOffline => out.sample(n, &[], load(&stats.executors_offline)),
            Metric::HeartbeatGaps => out.histogram(n, &stats.heartbeat_gaps),
            Metric::Jobs => {
                if let Some(t) = &gauges.term {
                    for (state, count) in JobState::ALL.iter().zip(t.jobs) {
                        out.sample(n, &[("state", &job_state_label(*state))], count);
                    }
                    out.sample(n, &[("state", "corrupt")], t.jobs_corrupt);
                }
            }
            Metric::Placements => {
                out.sample(n, &[("kind", "job_master")], load(&stats.job_master_placements));
                out.sample(n, &[("kind", "worker")], load(&stats.worker_placements));
            }
            Metric::Rejections => {
                for why in Rejection::ALL {
                    out.sample(n, &[("reason", why.as_str())], stats.rejections(why));
                }
            }
            Metric::FencedWrites => out.sample(n, &[], load(&stats.fenced_writes)),
            Metric::UnknownWrites => out.sample(n, &[], load(&stats.unknown_writes)),
            Metric::ForwardedCalls => {
                out.sample(n, &[("call", "heartbeat")], load(&stats.forwarded_calls[0]));
                out.sample(n, &[("call", "other")], load(&stats.forwarded_calls[1]));
            }
            Metric::CorruptRecords => {
                if let Some(t) = &gauges.term {
                    out.sample(n, &[("kind", "job")], t.corrupt_job_records);
                    out.sample(n, &[("kind", "executor")], t.corrupt_executor_records);
                }
            }
            Metric::TickCpu => out.histogram(n, &stats.tick_cpu),
            Metric::MetastoreRequests => {
                for kind in RequestKind::ALL {
                    out.sample(n, &[("op", kind.as_str())], requests.of(kind));
                }
            }
        }
    }
    out.text
}

impl super::Master {
    /// This instant's gauges: the role, and the term's registry and jobs when this master leads and serves (as
    /// the job manager holds them once the operation in progress, if any, is taken).
    pub async fn gauges(&self) -> Gauges {
        let now = self.clock.now();
        let acting = self.lock().leadership.acting(now);
        let Some(epoch) = acting else { return Gauges::default() };
        match self.term_gauges().await {
            Some(g) => Gauges { serving: true, epoch: epoch.0, term: Some(g) },
            None => Gauges { serving: false, epoch: epoch.0, term: None },
        }
    }

    /// The Prometheus text exposition of this master's metrics.
    pub async fn metrics_text(&self) -> String {
        render(&self.gauges().await, &self.stats, self.store.requests())
    }
}

/// The text being written. Label values here come from fixed sets of plain words: nothing needs escaping.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, f: &Family) {
        let _ = writeln!(self.text, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(self.text, "# TYPE {} {}", f.name, f.kind.as_str());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let _ = write!(self.text, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn histogram(&mut self, name: &str, h: &Histogram) {
        let (rows, sum, count) = h.cumulative();
        let bucket = format!("{name}_bucket");
        for (le, total) in rows {
            self.sample(&bucket, &[("le", &le)], total);
        }
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::placement::PlacementError;

    #[test]
    fn every_family_is_written_with_help_and_type_even_without_samples() {
        let text = render(&Gauges::default(), &Stats::default(), &Requests::default());
        for f in Metric::ALL.map(Metric::family) {
            assert!(text.contains(&format!("# HELP {} ", f.name)), "{}", f.name);
            assert!(text.contains(&format!("# TYPE {} {}\n", f.name, f.kind.as_str())), "{}", f.name);
        }
        // A follower: no registry or job samples, but its role and the counters.
        assert!(!text.contains("foreman_jobs{"), "{text}");
        assert!(!text.contains("foreman_executors{"), "{text}");
        assert!(text.contains("\nforeman_is_leader 0\n"), "{text}");
        assert!(text.contains("\nforeman_placement_rejections_total{reason=\"stale_job_master\"} 0\n"), "{text}");
        let names: std::collections::BTreeSet<&str> = Metric::ALL.iter().map(|m| m.family().name).collect();
        assert_eq!(names.len(), Metric::ALL.len(), "two families share a name");
    }

    #[test]
    fn a_leader_shows_its_term() {
        let mut jobs = [0; 6];
        jobs[1] = 3;
        let gauges = Gauges {
            serving: true,
            epoch: 7,
            term: Some(TermGauges {
                executors_online: 2,
                executors_unconfirmed: 1,
                executors_draining: 0,
                slots_capacity: 8,
                slots_used: 3,
                jobs,
                jobs_corrupt: 1,
                corrupt_job_records: 2,
                corrupt_executor_records: 0,
            }),
        };
        let stats = Stats::default();
        stats.reject(Rejection::SelectorUnsatisfied);
        stats.reject(Rejection::SelectorUnsatisfied);
        stats.tick_cpu.observe(Duration::from_micros(300));
        let requests = Requests::default();
        for kind in [RequestKind::Write, RequestKind::Write, RequestKind::Lease] {
            requests.count(kind);
        }
        let text = render(&gauges, &stats, &requests);
        for line in [
            "foreman_leader_tick_cpu_seconds_bucket{le=\"0.00025\"} 0",
            "foreman_leader_tick_cpu_seconds_bucket{le=\"0.0005\"} 1",
            "foreman_leader_tick_cpu_seconds_count 1",
            "foreman_metastore_requests_total{op=\"read\"} 0",
            "foreman_metastore_requests_total{op=\"write\"} 2",
            "foreman_metastore_requests_total{op=\"lease\"} 1",
            "foreman_is_leader 1",
            "foreman_leader_epoch 7",
            "foreman_jobs{state=\"corrupt\"} 1",
            "foreman_corrupt_records{kind=\"job\"} 2",
            "foreman_corrupt_records{kind=\"executor\"} 0",
            "foreman_executors{state=\"online\"} 2",
            "foreman_executors{state=\"unconfirmed\"} 1",
            "foreman_executor_slots{kind=\"used\"} 3",
            "foreman_jobs{state=\"created\"} 0",
            "foreman_jobs{state=\"running\"} 3",
            "foreman_jobs{state=\"failed\"} 0",
            "foreman_placement_rejections_total{reason=\"selector_unsatisfied\"} 2",
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line}:\n{text}");
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let h = Histogram::heartbeat_gaps();
        // (observed ms) → its bucket's upper bound
        for ms in [50, 100, 101, 600, 45_000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = Exposition::default();
        out.histogram("h", &h);
        let want = "h_bucket{le=\"0.1\"} 2\nh_bucket{le=\"0.25\"} 3\nh_bucket{le=\"0.5\"} 3\n\
                    h_bucket{le=\"0.75\"} 4\nh_bucket{le=\"1\"} 4\nh_bucket{le=\"2.5\"} 4\nh_bucket{le=\"5\"} 4\n\
                    h_bucket{le=\"10\"} 4\nh_bucket{le=\"30\"} 4\nh_bucket{le=\"+Inf\"} 5\nh_sum 45.851\nh_count 5\n";
        assert_eq!(out.text, want);
        assert_eq!((h.sum(), h.max()), (Duration::from_millis(45_851), Duration::from_millis(45_000)));
    }

    #[test]
    fn a_quantile_is_the_bound_of_its_bucket_or_the_largest_observation_above_the_bounds() {
        let h = Histogram::with_bounds_us(&TICK_CPU_BOUNDS_US);
        assert_eq!(h.quantile_bound(0.5), None);
        // 98 passes of 80 us, one of 3 ms and one of 2.5 s (above every bound).
        for _ in 0..98 {
            h.observe(Duration::from_micros(80));
        }
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(2_500));
        let us = |q| h.quantile_bound(q).map(|d| d.as_micros());
        assert_eq!((us(0.5), us(0.98), us(0.99), us(1.0)), (Some(100), Some(100), Some(5_000), Some(2_500_000)));
        assert_eq!((h.count(), h.max()), (100, Duration::from_millis(2_500)));
        let both = Histogram::with_bounds_us(&TICK_CPU_BOUNDS_US);
        both.absorb(&h);
        both.absorb(&h);
        assert_eq!((both.count(), both.sum(), both.max()), (200, h.sum() * 2, h.max()));
        assert_eq!(both.quantile_bound(0.99).map(|d| d.as_micros()), Some(5_000));
    }

    #[test]
    fn seconds_are_written_shortest() {
        let table = [
            (0, "0"),
            (100_000, "0.1"),
            (250_000, "0.25"),
            (1_000_000, "1"),
            (2_500_000, "2.5"),
            (30_000_000, "30"),
            (1_000, "0.001"),
            (50, "0.00005"),
        ];
        for (us, want) in table {
            assert_eq!(seconds(us), want, "{us}");
        }
    }

    #[test]
    fn every_placement_error_has_a_reason() {
        let table: [(PlacementError, &str); 3] = [
            (PlacementError::NoExecutors, "no_executors"),
            (PlacementError::ZeroCost, "zero_cost"),
            (
                PlacementError::InsufficientCapacity { cost: 2, best_free: 1, largest: 4, candidates: 3 },
                "insufficient_capacity",
            ),
        ];
        for (e, want) in table {
            assert_eq!(Rejection::from(&e).as_str(), want);
        }
        for (i, why) in Rejection::ALL.iter().enumerate() {
            assert_eq!(*why as usize, i, "Rejection::ALL follows the enum's order");
        }
    }
}
