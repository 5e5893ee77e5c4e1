//! Who may make which call: one pure check, [`authorize`], run at the top of every gRPC handler in both builds
//! (madsim's tonic drops tower layers, so the check cannot be a layer).
//!
//! A caller is a [`Principal`]: a master or an executor by its configured name, a user, or [`Principal::Anonymous`]
//! (nothing says who calls). A call is an [`Action`], carrying the facts its rule needs as the callee knows them:
//! the executor an executor id was registered to, the executor hosting the job master incarnation a message names.
//! Where the callee does not know a fact it passes `None`, and the check leaves it to the call's own fence (an
//! unknown executor id is told to register again, a stale incarnation is told it is stale): those answers harm
//! nobody, and refusing them would keep an honest but stale node from hearing them.
//!
//! In [`Mode::Insecure`] every principal is allowed every action: production runs so until it has TLS, since it
//! cannot know who calls. Users have no grants yet (tokens and projects come later): in [`Mode::Checked`] any user
//! may do what the table gives users.
//!
//! | action | master | executor | user | anonymous |
//! |---|---|---|---|---|
//! | `RegisterExecutor` | no | as itself only | no | no |
//! | `Heartbeat` | no | its own id only | no | no |
//! | `DeregisterExecutor` | no | its own id only | yes | no |
//! | `QueryMetaStore` | yes | yes | no | no |
//! | `ReadCluster` (`List*`, `GetLeader`, `QueryJobMaster`) | yes | yes | yes | no |
//! | `ResignLeader` | no | no | yes | no |
//! | `ManageJobs` (`JobManager.*`) | yes | no | yes | no |
//! | `ScheduleTask` | no | the job master incarnation's host only | no | no |
//! | `ReportToJobManager` (`Framework.*` at the leader) | no | the job master incarnation's host only | no | no |
//! | `ReportToJobMaster` (`Framework.*` at an executor) | no | yes | no | no |
//! | `Dispatch` of a job master | yes | no | no | no |
//! | `Dispatch` of a worker, `ConfirmDispatch` | yes | yes | no | no |
//!
//! A worker's dispatch comes from its job master, which runs on an executor; the callee cannot tell which
//! executor hosts the job's job master (only the leader knows), so any executor may dispatch a worker, and the
//! dispatch's fences (the leader epoch it was placed under, the task's epoch) stay the guard against a stale one.
//! A job master is dispatched only by the leader, so only a master may dispatch one.

use std::fmt;

use crate::core::ids::ExecutorId;

/// The longest name a principal may have, in bytes.
pub const NAME_MAX: usize = 128;

/// Who makes a call.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Principal {
    /// A master, by its configured name.
    Master(String),
    /// An executor, by its configured name (the name it registers with).
    Executor(String),
    /// A person or a program acting for one (the CLI, the HTTP API). No grants yet.
    User(String),
    /// Nothing says who calls.
    Anonymous,
}

/// Why a principal's text was not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("{0} is not a principal: write master/NAME, executor/NAME or user/NAME")]
    Form(String),
    #[error("{0}: a name has 1 to {NAME_MAX} printable characters, no spaces")]
    Name(String),
}

impl Principal {
    /// The principal written as `master/NAME`, `executor/NAME` or `user/NAME`.
    pub fn parse(text: &str) -> Result<Principal, PrincipalError> {
        let quoted = || crate::core::text::quote(text).to_string();
        let (role, name) = text.split_once('/').ok_or_else(|| PrincipalError::Form(quoted()))?;
        if name.is_empty() || name.len() > NAME_MAX || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(PrincipalError::Name(quoted()));
        }
        match role {
            "master" => Ok(Principal::Master(name.to_owned())),
            "executor" => Ok(Principal::Executor(name.to_owned())),
            "user" => Ok(Principal::User(name.to_owned())),
            _ => Err(PrincipalError::Form(quoted())),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Master(n) => write!(f, "master/{n}"),
            Principal::Executor(n) => write!(f, "executor/{n}"),
            Principal::User(n) => write!(f, "user/{n}"),
            Principal::Anonymous => f.write_str("an anonymous caller"),
        }
    }
}

/// A call, with what its rule needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `Discovery.RegisterExecutor` under `name`.
    RegisterExecutor { name: String },
    /// `Discovery.Heartbeat` for `executor`; `owner` is the name it was registered under, if the callee knows it.
    Heartbeat { executor: ExecutorId, owner: Option<String> },
    /// `Discovery.DeregisterExecutor` of `executor`; `owner` as for a heartbeat.
    DeregisterExecutor { executor: ExecutorId, owner: Option<String> },
    /// `Discovery.QueryMetaStore`: where the metastore is.
    QueryMetaStore,
    /// Reading the cluster: `Discovery.List*`, `GetLeader`, a job master's status.
    ReadCluster,
    /// `Discovery.ResignLeader`.
    ResignLeader,
    /// `JobManager.*`: create, read, list, cancel, delete jobs, read a job's status.
    ManageJobs,
    /// `TaskScheduler.ScheduleTask` from a job master of `job`; `host` is the executor hosting the incarnation
    /// the request names, if the callee knows it.
    ScheduleTask { job: String, host: Option<String> },
    /// A job master's heartbeat or status report to the job manager (`Framework.*` at the leader); `host` as for
    /// [`Action::ScheduleTask`].
    ReportToJobManager { job: String, host: Option<String> },
    /// A worker's heartbeat or status report to its job master (`Framework.*` at an executor).
    ReportToJobMaster,
    /// `ExecutorService.PreDispatchTask` of a job master (`job_master`) or of a worker.
    Dispatch { job_master: bool },
    /// `ExecutorService.ConfirmDispatchTask`.
    ConfirmDispatch,
}

/// Whether calls are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Everyone may do everything, anonymous callers included: what a cluster without TLS can do.
    Insecure,
    /// The table of the module documentation.
    Checked,
}

/// How a refusal is sent: the caller is not known, or is known and may not do this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeniedCode {
    Unauthenticated,
    PermissionDenied,
}

/// A refusal: its code and what is missing, in words a person can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{missing}")]
pub struct Denied {
    pub code: DeniedCode,
    pub missing: String,
}

/// The roles an action admits, for messages.
fn who(action: &Action) -> &'static str {
    match action {
        Action::RegisterExecutor { .. } => "an executor registering under its own name",
        Action::Heartbeat { .. } => "the executor the id was issued to",
        Action::DeregisterExecutor { .. } => "the executor the id was issued to, or a user",
        Action::QueryMetaStore => "a master or an executor",
        Action::ReadCluster => "a master, an executor or a user",
        Action::ResignLeader => "a user",
        Action::ManageJobs => "a user, or a master forwarding a user's call",
        Action::ScheduleTask { .. } | Action::ReportToJobManager { .. } => {
            "the executor hosting the job master incarnation named"
        }
        Action::ReportToJobMaster => "an executor (the one hosting the worker)",
        Action::Dispatch { job_master: true } => "a master (job masters are placed by the leader)",
        Action::Dispatch { job_master: false } | Action::ConfirmDispatch => "a master or an executor",
    }
}

/// The call's name, for messages.
fn call(action: &Action) -> String {
    match action {
        Action::RegisterExecutor { name } => format!("registering executor {}", crate::core::text::quote(name)),
        Action::Heartbeat { executor, .. } => format!("a heartbeat for executor {executor}"),
        Action::DeregisterExecutor { executor, .. } => format!("deregistering executor {executor}"),
        Action::QueryMetaStore => "QueryMetaStore".to_owned(),
        Action::ReadCluster => "reading the cluster".to_owned(),
        Action::ResignLeader => "ResignLeader".to_owned(),
        Action::ManageJobs => "a job call".to_owned(),
        Action::ScheduleTask { job, .. } => format!("ScheduleTask for job {}", crate::core::text::quote(job)),
        Action::ReportToJobManager { job, .. } => {
            format!("a job master report for job {}", crate::core::text::quote(job))
        }
        Action::ReportToJobMaster => "a worker report".to_owned(),
        Action::Dispatch { job_master: true } => "dispatching a job master".to_owned(),
        Action::Dispatch { job_master: false } => "dispatching a worker".to_owned(),
        Action::ConfirmDispatch => "ConfirmDispatchTask".to_owned(),
    }
}

/// Whether `principal` may make `action` in `mode`; a refusal says what is missing.
pub fn authorize(principal: &Principal, action: &Action, mode: Mode) -> Result<(), Denied> {
    if mode == Mode::Insecure {
        return Ok(());
    }
    if *principal == Principal::Anonymous {
        return Err(Denied {
            code: DeniedCode::Unauthenticated,
            missing: format!("{} needs an identity ({}); this call carries none", call(action), who(action)),
        });
    }
    // An executor acting for something the callee knows belongs to another executor.
    let not_yours = |what: String, owner: &str, me: &str| Denied {
        code: DeniedCode::PermissionDenied,
        missing: format!(
            "{} needs {}: {what} belongs to executor {}, not to executor {}",
            call(action),
            who(action),
            crate::core::text::quote(owner),
            crate::core::text::quote(me)
        ),
    };
    let allowed = match (principal, action) {
        (Principal::Executor(me), Action::RegisterExecutor { name }) => {
            if me != name {
                return Err(not_yours(format!("the name {}", crate::core::text::quote(name)), name, me));
            }
            true
        }
        (
            Principal::Executor(me),
            Action::Heartbeat { executor, owner } | Action::DeregisterExecutor { executor, owner },
        ) => {
            if let Some(owner) = owner.as_deref().filter(|o| *o != me) {
                return Err(not_yours(format!("executor id {executor}"), owner, me));
            }
            true
        }
        (Principal::User(_), Action::DeregisterExecutor { .. }) => true,
        (Principal::Master(_) | Principal::Executor(_), Action::QueryMetaStore) => true,
        (_, Action::ReadCluster) => true,
        (Principal::User(_), Action::ResignLeader) => true,
        (Principal::User(_) | Principal::Master(_), Action::ManageJobs) => true,
        (Principal::Executor(me), Action::ScheduleTask { job, host } | Action::ReportToJobManager { job, host }) => {
            if let Some(host) = host.as_deref().filter(|h| *h != me) {
                return Err(not_yours(format!("the job master of job {}", crate::core::text::quote(job)), host, me));
            }
            true
        }
        (Principal::Executor(_), Action::ReportToJobMaster) => true,
        (Principal::Master(_), Action::Dispatch { .. } | Action::ConfirmDispatch) => true,
        (Principal::Executor(_), Action::Dispatch { job_master: false } | Action::ConfirmDispatch) => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied {
            code: DeniedCode::PermissionDenied,
            missing: format!("{} needs {}; {principal} may not", call(action), who(action)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(n: &str) -> Principal {
        Principal::Master(n.into())
    }
    fn e(n: &str) -> Principal {
        Principal::Executor(n.into())
    }
    fn u(n: &str) -> Principal {
        Principal::User(n.into())
    }
    const A: Principal = Principal::Anonymous;

    fn hb(id: u64, owner: Option<&str>) -> Action {
        Action::Heartbeat { executor: ExecutorId(id), owner: owner.map(str::to_owned) }
    }
    fn dereg(id: u64, owner: Option<&str>) -> Action {
        Action::DeregisterExecutor { executor: ExecutorId(id), owner: owner.map(str::to_owned) }
    }
    fn sched(host: Option<&str>) -> Action {
        Action::ScheduleTask { job: "j".into(), host: host.map(str::to_owned) }
    }
    fn report(host: Option<&str>) -> Action {
        Action::ReportToJobManager { job: "j".into(), host: host.map(str::to_owned) }
    }

    /// Every row of the module's table, for each kind of principal: `None` allowed, else the refusal's code.
    #[test]
    fn the_table() {
        use DeniedCode::{PermissionDenied as D, Unauthenticated as U};
        let register = |n: &str| Action::RegisterExecutor { name: n.into() };
        let table: Vec<(Principal, Action, Option<DeniedCode>)> = vec![
            (e("e1"), register("e1"), None),
            (e("e1"), register("e2"), Some(D)),
            (m("m1"), register("e1"), Some(D)),
            (u("ops"), register("e1"), Some(D)),
            (A, register("e1"), Some(U)),
            (e("e1"), hb(1, Some("e1")), None),
            (e("e1"), hb(1, None), None),
            (e("e1"), hb(2, Some("e2")), Some(D)),
            (m("m1"), hb(1, Some("e1")), Some(D)),
            (u("ops"), hb(1, None), Some(D)),
            (A, hb(1, None), Some(U)),
            (e("e1"), dereg(1, Some("e1")), None),
            (e("e1"), dereg(2, Some("e2")), Some(D)),
            (u("ops"), dereg(2, Some("e2")), None),
            (m("m1"), dereg(2, Some("e2")), Some(D)),
            (A, dereg(2, None), Some(U)),
            (m("m1"), Action::QueryMetaStore, None),
            (e("e1"), Action::QueryMetaStore, None),
            (u("ops"), Action::QueryMetaStore, Some(D)),
            (A, Action::QueryMetaStore, Some(U)),
            (m("m1"), Action::ReadCluster, None),
            (e("e1"), Action::ReadCluster, None),
            (u("ops"), Action::ReadCluster, None),
            (A, Action::ReadCluster, Some(U)),
            (u("ops"), Action::ResignLeader, None),
            (m("m1"), Action::ResignLeader, Some(D)),
            (e("e1"), Action::ResignLeader, Some(D)),
            (A, Action::ResignLeader, Some(U)),
            (u("ops"), Action::ManageJobs, None),
            (m("m1"), Action::ManageJobs, None),
            (e("e1"), Action::ManageJobs, Some(D)),
            (A, Action::ManageJobs, Some(U)),
            (e("e1"), sched(Some("e1")), None),
            (e("e1"), sched(None), None),
            (e("e1"), sched(Some("e2")), Some(D)),
            (m("m1"), sched(None), Some(D)),
            (u("ops"), sched(None), Some(D)),
            (A, sched(None), Some(U)),
            (e("e1"), report(Some("e1")), None),
            (e("e1"), report(None), None),
            (e("e1"), report(Some("e2")), Some(D)),
            (m("m1"), report(None), Some(D)),
            (u("ops"), report(None), Some(D)),
            (A, report(None), Some(U)),
            (e("e1"), Action::ReportToJobMaster, None),
            (m("m1"), Action::ReportToJobMaster, Some(D)),
            (u("ops"), Action::ReportToJobMaster, Some(D)),
            (A, Action::ReportToJobMaster, Some(U)),
            (m("m1"), Action::Dispatch { job_master: true }, None),
            (e("e1"), Action::Dispatch { job_master: true }, Some(D)),
            (u("ops"), Action::Dispatch { job_master: true }, Some(D)),
            (A, Action::Dispatch { job_master: true }, Some(U)),
            (m("m1"), Action::Dispatch { job_master: false }, None),
            (e("e1"), Action::Dispatch { job_master: false }, None),
            (u("ops"), Action::Dispatch { job_master: false }, Some(D)),
            (A, Action::Dispatch { job_master: false }, Some(U)),
            (m("m1"), Action::ConfirmDispatch, None),
            (e("e1"), Action::ConfirmDispatch, None),
            (u("ops"), Action::ConfirmDispatch, Some(D)),
            (A, Action::ConfirmDispatch, Some(U)),
        ];
        for (p, a, want) in &table {
            let got = authorize(p, a, Mode::Checked);
            assert_eq!(got.as_ref().err().map(|d| d.code), *want, "{p} {a:?}: {got:?}");
            assert_eq!(authorize(p, a, Mode::Insecure), Ok(()), "insecure allows {p} {a:?}");
        }
    }

    #[test]
    fn refusals_say_what_is_missing() {
        let d = authorize(&e("e1"), &hb(2, Some("e2")), Mode::Checked).unwrap_err();
        assert_eq!(
            d.missing,
            "a heartbeat for executor e2 needs the executor the id was issued to: executor id e2 belongs to executor \
             \"e2\", not to executor \"e1\""
        );
        let d = authorize(&A, &Action::ResignLeader, Mode::Checked).unwrap_err();
        assert_eq!(d.missing, "ResignLeader needs an identity (a user); this call carries none");
        let d = authorize(&e("e1"), &Action::ResignLeader, Mode::Checked).unwrap_err();
        assert_eq!(d.missing, "ResignLeader needs a user; executor/e1 may not");
        let d = authorize(&e("e1"), &report(Some("e2")), Mode::Checked).unwrap_err();
        assert!(d.missing.contains("the job master of job \"j\" belongs to executor \"e2\""), "{}", d.missing);
    }

    #[test]
    fn principals_parse_and_print_back() {
        for p in [m("m-1"), e("e_2"), u("ops")] {
            assert_eq!(Principal::parse(&p.to_string()), Ok(p.clone()));
        }
        for bad in ["", "master", "master/", "admin/x", "executor/a b", &format!("user/{}", "x".repeat(NAME_MAX + 1))] {
            assert!(Principal::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn principal() -> impl Strategy<Value = Principal> {
        let name = "[a-c]{1,2}";
        prop_oneof![
            name.prop_map(Principal::Master),
            name.prop_map(Principal::Executor),
            name.prop_map(Principal::User),
            Just(Principal::Anonymous),
        ]
    }

    /// The actions only an executor's own may make, with their owner.
    fn owned_action() -> impl Strategy<Value = (Action, String)> {
        let owner = "[a-c]{1,2}";
        (0..4u8, owner, 1..5u64).prop_map(|(kind, owner, id)| {
            let o = Some(owner.clone());
            let a = match kind {
                0 => Action::Heartbeat { executor: ExecutorId(id), owner: o },
                1 => Action::DeregisterExecutor { executor: ExecutorId(id), owner: o },
                2 => Action::ScheduleTask { job: "j".into(), host: o },
                _ => Action::ReportToJobManager { job: "j".into(), host: o },
            };
            (a, owner)
        })
    }

    proptest! {
        /// No executor may act for an id or a job master that belongs to another executor.
        #[test]
        fn no_executor_acts_for_another(me in "[a-c]{1,2}", (action, owner) in owned_action()) {
            let got = authorize(&Principal::Executor(me.clone()), &action, Mode::Checked);
            prop_assert_eq!(got.is_ok(), me == owner, "{:?}", got);
        }

        /// Master-only actions (dispatching a job master) are refused to every principal that is not a master,
        /// and master-free ones (resigning, heartbeats) to every master, when checked.
        #[test]
        fn roles_hold(p in principal()) {
            let jm = authorize(&p, &Action::Dispatch { job_master: true }, Mode::Checked);
            prop_assert_eq!(jm.is_ok(), matches!(p, Principal::Master(_)));
            let executor_only = authorize(&p, &hb(1, None), Mode::Checked);
            prop_assert_eq!(executor_only.is_ok(), matches!(p, Principal::Executor(_)));
            let resign = authorize(&p, &Action::ResignLeader, Mode::Checked);
            prop_assert_eq!(resign.is_ok(), matches!(p, Principal::User(_)));
            if p == Principal::Anonymous {
                prop_assert_eq!(jm.unwrap_err().code, DeniedCode::Unauthenticated);
            }
        }
    }
}
