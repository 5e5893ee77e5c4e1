//! The framework: one master/worker protocol for both levels (design.md §2) — the job manager and its job
//! masters, each job master and its workers. The decisions are the core's ([`crate::core::workers`] on the master
//! side, [`crate::core::fence`] on the worker side); this module carries them over gRPC.
//!
//! - [`link`]: the worker side — heartbeats with a deadline, self-fencing at the deadline itself, stale and cancel
//!   verdicts, terminal status reports retried until acknowledged.
//! - [`carrier`]: a job master's heartbeats carried in its executor's own, when the leader asks for it.
//! - [`host`]: the master side for masters hosted on an executor — routes messages by master id to each hosted
//!   master's bookkeeping and queues its events.
//! - [`dispatch`]: two-phase dispatch and worker placement, as a master calls them.
//! - [`checkpoint`]: a worker's checkpoints: its job type's state in a stored envelope (epoch, stopped, seq),
//!   fenced writes by its current incarnation only.
//! - [`task`]: the task API, what every hosted task receives and returns (its spec, its environment, its stop
//!   signal, its exit) and the factory that starts tasks by type.
//! - [`api`]: the job-type API, what a job type implements for its workers ([`api::JobType`]) and what each worker
//!   incarnation works with ([`api::WorkerCtx`]).
//! - [`worker`]: the worker runtime, one incarnation from its dispatch to its report; [`job_master`]: the
//!   job-master runtime; [`linked`]: what they share (work run beside the link, the outcome reported).
//! - [`store`]: a job's own key-value store, shared by its workers, each write fenced by its writer's record.
//! - [`panic`]: panics in hosted code caught where it is polled (a worker's work, every task on its executor).
//! - [`types`]: the job types of a build by name ([`types::JobTypes`]): the task factory an executor starts tasks
//!   from, and the configuration check a master refuses a job with.

pub mod api;
pub mod carrier;
pub mod checkpoint;
pub mod dispatch;
pub mod host;
pub mod job_master;
pub mod link;
pub mod linked;
pub mod logs;
pub mod panic;
pub mod process;
pub mod store;
pub mod task;
pub mod types;
pub mod worker;

/// The most bytes of a progress text (`WorkerHeartbeatRequest.progress`, `ReportWorkerStatusRequest.progress`).
/// A task sets any text it likes; its link sends at most this much ([`progress_text`]), and a master refuses a
/// longer one ([`progress_from_wire`]).
pub const PROGRESS_MAX: usize = 256;
/// The most bytes of a failed task's error message (`WorkerStatus.error_message`): kept with a failed job. Cut by
/// the link before it is sent, refused beyond it by the master.
pub const ERROR_MESSAGE_MAX: usize = 4096;

/// A progress text as sent and kept: at most [`PROGRESS_MAX`] bytes, cut at a character boundary, control
/// characters replaced (it is shown on terminals).
pub fn progress_text(p: &str) -> String {
    let mut out = String::new();
    for c in p.chars() {
        if out.len() + c.len_utf8() > PROGRESS_MAX {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// A progress text from the wire: one longer than [`PROGRESS_MAX`] bytes is refused (the framework's own links
/// never send one, so only a foreign or broken sender sees the refusal); control characters are replaced.
pub fn progress_from_wire(p: &str) -> Result<String, tonic::Status> {
    if p.len() > PROGRESS_MAX {
        return Err(crate::rpc::status::invalid_argument(
            "progress",
            format!("is {} bytes; at most {PROGRESS_MAX} are allowed (a short account such as \"412/800\")", p.len()),
        ));
    }
    Ok(progress_text(p))
}

/// `message` cut to [`ERROR_MESSAGE_MAX`] bytes at a character boundary, as a link sends it.
pub fn error_message_text(message: &str) -> String {
    crate::core::text::bounded(message, ERROR_MESSAGE_MAX).into_owned()
}

/// A last error as sent.
pub fn last_error_to_wire(e: &crate::core::job::LastError) -> crate::rpc::pb::LastError {
    crate::rpc::pb::LastError {
        source: e.source.clone(),
        message: e.message.clone(),
        retryable: e.retryable,
        at_unix_ms: e.at.0,
    }
}

/// A last error from the wire: a source over [`crate::core::ids::TaskId::MAX_LEN`] bytes or a message over
/// [`ERROR_MESSAGE_MAX`] is refused; control characters in the message are kept (it is shown quoted).
pub fn last_error_from_wire(
    e: Option<&crate::rpc::pb::LastError>,
) -> Result<Option<crate::core::job::LastError>, tonic::Status> {
    let Some(e) = e else { return Ok(None) };
    let too_long = |field: &str, len: usize, max: usize| {
        crate::rpc::status::invalid_argument(field, format!("is {len} bytes; at most {max} are allowed"))
    };
    if e.source.len() > crate::core::ids::TaskId::MAX_LEN {
        return Err(too_long("last_error.source", e.source.len(), crate::core::ids::TaskId::MAX_LEN));
    }
    if e.message.len() > ERROR_MESSAGE_MAX {
        return Err(too_long("last_error.message", e.message.len(), ERROR_MESSAGE_MAX));
    }
    Ok(Some(crate::core::job::LastError {
        source: e.source.clone(),
        message: e.message.clone(),
        retryable: e.retryable,
        at: crate::core::time::WallTime(e.at_unix_ms),
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_text_is_bounded_and_printable() {
        assert_eq!(super::progress_text("412/800"), "412/800");
        assert_eq!(super::progress_text("a\nb\x1b[2J"), "a b [2J");
        let long = "é".repeat(200);
        let kept = super::progress_text(&long);
        assert!(kept.len() <= super::PROGRESS_MAX && kept.len() == 256);
        assert!(long.starts_with(&kept));
    }

    #[test]
    fn progress_from_the_wire_is_refused_past_the_bound() {
        assert_eq!(super::progress_from_wire("3/10\n").unwrap(), "3/10 ");
        assert_eq!(super::progress_from_wire(&"x".repeat(super::PROGRESS_MAX)).unwrap().len(), super::PROGRESS_MAX);
        let refused = super::progress_from_wire(&"x".repeat(1 << 20)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().starts_with("progress: is 1048576 bytes; at most 256"), "{}", refused.message());
        let cut = super::error_message_text(&"é".repeat(5000));
        assert!(cut.len() <= super::ERROR_MESSAGE_MAX && cut.starts_with("éé"), "{}", cut.len());
    }
}
