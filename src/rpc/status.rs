//! The one place that maps foreman's errors to gRPC statuses.
//!
//! Every refusal carries a stable, machine-readable [`Reason`] in the `foreman-reason` metadata entry and a
//! message that says what to fix. Clients branch on the reason (never on message text); people read the message.
//!
//! A message is at most [`MESSAGE_MAX`] bytes, whatever it quotes: where a refusal echoes its input it quotes a
//! short prefix ([`crate::core::text::quote`]), and [`Reason::status`] cuts any longer message as a last line of
//! defence. The message travels in a response header (`grpc-message`): a long one makes the status unreadable
//! (`RESOURCE_EXHAUSTED` at the client, a protocol error through a forwarding master) instead of saying what
//! to fix.
//!
//! | reason | gRPC code | when |
//! |---|---|---|
//! | `INVALID_ARGUMENT` | `InvalidArgument` | a request field is malformed (the message names the field) |
//! | `JOB_NOT_FOUND` | `NotFound` | no job with that id |
//! | `JOB_ALREADY_EXISTS` | `AlreadyExists` | `CreateJob` with an id in use |
//! | `REQUEST_ID_REUSED` | `AlreadyExists` | `CreateJob` whose token created a job with another request (the message names the fields that differ) |
//! | `JOB_DELETED` | `FailedPrecondition` | `CreateJob` repeating the request that created a job deleted since |
//! | `JOB_NOT_TERMINATED` | `FailedPrecondition` | `DeleteJob` of a job that has not ended |
//! | `JOB_NOT_STARTABLE` | `FailedPrecondition` | a job master start for a job that cannot start |
//! | `JOB_RECORD_CORRUPT` | `FailedPrecondition` | a job whose stored record does not decode: it can only be deleted |
//! | `EXECUTOR_OFFLINE` | `FailedPrecondition` | a heartbeat from an executor declared offline: register again |
//! | `UNKNOWN_EXECUTOR` | `NotFound` | an executor id this cluster never issued |
//! | `TASK_ALREADY_RUNNING` | `FailedPrecondition` | a dispatch of a task id the executor already runs |
//! | `DISPATCH_NOT_FOUND` | `NotFound` | a confirm of a dispatch the executor does not hold (unknown or expired) |
//! | `JOB_MASTER_NOT_HOSTED` | `NotFound` | `QueryJobMaster` for a master the executor does not host (or that published no status yet) |
//! | `PLACEMENT_FAILED` | `ResourceExhausted` | no executor fits (the message says which filter or how much capacity) |
//! | `RESOURCE_CONFLICT` | `FailedPrecondition` | the task's resources live on different executors |
//! | `STALE_EPOCH` | `FailedPrecondition` | a message from an older incarnation or leader term |
//! | `NOT_LEADER` | `Unavailable` | a leader-only call reached a follower that could not forward it |
//! | `NO_LEADER` | `Unavailable` | no leader is known right now; retry |
//! | `MASTER_NOT_READY` | `Unavailable` | the leader is still recovering; retry |
//! | `FORWARD_FAILED` | `Unavailable` | a follower's forward broke off (the leader died or went silent mid-call): the call may have been carried out |
//! | `METASTORE_UNAVAILABLE` | `Unavailable` | the metastore did not answer in time; the outcome may be unknown |
//! | `UNAUTHENTICATED` | `Unauthenticated` | the call says nothing of who makes it (no token, an unknown token, or an identity this build does not trust) |
//! | `PERMISSION_DENIED` | `PermissionDenied` | the caller may not make this call: the message names the role and project it needs (`needs role submit in project p`) and what the caller has |
//!
//! A call on a job of a project the caller may not read gets `JOB_NOT_FOUND`, word for word what a missing job gets.
//! | `INTERNAL` | `Internal` | a broken invariant (a bug: please report it) |

use std::fmt;
use std::str::FromStr;

use tonic::{Code, Status};

use crate::core::auth::{Denied, DeniedCode};
use crate::core::ids::IdError;
use crate::core::job::JobError;
use crate::core::labels::LabelError;
use crate::core::placement::PlacementError;
use crate::core::registry::RegistryError;

/// The metadata key that carries the reason.
pub const REASON_KEY: &str = "foreman-reason";

/// The longest message a status carries, in bytes (before the header's percent-encoding, which may triple it;
/// clients read at least 8 KiB of headers).
pub const MESSAGE_MAX: usize = 1024;

/// A stable, machine-readable reason for a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    InvalidArgument,
    JobNotFound,
    JobAlreadyExists,
    RequestIdReused,
    JobDeleted,
    JobNotTerminated,
    JobNotStartable,
    JobRecordCorrupt,
    ExecutorOffline,
    UnknownExecutor,
    TaskAlreadyRunning,
    DispatchNotFound,
    JobMasterNotHosted,
    PlacementFailed,
    ResourceConflict,
    StaleEpoch,
    NotLeader,
    NoLeader,
    MasterNotReady,
    ForwardFailed,
    MetastoreUnavailable,
    Unauthenticated,
    PermissionDenied,
    Internal,
}

/// Each reason, its wire name and its gRPC code: the table of the module documentation.
const TABLE: &[(Reason, &str, Code)] = &[
    (Reason::InvalidArgument, "INVALID_ARGUMENT", Code::InvalidArgument),
    (Reason::JobNotFound, "JOB_NOT_FOUND", Code::NotFound),
    (Reason::JobAlreadyExists, "JOB_ALREADY_EXISTS", Code::AlreadyExists),
    (Reason::RequestIdReused, "REQUEST_ID_REUSED", Code::AlreadyExists),
    (Reason::JobDeleted, "JOB_DELETED", Code::FailedPrecondition),
    (Reason::JobNotTerminated, "JOB_NOT_TERMINATED", Code::FailedPrecondition),
    (Reason::JobNotStartable, "JOB_NOT_STARTABLE", Code::FailedPrecondition),
    (Reason::JobRecordCorrupt, "JOB_RECORD_CORRUPT", Code::FailedPrecondition),
    (Reason::ExecutorOffline, "EXECUTOR_OFFLINE", Code::FailedPrecondition),
    (Reason::UnknownExecutor, "UNKNOWN_EXECUTOR", Code::NotFound),
    (Reason::TaskAlreadyRunning, "TASK_ALREADY_RUNNING", Code::FailedPrecondition),
    (Reason::DispatchNotFound, "DISPATCH_NOT_FOUND", Code::NotFound),
    (Reason::JobMasterNotHosted, "JOB_MASTER_NOT_HOSTED", Code::NotFound),
    (Reason::PlacementFailed, "PLACEMENT_FAILED", Code::ResourceExhausted),
    (Reason::ResourceConflict, "RESOURCE_CONFLICT", Code::FailedPrecondition),
    (Reason::StaleEpoch, "STALE_EPOCH", Code::FailedPrecondition),
    (Reason::NotLeader, "NOT_LEADER", Code::Unavailable),
    (Reason::NoLeader, "NO_LEADER", Code::Unavailable),
    (Reason::MasterNotReady, "MASTER_NOT_READY", Code::Unavailable),
    (Reason::ForwardFailed, "FORWARD_FAILED", Code::Unavailable),
    (Reason::MetastoreUnavailable, "METASTORE_UNAVAILABLE", Code::Unavailable),
    (Reason::Unauthenticated, "UNAUTHENTICATED", Code::Unauthenticated),
    (Reason::PermissionDenied, "PERMISSION_DENIED", Code::PermissionDenied),
    (Reason::Internal, "INTERNAL", Code::Internal),
];

impl Reason {
    fn row(self) -> &'static (Reason, &'static str, Code) {
        TABLE.iter().find(|(r, _, _)| *r == self).expect("every reason has a row")
    }

    /// The wire name, e.g. `JOB_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        self.row().1
    }

    /// The gRPC code this reason is sent with.
    pub fn code(self) -> Code {
        self.row().2
    }

    /// Whether a client should retry the same call later (possibly on another master).
    pub fn is_retryable(self) -> bool {
        self.code() == Code::Unavailable
    }

    /// A status with this reason and a message that says what to fix, cut to [`MESSAGE_MAX`] bytes.
    pub fn status(self, message: impl Into<String>) -> Status {
        let message = message.into();
        let message = match crate::core::text::bounded(&message, MESSAGE_MAX) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(cut) => cut,
        };
        let mut status = Status::new(self.code(), message);
        status.metadata_mut().insert(REASON_KEY, tonic::metadata::MetadataValue::from_static(self.as_str()));
        status
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = ();
    fn from_str(s: &str) -> Result<Reason, ()> {
        TABLE.iter().find(|(_, name, _)| *name == s).map(|(r, _, _)| *r).ok_or(())
    }
}

/// The reason a status carries, if it came from foreman.
pub fn reason_of(status: &Status) -> Option<Reason> {
    status.metadata().get(REASON_KEY)?.to_str().ok()?.parse().ok()
}

/// `INVALID_ARGUMENT` naming the request field that is wrong.
pub fn invalid_argument(field: &str, problem: impl fmt::Display) -> Status {
    Reason::InvalidArgument.status(format!("{field}: {problem}"))
}

impl From<JobError> for Status {
    fn from(e: JobError) -> Status {
        let reason = match e {
            JobError::NotFound { .. } => Reason::JobNotFound,
            JobError::AlreadyExists { .. } => Reason::JobAlreadyExists,
            JobError::NotTerminated { .. } => Reason::JobNotTerminated,
            JobError::NotStartable { .. } | JobError::PlacesNoWorkers { .. } => Reason::JobNotStartable,
            JobError::Corrupt { .. } => Reason::JobRecordCorrupt,
        };
        reason.status(e.to_string())
    }
}

impl From<RegistryError> for Status {
    fn from(e: RegistryError) -> Status {
        let reason = match e {
            RegistryError::InvalidSpec { .. }
            | RegistryError::InvalidLabels(_)
            | RegistryError::TooManyTasks { .. }
            | RegistryError::TooManyEnded { .. } => Reason::InvalidArgument,
            RegistryError::DeclaredOffline { .. } => Reason::ExecutorOffline,
            RegistryError::Unknown { .. } => Reason::UnknownExecutor,
        };
        reason.status(e.to_string())
    }
}

impl From<PlacementError> for Status {
    fn from(e: PlacementError) -> Status {
        let reason = match e {
            PlacementError::ZeroCost => Reason::InvalidArgument,
            PlacementError::ResourceConflict { .. } => Reason::ResourceConflict,
            PlacementError::NoExecutors
            | PlacementError::SelectorUnsatisfied { .. }
            | PlacementError::InsufficientCapacity { .. }
            | PlacementError::PinnedUnavailable { .. }
            | PlacementError::PinnedRejected { .. }
            | PlacementError::PinnedFull { .. } => Reason::PlacementFailed,
        };
        reason.status(e.to_string())
    }
}

impl From<Denied> for Status {
    fn from(d: Denied) -> Status {
        let reason = match d.code {
            DeniedCode::Unauthenticated => Reason::Unauthenticated,
            DeniedCode::PermissionDenied => Reason::PermissionDenied,
            // The caller may not know whether the job exists: the missing job's own answer.
            DeniedCode::Hidden => Reason::JobNotFound,
        };
        reason.status(d.missing)
    }
}

impl From<LabelError> for Status {
    fn from(e: LabelError) -> Status {
        Reason::InvalidArgument.status(e.to_string())
    }
}

impl From<IdError> for Status {
    fn from(e: IdError) -> Status {
        Reason::InvalidArgument.status(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::{ExecutorId, JobId};
    use crate::core::job::JobState;

    #[test]
    fn every_reason_round_trips_through_a_status() {
        for &(reason, name, code) in TABLE {
            let s = reason.status("what to fix");
            assert_eq!(s.code(), code, "{name}");
            assert_eq!(reason_of(&s), Some(reason), "{name}");
            assert_eq!(name.parse::<Reason>(), Ok(reason));
            assert_eq!(reason.is_retryable(), code == Code::Unavailable);
        }
        assert_eq!(reason_of(&Status::internal("not ours")), None);
    }

    #[test]
    fn domain_errors_map_to_codes_table() {
        let j = JobId::parse("j").unwrap();
        // (status, code, reason)
        let table: Vec<(Status, Code, Reason)> = vec![
            (JobError::NotFound { id: j.clone() }.into(), Code::NotFound, Reason::JobNotFound),
            (JobError::AlreadyExists { id: j.clone() }.into(), Code::AlreadyExists, Reason::JobAlreadyExists),
            (
                JobError::NotTerminated { id: j.clone(), state: JobState::Running }.into(),
                Code::FailedPrecondition,
                Reason::JobNotTerminated,
            ),
            (
                RegistryError::DeclaredOffline { id: ExecutorId(3) }.into(),
                Code::FailedPrecondition,
                Reason::ExecutorOffline,
            ),
            (RegistryError::Unknown { id: ExecutorId(9) }.into(), Code::NotFound, Reason::UnknownExecutor),
            (PlacementError::NoExecutors.into(), Code::ResourceExhausted, Reason::PlacementFailed),
            (PlacementError::ZeroCost.into(), Code::InvalidArgument, Reason::InvalidArgument),
            (JobId::parse("a b").unwrap_err().into(), Code::InvalidArgument, Reason::InvalidArgument),
        ];
        for (status, code, reason) in table {
            assert_eq!(status.code(), code, "{status:?}");
            assert_eq!(reason_of(&status), Some(reason), "{status:?}");
            assert!(!status.message().is_empty());
        }
    }

    #[test]
    fn messages_are_bounded_whatever_they_quote() {
        let huge = "x".repeat(100_000);
        let s = invalid_argument("job.id", &huge);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().len() <= MESSAGE_MAX, "{}", s.message().len());
        assert!(s.message().starts_with("job.id: xxx"), "{}", s.message());
        assert!(s.message().ends_with("…(100008 bytes in all)"), "{}", s.message());
        let s = Status::from(JobId::parse(&huge).unwrap_err());
        assert!(s.message().len() < 200 && s.message().contains("…(100000 bytes)"), "{}", s.message());
        let short = Reason::JobNotFound.status("job j does not exist");
        assert_eq!(short.message(), "job j does not exist");
    }

    #[test]
    fn invalid_argument_names_the_field() {
        let s = invalid_argument("job.config", "expected a JSON object");
        assert_eq!(s.message(), "job.config: expected a JSON object");
        assert_eq!(reason_of(&s), Some(Reason::InvalidArgument));
    }
}
