//! The job-type API: what a job type implements ([`JobType`]: its configuration, its job master's decisions as a
//! pure [`JobLogic`], its workers' work), and what each worker incarnation is given to do its work
//! ([`WorkerCtx`]). The runtimes do the rest. The job-master runtime ([`super::job_master`]): recovery from the
//! metastore, worker epochs and records, placement and dispatch, which incarnation is current (the logic hears only
//! about those). The worker runtime ([`super::worker`]): the link to the job master (heartbeats, self-fence, stale
//! and cancel verdicts), the fenced checkpoint (read at start, written under the incarnation's epoch, observed for
//! the simulator's checkers), the drain marker, and the report of how the work ended. A job type that does nothing
//! more than this API cannot break the one-live-incarnation rule or move a checkpoint backwards.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::watch;

use super::checkpoint::{Checkpoints, SaveError};
use super::link::Progress;
pub use super::process::{Exit, Process, ProcessEvent, ProcessSpec};
use super::task::TaskEnv;
use crate::clock::Clock;
// Everything a job type names, in one place: a job type imports `foreman::framework::api::*` and nothing else.
pub use crate::core::ids::{Epoch, JobId, WorkerName};
pub use crate::core::job_master::{
    EndedWhy, JobLogic, LiveProgress, OnFailure, Verdict, WorkerError, WorkerEvent, WorkerSpec,
};
pub use crate::core::labels::Selector;
pub use crate::core::restarts::WORKER_RESTARTS_DEFAULT;
pub use crate::core::time::Time;
pub use crate::core::workers::LostReason;
pub use crate::framework::types::JobTypes;

pub use super::checkpoint::Saved;
pub use super::store::{JobStore, StoreError};

/// Why a configuration was refused; `field` names what to fix, JSON-pointer style (`config.workers`).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{field}: {problem}")]
pub struct ConfigProblem {
    pub field: String,
    pub problem: String,
}

impl ConfigProblem {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> ConfigProblem {
        ConfigProblem { field: field.into(), problem: problem.into() }
    }

    /// A JSON configuration that does not decode: the field serde names (`missing field `x``, `unknown field
    /// `x``), else `config`; the problem says what was `expected` (e.g. `{"workers": N}`).
    pub fn of_json(e: &serde_json::Error, expected: &str) -> ConfigProblem {
        let message = e.to_string();
        let named = ["missing field `", "unknown field `"]
            .iter()
            .filter(|_| e.classify() == serde_json::error::Category::Data)
            .find_map(|lead| message.strip_prefix(lead).and_then(|rest| rest.split('`').next()));
        let field = named.map_or_else(|| "config".to_owned(), |name| format!("config.{name}"));
        ConfigProblem::new(field, format!("{message}; expected {expected}"))
    }

    /// Reads a configuration as `T`; a refusal names the field to fix, a value of the wrong type included (serde
    /// names only where in the text it is: each top-level field is read alone to find whose value it is).
    pub fn parse_json<T: serde::de::DeserializeOwned>(config: &[u8], expected: &str) -> Result<T, ConfigProblem> {
        let fields = match serde_json::from_slice::<serde_json::Value>(config) {
            Err(e) => return Err(ConfigProblem::of_json(&e, expected)),
            Ok(serde_json::Value::Object(fields)) => fields,
            Ok(other) => {
                let kind = match other {
                    serde_json::Value::Array(_) => "an array",
                    serde_json::Value::String(_) => "a string",
                    serde_json::Value::Number(_) => "a number",
                    serde_json::Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                return Err(ConfigProblem::new("config", format!("is {kind}, not a JSON object; expected {expected}")));
            }
        };
        let e = match serde_json::from_slice::<T>(config) {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        let problem = ConfigProblem::of_json(&e, expected);
        if problem.field != "config" || e.classify() != serde_json::error::Category::Data {
            return Err(problem);
        }
        for (key, value) in fields {
            let alone = serde_json::Value::Object([(key.clone(), value)].into_iter().collect());
            match serde_json::from_value::<T>(alone) {
                Err(e) if !e.to_string().starts_with("missing field `") => {
                    return Err(ConfigProblem::new(format!("config.{key}"), format!("{e}; expected {expected}")));
                }
                _ => {}
            }
        }
        Err(problem)
    }

    /// `Ok` when `config.<field>`'s value `v` is within `lo..=hi`; else the problem says so.
    pub fn within(field: &str, v: u64, lo: u64, hi: u64) -> Result<(), ConfigProblem> {
        if (lo..=hi).contains(&v) {
            return Ok(());
        }
        Err(ConfigProblem::new(format!("config.{field}"), format!("is {v}; must be within {lo}..={hi}")))
    }
}

/// A job type.
pub trait JobType: Send + Sync + 'static {
    /// The job's `type`.
    const NAME: &'static str;
    /// The job's configuration, as [`JobType::parse_config`] reads it.
    type Config: Send;
    /// What one worker is started with (its job master chooses it; it travels as JSON in the dispatch).
    type WorkerConfig: Serialize + DeserializeOwned + Send;
    /// A worker's checkpoint: a JSON object without the keys `epoch`, `seq` and `stopped` (the envelope's).
    type Checkpoint: Serialize + DeserializeOwned + Clone + Default + Send + Sync;
    /// The job master's decisions.
    type Logic: JobLogic<Config = Self::Config, WorkerConfig = Self::WorkerConfig, Checkpoint = Self::Checkpoint>
        + Send
        + 'static;
    /// Reads and checks a job's configuration; the refusal names the field to fix. Called when the job is created
    /// and by each of its job masters.
    fn parse_config(config: &[u8]) -> Result<Self::Config, ConfigProblem>;
    /// One worker incarnation's work, from what `ctx` restored. Returns how it ended; a fenced write that was
    /// refused ends it with [`Interrupted`] (pass it up with `?`). Return between checkpoints: every
    /// [`WorkerCtx::try_save`] is settled when it returns.
    fn work<'a>(
        &'a self,
        config: Self::WorkerConfig,
        ctx: &'a mut WorkerCtx<Self::Checkpoint>,
    ) -> impl Future<Output = Result<WorkerEnd, Interrupted>> + Send + 'a;
}

/// How a worker's work ended, as it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerEnd {
    /// Its part of the job is done.
    Finished,
    /// It was told to stop ([`WorkerCtx::is_canceled`]) and did.
    Canceled,
    /// Its executor drains ([`WorkerCtx::is_draining`]) and it stopped after its last checkpoint: the runtime marks
    /// the checkpoint stopped, and its job master starts it again elsewhere at once.
    Drained,
    /// It cannot go on: its job master hears why, and whether running it again may help.
    Failed(WorkerError),
}

/// Why the work must end at once: a fenced write was refused, or a state could not be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interrupted {
    /// A newer incarnation of this worker exists: this one ends without reporting.
    Superseded,
    /// What was to be stored cannot be: a state that is no JSON object or holds a key of the envelope, a job
    /// store key or value out of bounds; the message says which. A bug of the job type: its worker fails.
    BadState(String),
}

impl From<SaveError> for Interrupted {
    fn from(e: SaveError) -> Interrupted {
        match e {
            SaveError::Superseded => Interrupted::Superseded,
            SaveError::BadState(m) => Interrupted::BadState(m),
        }
    }
}

impl From<StoreError> for Interrupted {
    fn from(e: StoreError) -> Interrupted {
        match e {
            StoreError::Superseded => Interrupted::Superseded,
            StoreError::Refused(m) => Interrupted::BadState(m),
        }
    }
}

/// How a [`WorkerCtx::pause`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paused {
    Elapsed,
    /// A cancel arrived or the executor began to drain: look again before going on.
    Interrupted,
}

/// What one worker incarnation works with.
pub struct WorkerCtx<S> {
    pub(super) env: TaskEnv,
    pub(super) job: JobId,
    pub(super) name: WorkerName,
    pub(super) epoch: Epoch,
    pub(super) checkpoints: Checkpoints<S>,
    pub(super) store: JobStore,
    pub(super) restored: Option<S>,
    pub(super) progress: Progress,
    pub(super) cancel: watch::Receiver<bool>,
}

impl<S: Serialize + DeserializeOwned + Clone + Default> WorkerCtx<S> {
    pub fn job(&self) -> &JobId {
        &self.job
    }

    pub fn name(&self) -> &WorkerName {
        &self.name
    }

    /// This incarnation's epoch: above every earlier incarnation's (a fencing token).
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The last checkpoint any earlier incarnation wrote (read after this incarnation's record was written), if
    /// any.
    pub fn restored(&self) -> Option<&S> {
        self.restored.as_ref()
    }

    /// One fenced write of `state` as the next checkpoint. `Saved::Unknown`: the metastore did not answer, the
    /// write may have landed; write again (the same state, or a newer one).
    pub async fn try_save(&mut self, state: &S) -> Result<Saved, Interrupted> {
        Ok(self.checkpoints.try_save(&self.env, state).await?)
    }

    /// Its job's own store: small values shared by every worker of the job, each write fenced as a checkpoint's
    /// (`?` on a refusal ends the work as [`WorkerCtx::try_save`]'s does). See [`super::store`].
    pub fn store(&self) -> &JobStore {
        &self.store
    }

    /// Sets the progress text its heartbeats carry (at most [`super::PROGRESS_MAX`] bytes are sent).
    pub fn progress(&self, text: impl Into<String>) {
        self.progress.set(text.into());
    }

    /// Whether its job master said to stop (a cancel): the work should end with [`WorkerEnd::Canceled`].
    pub fn is_canceled(&mut self) -> bool {
        *self.cancel.borrow_and_update()
    }

    /// Whether its executor drains: the work should end with [`WorkerEnd::Drained`] after its last checkpoint.
    pub fn is_draining(&self) -> bool {
        self.env.is_draining()
    }

    /// Waits `d`, unless a cancel arrives or the executor begins to drain first.
    pub async fn pause(&mut self, d: Duration) -> Paused {
        tokio::select! {
            biased;
            _ = self.cancel.changed() => Paused::Interrupted,
            _ = self.env.draining() => Paused::Interrupted,
            _ = self.env.clock.sleep(d) => Paused::Elapsed,
        }
    }

    /// The executor's clock (simulated in the simulation build).
    pub fn clock(&self) -> &Clock {
        &self.env.clock
    }

    /// Starts a command owned by this incarnation ([`crate::framework::process`]): in a process group of its own,
    /// killed with its group when the returned [`Process`] is dropped (whatever ends the work drops it), and when
    /// its executor dies. The work stops it gracefully itself before it returns, when it has the time
    /// ([`Process::stop`]).
    pub fn spawn(&self, spec: &ProcessSpec) -> Result<Process, String> {
        let owner = crate::framework::process::Owner {
            env: self.env.clone(),
            task: self.name.task(&self.job),
            epoch: self.epoch,
        };
        crate::framework::process::spawn(spec, owner)
    }

    /// A directory of this worker's own on its executor, created owner-only if missing, kept across its
    /// incarnations on that executor ([`crate::framework::process::scratch_dir`]).
    pub fn scratch_dir(&self) -> Result<std::path::PathBuf, String> {
        crate::framework::process::scratch_dir(&self.env.dir, self.job.as_str(), self.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::core::ids::TaskId;
    use crate::framework::checkpoint::{decode, Stored};
    use crate::meta::{keys, MetaStore, Op};

    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    struct Count {
        n: u64,
    }

    /// A job type in a few lines: count to `to`, a checkpoint per step, minding cancel and drain.
    struct Counting {
        to: u64,
    }

    /// No job master decisions: the test runs workers only.
    struct NoLogic;

    impl JobLogic for NoLogic {
        type Config = ();
        type WorkerConfig = ();
        type Checkpoint = Count;
        fn recover(_: (), _: &std::collections::BTreeMap<WorkerName, Count>) -> NoLogic {
            NoLogic
        }
        fn wanted(&self) -> Vec<WorkerName> {
            vec![]
        }
        fn worker(&self, _: &WorkerName) -> Option<crate::core::job_master::WorkerSpec<()>> {
            None
        }
        fn on_event(&mut self, _: crate::core::time::Time, _: crate::core::job_master::WorkerEvent<'_, Count>) {}
        fn verdict(&self) -> crate::core::job_master::Verdict {
            crate::core::job_master::Verdict::Finished
        }
        fn progress(&self, _: &dyn crate::core::job_master::LiveProgress) -> String {
            String::new()
        }
    }

    impl JobType for Counting {
        const NAME: &'static str = "counting";
        type Config = ();
        type WorkerConfig = ();
        type Checkpoint = Count;
        type Logic = NoLogic;

        fn parse_config(_: &[u8]) -> Result<(), ConfigProblem> {
            Ok(())
        }

        async fn work(&self, _: (), ctx: &mut WorkerCtx<Count>) -> Result<WorkerEnd, Interrupted> {
            let mut n = ctx.restored().map_or(0, |c| c.n);
            while n < self.to {
                if ctx.is_canceled() {
                    return Ok(WorkerEnd::Canceled);
                }
                if ctx.is_draining() {
                    return Ok(WorkerEnd::Drained);
                }
                if ctx.try_save(&Count { n: n + 1 }).await? == Saved::Yes {
                    n += 1;
                }
            }
            Ok(WorkerEnd::Finished)
        }
    }

    /// Incarnation `epoch` of worker j/w0, its record written first (as its job master does): its context and
    /// the sender of its cancel.
    async fn incarnation(env: &TaskEnv, epoch: u64) -> (WorkerCtx<Count>, watch::Sender<bool>) {
        let meta = env.meta.get().expect("the test's store");
        let record = Op::Put { key: keys::worker("j", "w0"), value: epoch.to_string().into_bytes(), lease: None };
        assert!(meta.txn(&[], &[record]).await.unwrap());
        let task = TaskId::parse("j/w0").unwrap();
        let store = JobStore::new(meta.clone(), "j", "w0", task.clone(), Epoch(epoch));
        let (checkpoints, restored) =
            Checkpoints::open(env, meta, "j", "w0", task, Epoch(epoch)).await.expect("the checkpoint reads");
        let (cancel_tx, cancel) = watch::channel(false);
        let ctx = WorkerCtx {
            env: env.clone(),
            job: JobId::parse("j").unwrap(),
            name: WorkerName::parse("w0").unwrap(),
            epoch: Epoch(epoch),
            checkpoints,
            store,
            restored,
            progress: Progress::default(),
            cancel,
        };
        (ctx, cancel_tx)
    }

    async fn stored(env: &TaskEnv) -> Option<Stored<Count>> {
        let meta = env.meta.get().unwrap();
        decode(meta.get(&keys::checkpoint("j", "w0")).await.unwrap().as_deref()).unwrap()
    }

    /// What a job type sees of its worker's incarnations through the context, on a real store: it resumes from
    /// the last checkpoint, a superseded incarnation's next write ends its work, and a cancel and a drain are
    /// seen between steps.
    #[tokio::test]
    async fn a_job_types_work_resumes_and_stops_as_its_context_says() {
        let env = TaskEnv::for_test(MetaStore::embedded("test", None).unwrap(), None);
        let (mut one, _) = incarnation(&env, 1).await;
        assert_eq!(one.restored(), None);
        assert_eq!(Counting { to: 3 }.work((), &mut one).await, Ok(WorkerEnd::Finished));
        let (mut two, _) = incarnation(&env, 2).await;
        assert_eq!(two.restored(), Some(&Count { n: 3 }), "resumed from incarnation 1's last step");
        assert_eq!(Counting { to: 5 }.work((), &mut two).await, Ok(WorkerEnd::Finished));
        assert_eq!(stored(&env).await, Some(Stored { state: Count { n: 5 }, epoch: Epoch(2), stopped: false, seq: 5 }));
        // Incarnation 1, superseded, writes nothing more.
        assert_eq!(Counting { to: 9 }.work((), &mut one).await, Err(Interrupted::Superseded));
        // Canceled between steps: nothing written.
        let (mut three, cancel) = incarnation(&env, 3).await;
        cancel.send_replace(true);
        assert_eq!(Counting { to: 9 }.work((), &mut three).await, Ok(WorkerEnd::Canceled));
        assert_eq!(stored(&env).await.map(|s| s.seq), Some(5));
        // A pause ends early on a cancel or a drain.
        let (mut four, cancel) = incarnation(&env, 4).await;
        cancel.send_replace(true);
        assert_eq!(four.pause(Duration::from_secs(3600)).await, Paused::Interrupted);
        let (mut five, _) = incarnation(&env, 5).await;
        env.drain.raise();
        assert_eq!(five.pause(Duration::from_secs(3600)).await, Paused::Interrupted);
        assert_eq!(Counting { to: 9 }.work((), &mut five).await, Ok(WorkerEnd::Drained));
    }
}
