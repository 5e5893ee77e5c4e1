//! The runtime's clock, as `src/core` sees time: milliseconds since the node started.
//!
//! The one place outside the core that reads the time, through `tokio::time` only: real time in the production
//! build, simulated time in the simulation build (where madsim serves `Instant::now` from its virtual clock). The
//! wall clock is read here too ([`wall_now`]), for the few times that must be stored and compared between masters.
//!
//! Every deadline a node judges (self-fence, step-down, offline TTL, worker TTL, keep-alive and heartbeat timing,
//! campaign retry, backoff) is read with [`Clock::now`] and waited for with [`Clock::sleep_until`] or
//! [`Clock::sleep`], never with `tokio::time` directly, so that the simulation can make one node's clock run fast
//! or slow, or jump forward, and the node's timers follow it. The deadlines gRPC and metastore calls carry
//! (`tokio::time::timeout`) stay in true time: they bound a wait for the network, not a judgement of liveness,
//! and the clock tolerance the README states counts them at their true length.
//!
//! In the production build a clock is a plain monotonic clock: an origin, and timers are `tokio`'s. In the
//! simulation build a clock reads its node's [`Dial`]: the node's hardware clock, which runs at a rate of true
//! (madsim's) time and may jump forward. A dial change wakes every sleep of the node, which re-arms on the new
//! reading: a forward jump wakes the timers now due, a rate change moves the timers already armed. Readings are
//! monotonic: a dial only ever moves forward.

use std::time::Duration;

use crate::core::time::{Time, WallTime};

/// A node's clock; cheap to clone.
#[derive(Clone, Debug)]
pub struct Clock {
    /// Production: the instant the node started.
    #[cfg(not(madsim))]
    origin: tokio::time::Instant,
    /// Simulation: the dial's reading when the node started, and the dial.
    #[cfg(madsim)]
    origin: Duration,
    #[cfg(madsim)]
    dial: Dial,
}

impl Clock {
    // In the simulation build `tokio::time::Instant` is std's, whose `now` madsim virtualises; clippy sees the std
    // path it bans elsewhere.
    #[allow(clippy::disallowed_methods)]
    #[cfg(not(madsim))]
    pub fn start() -> Clock {
        Clock { origin: tokio::time::Instant::now() }
    }

    /// An instant as this clock's time (instants before the start read as zero).
    #[cfg(not(madsim))]
    pub fn at(&self, when: tokio::time::Instant) -> Time {
        millis(when.saturating_duration_since(self.origin))
    }

    #[cfg(not(madsim))]
    pub fn now(&self) -> Time {
        millis(self.origin.elapsed())
    }

    /// The instant of core time `t`, for timers and reports.
    #[cfg(not(madsim))]
    pub fn instant(&self, t: Time) -> tokio::time::Instant {
        self.origin + Duration::from_millis(t.as_millis())
    }

    /// Sleeps until core time `t` (for ever if it is [`Time::NEVER`]).
    #[cfg(not(madsim))]
    pub async fn sleep_until(&self, t: Time) {
        if t == Time::NEVER {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep_until(self.instant(t)).await;
    }

    /// Sleeps for `d` of this clock's time.
    #[cfg(not(madsim))]
    pub async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

fn millis(d: Duration) -> Time {
    Time::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(madsim)]
pub use dial::Dial;

#[cfg(madsim)]
mod dial {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{millis, Clock};
    use crate::core::time::Time;

    /// Parts per million: the unit of a dial's rate (1.0 = `PPM`).
    pub const PPM: u64 = 1_000_000;

    /// The most faces a dial remembers: an instant read before the oldest is mapped through the oldest.
    pub const FACES_MAX: usize = 256;

    /// A node's hardware clock in the simulation: its reading runs at `rate` × true time and jumps forward when
    /// told. Shared by the simulation (which turns it, through the node's handle) and every incarnation of the
    /// node (whose [`Clock`]s read it). Integer arithmetic in nanoseconds and parts per million: deterministic,
    /// and exact at rate 1 (a node whose dial is never turned times everything as a plain clock would).
    #[derive(Clone, Debug)]
    pub struct Dial(Arc<Inner>);

    #[derive(Debug)]
    struct Inner {
        /// Every face the dial has shown, oldest first (the last is the current one; at most [`FACES_MAX`]).
        faces: Mutex<Vec<Face>>,
        /// Told on every change: sleeps wait on it and re-arm. A `Notify`, which wakes its waiters in the order
        /// they began to wait, not a `watch` channel, whose wake order among many receivers comes from a per-thread
        /// generator the simulator does not control (swarm seed 97150 told two stories, run twice, once a dial
        /// turned; the executor's `DrainSignal` met the same trap).
        turned: tokio::sync::Notify,
    }

    /// The reading at one true instant, and the rate from there on.
    #[derive(Clone, Copy, Debug)]
    struct Face {
        anchor: Instant,
        reading: Duration,
        ppm: u64,
    }

    impl Face {
        fn reading_at(&self, when: Instant) -> Duration {
            let scale = |d: Duration| {
                Duration::from_nanos(
                    u64::try_from(d.as_nanos() * u128::from(self.ppm) / u128::from(PPM)).unwrap_or(u64::MAX),
                )
            };
            if when >= self.anchor {
                self.reading.saturating_add(scale(when - self.anchor))
            } else {
                self.reading.saturating_sub(scale(self.anchor - when))
            }
        }

        /// The true instant the reading reaches `reading` (the first nanosecond at or after it).
        fn instant_of(&self, reading: Duration) -> Instant {
            let unscale = |d: Duration| {
                let nanos = (d.as_nanos() * u128::from(PPM)).div_ceil(u128::from(self.ppm));
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX / 4))
            };
            if reading >= self.reading {
                self.anchor + unscale(reading - self.reading)
            } else {
                self.anchor.checked_sub(unscale(self.reading - reading)).unwrap_or(self.anchor)
            }
        }
    }

    #[allow(clippy::disallowed_methods)] // madsim's virtual clock
    fn true_now() -> Instant {
        Instant::now()
    }

    impl Default for Dial {
        fn default() -> Dial {
            Dial::new()
        }
    }

    impl Dial {
        /// A dial reading zero now, at true rate.
        pub fn new() -> Dial {
            let face = Face { anchor: true_now(), reading: Duration::ZERO, ppm: PPM };
            Dial(Arc::new(Inner { faces: Mutex::new(vec![face]), turned: tokio::sync::Notify::new() }))
        }

        /// The reading now.
        pub fn reading(&self) -> Duration {
            self.face().reading_at(true_now())
        }

        /// The rate, in parts per million of true time.
        pub fn rate_ppm(&self) -> u64 {
            self.face().ppm
        }

        /// From now on, the reading runs at `ppm` parts per million of true time (at least 1).
        pub fn set_rate_ppm(&self, ppm: u64) {
            self.turn(|f, now| {
                *f = Face { anchor: now, reading: f.reading_at(now), ppm: ppm.max(1) };
            });
        }

        /// The reading jumps forward by `by`, now.
        pub fn jump(&self, by: Duration) {
            self.turn(|f, now| {
                *f = Face { anchor: now, reading: f.reading_at(now).saturating_add(by), ppm: f.ppm };
            });
        }

        fn turn(&self, change: impl FnOnce(&mut Face, Instant)) {
            let mut faces = self.0.faces.lock().unwrap();
            let mut next = *faces.last().expect("a dial has a face");
            change(&mut next, true_now());
            faces.push(next);
            if faces.len() > FACES_MAX {
                faces.remove(0);
            }
            drop(faces);
            self.0.turned.notify_waiters();
        }

        fn face(&self) -> Face {
            *self.0.faces.lock().unwrap().last().expect("a dial has a face")
        }

        /// The reading at `when`, through the face the dial showed then.
        fn reading_at(&self, when: Instant) -> Duration {
            let faces = self.0.faces.lock().unwrap();
            let face = faces.iter().rev().find(|f| f.anchor <= when).or(faces.first()).expect("a dial has a face");
            face.reading_at(when)
        }

        /// The true instant the reading was (or, by the current face, will be) `reading`: through the face that
        /// showed it; a reading a jump skipped maps to the instant of the jump.
        fn instant_of(&self, reading: Duration) -> Instant {
            let faces = self.0.faces.lock().unwrap();
            let k = faces.iter().rposition(|f| f.reading <= reading).unwrap_or(0);
            let at = faces[k].instant_of(reading);
            faces.get(k + 1).map_or(at, |next| at.min(next.anchor))
        }
    }

    /// `tokio::time::sleep_until` that arms its timer once. madsim's `Sleep` adds a timer (a callback holding the
    /// waker) to the runtime's heap at every poll while it is pending, and the timer stays there until its deadline,
    /// even after the `Sleep` is dropped: a `select!` loop woken often by its other branches would add one per
    /// wake-up. This future arms one at its first poll (again only if it is polled with a waker that does not wake
    /// the same task), and afterwards only compares the time: the armed timer wakes the task at the deadline.
    struct Deadline {
        /// madsim's `Sleep` is `Unpin`, and tells by the runtime's own clock whether it is due.
        sleep: tokio::time::Sleep,
        armed: Option<std::task::Waker>,
    }

    impl Deadline {
        fn new(at: Instant) -> Deadline {
            Deadline { sleep: tokio::time::sleep_until(at), armed: None }
        }
    }

    impl std::future::Future for Deadline {
        type Output = ();

        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
            if self.armed.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                return match self.sleep.is_elapsed() {
                    true => std::task::Poll::Ready(()),
                    false => std::task::Poll::Pending,
                };
            }
            let polled = std::pin::Pin::new(&mut self.sleep).poll(cx);
            self.armed = Some(cx.waker().clone());
            polled
        }
    }

    impl Clock {
        /// A clock starting now on a dial of its own (at true rate, never turned).
        pub fn start() -> Clock {
            Clock::start_on(&Dial::new())
        }

        /// A clock starting now on `dial` (the node's: its rate and jumps apply).
        pub fn start_on(dial: &Dial) -> Clock {
            Clock { origin: dial.reading(), dial: dial.clone() }
        }

        /// An instant as this clock's time (instants before the start read as zero), through the face the dial
        /// showed then.
        pub fn at(&self, when: Instant) -> Time {
            millis(self.dial.reading_at(when).saturating_sub(self.origin))
        }

        pub fn now(&self) -> Time {
            millis(self.dial.reading().saturating_sub(self.origin))
        }

        /// The true instant this clock read core time `t` (through the face the dial showed then), or will read it
        /// by the dial's current face: for reports (a timer armed on it would not follow a later turn of the dial:
        /// sleep with [`Clock::sleep_until`]).
        pub fn instant(&self, t: Time) -> Instant {
            self.instant_of(self.origin.saturating_add(Duration::from_millis(t.as_millis())))
        }

        fn instant_of(&self, reading: Duration) -> Instant {
            self.dial.instant_of(reading)
        }

        /// Sleeps until core time `t` (for ever if it is [`Time::NEVER`]), re-armed whenever the dial turns.
        pub async fn sleep_until(&self, t: Time) {
            if t == Time::NEVER {
                std::future::pending::<()>().await;
            }
            self.sleep_until_reading(self.origin.saturating_add(Duration::from_millis(t.as_millis()))).await;
        }

        /// Sleeps for `d` of this clock's time, re-armed whenever the dial turns.
        pub async fn sleep(&self, d: Duration) {
            self.sleep_until_reading(self.dial.reading().saturating_add(d)).await;
        }

        async fn sleep_until_reading(&self, reading: Duration) {
            loop {
                // Waiting before the face is read: a turn after this point is seen.
                let turned = self.dial.0.turned.notified();
                tokio::pin!(turned);
                turned.as_mut().enable();
                let face = self.dial.face();
                // Always through the timer, even when the reading is reached already: a timer at a past instant
                // still yields once, as `tokio::time::sleep_until` does (a loop that sleeps until a deadline it
                // reached lets its other branches run), and on a dial never turned the instant is exactly the one
                // a plain clock would arm.
                tokio::select! {
                    biased;
                    // Armed on the face it was computed from: due.
                    _ = Deadline::new(face.instant_of(reading)) => return,
                    _ = turned => {}
                }
            }
        }
    }
}

/// The wall clock now: the time a master stores where another master must judge it later (a deleted job's
/// tombstone). Simulated in the simulation build (madsim serves `SystemTime::now` from its virtual clock, from a
/// start drawn by the seed); clock faults do not turn it (the readers of wall times allow for seconds of skew).
// why: the one wall-clock read; its readers allow for the skew between masters' clocks.
#[allow(clippy::disallowed_methods)]
pub fn wall_now() -> WallTime {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    WallTime(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}

/// The CPU time this OS thread has used: for figures only (the leader loop's cost per tick), never for a decision.
/// Read from the kernel directly, in the simulation too, where madsim serves every libc clock from its virtual time
/// (a step of synchronous work there takes no simulated time at all, and this says what it cost the host).
// why: the one read of a host clock inside the simulation; what it returns reaches metrics, never behaviour.
#[allow(clippy::disallowed_methods)]
pub fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}
