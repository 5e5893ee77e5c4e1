//! What every scenario shares: the simulated clock in core time, a recorder nodes report to, and the seed banner.
//!
//! The recorder is handed to each node when the scenario builds it, never reached through a global: all simulated
//! nodes share one process, and statics would leak between nodes and between seeds.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use foreman::core::invariants::{Class, Rule, Violation};
use foreman::core::time::Time;

/// The scenario's clock: foreman's own, started when the scenario begins (simulated time in this build).
pub use foreman::clock::Clock;

/// What a recorder keeps: an event that may be routine (a heartbeat acknowledged, a checkpoint written), which
/// the story log shows only at debug level, so that the story at info level is one line per state transition.
pub trait Story: Clone + std::fmt::Debug {
    fn routine(&self) -> bool {
        false
    }
}

/// An append-only log of what nodes saw, in simulated-time order, shared by the nodes of one run.
#[derive(Clone, Debug)]
pub struct Recorder<E> {
    events: Arc<Mutex<Vec<(Time, String, E)>>>,
    clock: Clock,
}

impl<E: Story> Recorder<E> {
    pub fn new(clock: Clock) -> Recorder<E> {
        Recorder { events: Arc::new(Mutex::new(Vec::new())), clock }
    }

    /// Records `event` seen by `node` now, and tells the story line.
    pub fn record(&self, node: &str, event: E) {
        let at = self.clock.now();
        if event.routine() {
            tracing::debug!("t={at} {node} {event:?}");
        } else {
            tracing::info!("t={at} {node} {event:?}");
        }
        self.events.lock().expect("recorder lock").push((at, node.to_owned(), event));
    }

    pub fn events(&self) -> Vec<(Time, String, E)> {
        self.events.lock().expect("recorder lock").clone()
    }

    /// The events recorded from the `from`-th on (for a scenario that waits for one without copying the story).
    pub fn events_from(&self, from: usize) -> Vec<(Time, String, E)> {
        let events = self.events.lock().expect("recorder lock");
        events.get(from..).map(<[_]>::to_vec).unwrap_or_default()
    }
}

/// Writes past the test harness's output capture: a suite's figures are for every run's log, not only a failing
/// one's.
pub fn report(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(format!("{text}\n").as_bytes());
}

/// The first seed of a suite that runs its seeds itself: `MADSIM_TEST_SEED`, else the wall clock, as madsim picks
/// one (the caller prints it; the simulations never see the clock).
pub fn first_seed() -> u64 {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    std::env::var("MADSIM_TEST_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(now)
}

/// Prints the seed first, so every run (and every failure) says how to replay it.
pub fn announce(scenario: &str) -> u64 {
    let seed = madsim::runtime::Handle::current().seed();
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    eprintln!("scenario {scenario} seed {seed}: replay with MADSIM_TEST_SEED={seed} cargo stest --test sim {scenario}");
    seed
}

/// Ends the run with a checker's verdict. It says what broke (the violation's sentence, where the run failed),
/// then unwinds with the typed [`Violation`] as the payload, so that whoever runs the seed ([`run_seed`]) reads
/// the class, rule and ids from it rather than from the text. A `#[madsim::test]` fails as with a panic.
#[track_caller]
pub fn fail(v: Violation) -> ! {
    eprintln!("{}: {v}", std::panic::Location::caller());
    std::panic::resume_unwind(Box::new(v))
}

/// Fails the run with the violation `broken` builds, unless `ok`.
#[track_caller]
pub fn require(ok: bool, broken: impl FnOnce() -> Violation) {
    if !ok {
        fail(broken());
    }
}

/// Why a run failed: a checker's violation, or a crash (any other panic: a node's, or the harness's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    Violation(Violation),
    Crash(String),
}

impl Failure {
    /// The failure of a caught panic.
    pub fn of(p: Box<dyn std::any::Any + Send>) -> Failure {
        match p.downcast::<Violation>() {
            Ok(v) => Failure::Violation(*v),
            Err(p) => Failure::Crash(panic_text(&*p)),
        }
    }

    pub fn class(&self) -> Class {
        match self {
            Failure::Violation(v) => v.class(),
            Failure::Crash(_) => Class::Crash,
        }
    }

    /// Fails the caller the same way: unwinds with the same payload, without telling it again.
    pub fn resume(self) -> ! {
        match self {
            Failure::Violation(v) => std::panic::resume_unwind(Box::new(v)),
            Failure::Crash(text) => std::panic::resume_unwind(Box::new(text)),
        }
    }

    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Failure::Violation(v) => Some(v),
            Failure::Crash(_) => None,
        }
    }

    /// The checker that failed the run.
    pub fn checker(&self) -> Checker {
        match self {
            Failure::Violation(v) => Checker::Rule(v.rule),
            Failure::Crash(_) => Checker::Crash,
        }
    }
}

/// Which checker failed a run: the rule of a checker's violation, or a crash (any other panic), whatever its text.
/// A shrunk fault plan must fail the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checker {
    Rule(Rule),
    Crash,
}

impl std::fmt::Display for Checker {
    /// `safety rule 3 (at most one live incarnation)`, `liveness every job ends`, `a crash`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Checker::Rule(rule) => write!(f, "{} {rule}", rule.class()),
            Checker::Crash => f.write_str("a crash"),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Violation(v) => write!(f, "{v}"),
            Failure::Crash(text) => f.write_str(text),
        }
    }
}

/// Silences the panics the fake job type plans (`panic_at`): the framework catches each and the story records it
/// (`TaskPanicked`); printed with their backtraces, thousands of them buried a failing seed's report in CI's output.
/// Every other panic is printed as before. The hook is the process's, set once; it changes only what is printed.
pub fn quiet_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let text = p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied());
            if !text.is_some_and(|t| t.starts_with(foreman::jobs::fake::PLANNED_PANIC)) {
                default_hook(info);
            }
        }));
    });
}

/// Runs `scenario` for `seed` in a fresh simulation on its own thread (as `#[madsim::test]` does).
pub fn run_seed<T: Send + 'static>(
    seed: u64,
    scenario: impl FnOnce() -> Pin<Box<dyn Future<Output = T>>> + Send + 'static,
) -> Result<T, Failure> {
    quiet_planned_panics();
    // A plain thread per run, outside any simulation: the runtime below is the simulation.
    #[allow(clippy::disallowed_methods)]
    let handle = std::thread::spawn(move || {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(scenario())
    });
    handle.join().map_err(Failure::of)
}

/// Runs a suite's own `seeds`, each with `scenario` handed the slot where it puts its fault plan's text first; a
/// failing seed is reported with its failure, its plan and `replay(seed)`. The figures of the seeds that passed, and
/// the seeds that failed.
pub fn run_seeds<T: Send + 'static, F>(
    seeds: impl Iterator<Item = u64>,
    replay: fn(u64) -> String,
    scenario: fn(Arc<Mutex<Option<String>>>) -> F,
) -> (Vec<T>, Vec<u64>)
where
    F: Future<Output = T> + 'static,
{
    let (mut passed, mut failed) = (vec![], vec![]);
    for seed in seeds {
        let ran = Arc::new(Mutex::new(None));
        let slot = ran.clone();
        match run_seed(seed, move || Box::pin(scenario(slot))) {
            Ok(t) => passed.push(t),
            Err(f) => {
                let plan = ran.lock().expect("the plan's slot").take().unwrap_or_default();
                let class = Failure::class(&f);
                report(&format!("seed {seed} FAILED ({class}): {f}\n  plan: {plan}\n  replay: {}", replay(seed)));
                failed.push(seed);
            }
        }
    }
    (passed, failed)
}

/// The text of a caught panic (a violation's sentence, when a checker failed the run).
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .or_else(|| p.downcast_ref::<Violation>().map(|v| v.to_string()))
        .unwrap_or_default()
}

/// Who a simulated client says it is, on every call of a client built with it
/// (`JobManagerClient::with_interceptor(channel, As::user())`): the identity entry foreman's own nodes set
/// ([`foreman::rpc::identity`]), which the simulation's masters and executors check.
#[derive(Clone, Debug)]
pub struct As(tonic::metadata::AsciiMetadataValue);

impl As {
    pub fn principal(p: &foreman::core::auth::Principal) -> As {
        As(p.wire().parse().expect("a principal's text is a valid metadata value"))
    }

    /// The scenarios' clients: a user (the CLI's and the HTTP API's role) with role admin in every project.
    pub fn user() -> As {
        As::principal(&foreman::core::auth::Principal::parse_wire("user/sim-client *=admin").expect("a valid user"))
    }

    /// A user with `grants` (`PROJECT=ROLE,...`).
    pub fn user_with(name: &str, grants: &str) -> As {
        As::principal(
            &foreman::core::auth::Principal::parse_wire(&format!("user/{name} {grants}")).expect("a valid user"),
        )
    }
}

impl tonic::service::Interceptor for As {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert(foreman::rpc::identity::SIM_IDENTITY_KEY, self.0.clone());
        Ok(r)
    }
}
