//! Identifiers and fencing tokens: every id is a newtype, ordered, so maps keyed by them iterate in a stable order.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::text::quote;

/// An executor, as registered with the leader. Allocated from a persisted counter and never reused: an executor
/// declared offline that comes back registers again and gets a new id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExecutorId(pub u64);

impl ExecutorId {
    /// The id after this one.
    pub fn next(self) -> ExecutorId {
        ExecutorId(self.0 + 1)
    }
}

impl fmt::Display for ExecutorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

/// A fencing token for one incarnation of a job master or worker. Each incarnation of the same task has a
/// strictly larger epoch than the one before; 0 means "none".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch(pub u64);

impl Epoch {
    pub const NONE: Epoch = Epoch(0);

    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A fencing token for one leadership term. Strictly increases across terms; 0 means "none".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaderEpoch(pub u64);

impl LeaderEpoch {
    pub const NONE: LeaderEpoch = LeaderEpoch(0);

    pub fn next(self) -> LeaderEpoch {
        LeaderEpoch(self.0 + 1)
    }
}

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a string is not a valid id.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    /// `value` is the input as messages quote it ([`quote`]): never all of a long one.
    #[error("{kind} {value} is {len} characters long; at most {max} are allowed")]
    TooLong { kind: &'static str, value: String, len: usize, max: usize },
    #[error("{kind} {value} is not valid: {rule}")]
    Invalid { kind: &'static str, value: String, rule: &'static str },
}

/// A job, named by the user or generated. Valid ids are 1 to 63 characters of letters, digits, `_`, `-` and `.`,
/// starting and ending with a letter, digit or `_` (the original system's rule).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    pub const MAX_LEN: usize = 63;

    pub fn parse(s: &str) -> Result<JobId, IdError> {
        const KIND: &str = "job id";
        const RULE: &str = "use letters, digits, '_', '-' and '.', starting and ending with a letter, digit or '_'";
        if s.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        let len = s.chars().count();
        if len > Self::MAX_LEN {
            return Err(IdError::TooLong { kind: KIND, value: quote(s), len, max: Self::MAX_LEN });
        }
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let inner = |c: char| word(c) || c == '-' || c == '.';
        let first = s.chars().next().is_some_and(word);
        let last = s.chars().last().is_some_and(word);
        if !(first && last && s.chars().all(inner)) {
            return Err(IdError::Invalid { kind: KIND, value: quote(s), rule: RULE });
        }
        Ok(JobId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = IdError;
    fn try_from(s: String) -> Result<JobId, IdError> {
        JobId::parse(&s)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A project: what a job belongs to and what a user's grants are scoped to (Kubernetes' and Nomad's namespaces).
/// Valid names are 1 to 63 characters of lowercase letters, digits and `-`, starting and ending with a letter or a
/// digit (a DNS label); [`Project::DEFAULT`] is the project of a job created without one, and of every record
/// written before jobs had projects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Project(String);

impl Project {
    pub const MAX_LEN: usize = 63;
    /// The project of a job that names none.
    pub const DEFAULT: &'static str = "default";

    pub fn parse(s: &str) -> Result<Project, IdError> {
        const KIND: &str = "project";
        const RULE: &str =
            "use lowercase letters, digits and '-', starting and ending with a letter or a digit (e.g. team-a)";
        if s.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        let len = s.chars().count();
        if len > Self::MAX_LEN {
            return Err(IdError::TooLong { kind: KIND, value: quote(s), len, max: Self::MAX_LEN });
        }
        let end = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let first = s.chars().next().is_some_and(end);
        let last = s.chars().last().is_some_and(end);
        if !(first && last && s.chars().all(|c| end(c) || c == '-')) {
            return Err(IdError::Invalid { kind: KIND, value: quote(s), rule: RULE });
        }
        Ok(Project(s.to_owned()))
    }

    /// The project of a job that names none.
    pub fn default_project() -> Project {
        Project(Self::DEFAULT.to_owned())
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Project {
    fn default() -> Project {
        Project::default_project()
    }
}

impl TryFrom<String> for Project {
    type Error = IdError;
    fn try_from(s: String) -> Result<Project, IdError> {
        Project::parse(&s)
    }
}

impl From<Project> for String {
    fn from(p: Project) -> String {
        p.0
    }
}

impl fmt::Display for Project {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A task an executor runs: a job master (whose task id is its job's id) or a worker (`<job id>/<name>`).
/// Valid ids are 1 to 128 printable ASCII characters without spaces.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(String);

impl TaskId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<TaskId, IdError> {
        const KIND: &str = "task id";
        if s.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if s.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { kind: KIND, value: quote(s), len: s.len(), max: Self::MAX_LEN });
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdError::Invalid {
                kind: KIND,
                value: quote(s),
                rule: "use printable ASCII characters without spaces",
            });
        }
        Ok(TaskId(s.to_owned()))
    }

    /// The task id of a job's job master.
    pub fn job_master(job: &JobId) -> TaskId {
        TaskId(job.0.clone())
    }

    /// The task id of one of a job's workers; `name` must be non-empty printable ASCII.
    pub fn worker(job: &JobId, name: &str) -> Result<TaskId, IdError> {
        TaskId::parse(&format!("{job}/{name}"))
    }

    /// Whether this is a worker's id (`<job>/<name>`), not a job master's (the job's id).
    pub fn is_worker(&self) -> bool {
        self.0.contains('/')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaskId {
    type Error = IdError;
    fn try_from(s: String) -> Result<TaskId, IdError> {
        TaskId::parse(&s)
    }
}

impl From<TaskId> for String {
    fn from(id: TaskId) -> String {
        id.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A worker's name within its job: 1 to 64 characters of letters, digits, `.`, `_` and `-`. Its task id is
/// `<job>/<name>` ([`WorkerName::task`]); a job master names its workers, the runtime gives them epochs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkerName(String);

impl WorkerName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<WorkerName, IdError> {
        const KIND: &str = "worker name";
        if s.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if s.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { kind: KIND, value: quote(s), len: s.len(), max: Self::MAX_LEN });
        }
        // `.` and `..` alone would name directories other than the worker's own where a worker's name is a path
        // component (its scratch directory, its logs).
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) || s == "." || s == ".." {
            return Err(IdError::Invalid {
                kind: KIND,
                value: quote(s),
                rule: "use letters, digits, '.', '_' and '-' (not `.` or `..` alone)",
            });
        }
        Ok(WorkerName(s.to_owned()))
    }

    /// The `index`th worker of a job whose workers are numbered (`w0`, `w1`, ...), as the built-in types name them.
    pub fn indexed(index: u32) -> WorkerName {
        WorkerName(format!("w{index}"))
    }

    /// The index of a worker named by [`WorkerName::indexed`] (`w7` → 7; `w07`, `x7` → none).
    pub fn index(&self) -> Option<u32> {
        let index: u32 = self.0.strip_prefix('w')?.parse().ok()?;
        (WorkerName::indexed(index) == *self).then_some(index)
    }

    /// This worker's task id in job `job` (a job id and a worker name always make a valid one).
    pub fn task(&self, job: &JobId) -> TaskId {
        TaskId(format!("{job}/{}", self.0))
    }

    /// The worker name of `task` if it is one of `job`'s workers.
    pub fn of_task(task: &TaskId, job: &str) -> Option<WorkerName> {
        let name = task.as_str().strip_prefix(job)?.strip_prefix('/')?;
        WorkerName::parse(name).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WorkerName {
    type Error = IdError;
    fn try_from(s: String) -> Result<WorkerName, IdError> {
        WorkerName::parse(&s)
    }
}

impl From<WorkerName> for String {
    fn from(name: WorkerName) -> String {
        name.0
    }
}

impl fmt::Display for WorkerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A master process, by its configured name (unique within a cluster).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MasterId(pub String);

impl fmt::Display for MasterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The one rule for cluster names (the configuration and the metastore both apply it): every key of a cluster lives
/// under `/foreman/<cluster>/`. What is wrong with `name`, if anything.
pub fn cluster_name_problem(name: &str) -> Option<String> {
    let max = super::registry::NAME_MAX_LEN;
    let bytes = name.as_bytes();
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = !bytes.is_empty()
        && bytes.len() <= max
        && bytes.iter().all(|&b| edge(b) || b == b'-')
        && bytes.first().copied().is_some_and(edge)
        && bytes.last().copied().is_some_and(edge);
    (!ok).then(|| {
        format!(
            "{} is not a valid cluster name: use 1 to {max} lowercase letters, digits and '-', starting and ending \
             with a letter or digit",
            super::text::quote(name)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects() {
        for good in ["default", "a", "team-a", "0", "a1-b2", &"x".repeat(63)] {
            assert_eq!(Project::parse(good).map(String::from), Ok(good.to_owned()), "{good:?}");
        }
        for bad in ["", "A", "-a", "a-", "a_b", "a.b", "*", "a b", "é", &"x".repeat(64)] {
            assert!(Project::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Project::parse("Team").unwrap_err().to_string(),
            "project \"Team\" is not valid: use lowercase letters, digits and '-', starting and ending with a letter \
             or a digit (e.g. team-a)"
        );
        assert_eq!(Project::default().as_str(), "default");
        assert!(serde_json::from_str::<Project>("\"A\"").is_err());
    }

    #[test]
    fn job_ids() {
        // (input, valid?)
        let table: &[(&str, bool)] = &[
            ("a", true),
            ("job-1", true),
            ("_x.y-z_", true),
            ("A9", true),
            (&"x".repeat(63), true),
            ("", false),
            (&"x".repeat(64), false),
            ("-a", false),
            ("a-", false),
            (".a", false),
            ("a b", false),
            ("a/b", false),
            ("é", false),
        ];
        for (s, ok) in table {
            assert_eq!(JobId::parse(s).is_ok(), *ok, "{s:?}");
        }
    }

    #[test]
    fn job_id_errors_say_what_to_fix() {
        let e = JobId::parse("a b").unwrap_err().to_string();
        assert!(e.contains("\"a b\"") && e.contains("letters, digits"), "{e}");
        let e = JobId::parse(&"y".repeat(70)).unwrap_err().to_string();
        assert!(e.contains("70 characters") && e.contains("at most 63"), "{e}");
        // A long input is quoted in part: the message stays short.
        let e = JobId::parse(&"z".repeat(100_000)).unwrap_err().to_string();
        assert!(e.len() < 200 && e.contains("…(100000 bytes)") && e.contains("at most 63"), "{e}");
    }

    #[test]
    fn task_ids() {
        let job = JobId::parse("j").unwrap();
        assert_eq!(TaskId::job_master(&job).as_str(), "j");
        assert_eq!(TaskId::worker(&job, "3").unwrap().as_str(), "j/3");
        assert!(TaskId::worker(&job, "a b").is_err());
        assert!(TaskId::parse("").is_err());
        assert!(TaskId::parse(&"t".repeat(129)).is_err());
    }

    #[test]
    fn worker_names() {
        let table: &[(&str, bool)] = &[
            ("w0", true),
            ("w999", true),
            ("shard-3.part_1", true),
            ("", false),
            ("a/b", false),
            ("with space", false),
            ("é", false),
            (".", false),
            ("..", false),
            ("...", true),
        ];
        for (text, ok) in table {
            assert_eq!(WorkerName::parse(text).is_ok(), *ok, "{text}");
        }
        assert!(WorkerName::parse(&"x".repeat(64)).is_ok());
        let long = WorkerName::parse(&"x".repeat(65)).unwrap_err().to_string();
        assert!(long.contains("65 characters long; at most 64"), "{long}");
        let job = JobId::parse("job-1").unwrap();
        let w = WorkerName::parse("w7").unwrap();
        assert_eq!(w.task(&job).as_str(), "job-1/w7");
        assert_eq!(WorkerName::of_task(&w.task(&job), "job-1"), Some(w.clone()));
        assert_eq!(WorkerName::of_task(&w.task(&job), "job-"), None, "another job's prefix");
        assert_eq!(WorkerName::of_task(&TaskId::parse("job-1").unwrap(), "job-1"), None, "the job master");
        assert_eq!(WorkerName::of_task(&TaskId::parse("job-1/a/b").unwrap(), "job-1"), None);
        // Numbered workers: each index round-trips; only the canonical form has one.
        for i in [0, 7, 999, u32::MAX] {
            assert_eq!(WorkerName::indexed(i).index(), Some(i));
            assert!(WorkerName::parse(WorkerName::indexed(i).as_str()).is_ok());
        }
        for other in ["x1", "w", "w01", "w-1", "w1.0", "w4294967296"] {
            assert_eq!(WorkerName::parse(other).unwrap().index(), None, "{other}");
        }
        // The longest job id and worker name still make a valid task id.
        let job = JobId::parse(&"j".repeat(63)).unwrap();
        let w = WorkerName::parse(&"w".repeat(64)).unwrap();
        assert_eq!(TaskId::parse(w.task(&job).as_str()), Ok(w.task(&job)));
    }

    #[test]
    fn ids_deserialize_only_when_valid() {
        assert!(serde_json::from_str::<JobId>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<JobId>("\"not ok\"").is_err());
    }

    #[test]
    fn epochs_order() {
        assert!(Epoch::NONE < Epoch(1));
        assert_eq!(Epoch(4).next(), Epoch(5));
        assert_eq!(LeaderEpoch(2).next(), LeaderEpoch(3));
        assert_eq!(ExecutorId(3).to_string(), "e3");
    }

    #[test]
    fn cluster_names_follow_one_rule() {
        for good in ["default", "a", "prod-east-1", &"x".repeat(63)] {
            assert_eq!(cluster_name_problem(good), None, "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a/b", "a_b", "a.b", &"x".repeat(64)] {
            let problem = cluster_name_problem(bad).expect(bad);
            assert!(problem.contains("lowercase letters, digits and '-'"), "{problem}");
        }
    }
}
