//! Who may make which call: one pure check, [`authorize`], run at the top of every gRPC handler in both builds
//! (madsim's tonic drops tower layers, so the check cannot be a layer).
//!
//! A caller is a [`Principal`]: a master or an executor by its configured name, a user with its [`Grant`]s, or
//! [`Principal::Anonymous`] (nothing says who calls). A call is an [`Action`], carrying the facts its rule needs as
//! the callee knows them: the executor an executor id was registered to, the executor hosting the job master
//! incarnation a message names, the project of the job a call names. Where the callee does not know a fact it
//! passes `None`, and the check leaves it to the call's own fence (an unknown executor id is told to register
//! again, a stale incarnation is told it is stale, a missing job is not found): those answers harm nobody, and
//! refusing them would keep an honest but stale node from hearing them.
//!
//! Jobs belong to a project. A user's grants give it a [`Role`] in a project, or in every project (`*`): `read`
//! (get, list, status), `submit` (also create, cancel, delete), `admin` (the same in a project; with `*`, also the
//! cluster calls: resigning the leader, deregistering an executor). A call on a job of a project the caller may not
//! read is refused exactly as a call on a missing job ([`DeniedCode::Hidden`]), so that no refusal tells it the job
//! exists.
//!
//! In [`Mode::Insecure`] every principal is allowed every action: production runs so when it can tell no caller
//! apart. In [`Mode::Users`] (production with a tokens file but no TLS) users are held to their grants, and an
//! anonymous caller may make the calls of masters and executors (which cannot prove who they are without
//! certificates) but no user call. In [`Mode::Checked`] every row holds:
//!
//! | action | master | executor | user | anonymous |
//! |---|---|---|---|---|
//! | `RegisterExecutor` | no | as itself only | no | no |
//! | `Heartbeat` | no | its own id only | no | no |
//! | `DeregisterExecutor` | no | its own id only | `admin` in `*` | no |
//! | `QueryMetaStore` | yes | yes | no | no |
//! | `ReadCluster` (`List*`, `GetLeader`, `QueryJobMaster`) | yes | yes | yes | no |
//! | `ResignLeader` | no | no | `admin` in `*` | no |
//! | `Jobs { need }` (a job call before its job is looked up; `ListJobs`) | yes | no | `need` in some project | no |
//! | `CreateJob { project }` | yes | no | `submit` in the project | no |
//! | `Job { need, project }` (get and status: `read`; cancel, delete: `submit`) | yes | no | `need` in the project | no |
//! | `ScheduleTask` | no | the job master incarnation's host only | no | no |
//! | `ReportToJobManager` (`Framework.*` at the leader) | no | the job master incarnation's host only | no | no |
//! | `ReportToJobMaster` (`Framework.*` at an executor) | no | the worker incarnation's host only | no | no |
//! | `Dispatch` of a job master | yes | no | no | no |
//! | `Dispatch` of a worker, `ConfirmDispatch` | yes | yes | no | no |
//! | `ReadLogs` (`ExecutorService.ReadLogs`: users read logs through a master, which checks the job's project) | yes | no | no | no |
//!
//! Masters keep every job call: a master calls for a user only when forwarding, and then the call carries the
//! user's principal, which is the one checked. A corrupt job record's project cannot be read, so only a grant in
//! `*` reaches it.
//!
//! A worker's dispatch comes from its job master, which runs on an executor; the callee cannot tell which
//! executor hosts the job's job master (only the leader knows), so any executor may dispatch a worker, and the
//! dispatch's fences (the leader epoch it was placed under, the task's epoch) stay the guard against a stale one.
//! A job master is dispatched only by the leader, so only a master may dispatch one.

use std::collections::BTreeSet;
use std::fmt;

use crate::core::ids::{ExecutorId, JobId, Project};
use crate::core::text::quote;

/// The longest name a principal may have, in bytes.
pub const NAME_MAX: usize = 128;

/// The most grants a user may carry.
pub const GRANTS_MAX: usize = 64;

/// What a user may do in a project. Ordered: each role may do what the roles before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Get, list and follow jobs.
    Read,
    /// Also create, cancel and delete jobs.
    Submit,
    /// The same in a project; in every project (`*`), also the cluster calls.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Result<Role, PrincipalError> {
        match text {
            "read" => Ok(Role::Read),
            "submit" => Ok(Role::Submit),
            "admin" => Ok(Role::Admin),
            _ => Err(PrincipalError::Role(quote(text).to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a grant applies: one project, or every project (written `*`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    All,
    Project(Project),
}

impl Scope {
    pub const ALL: &'static str = "*";

    pub fn parse(text: &str) -> Result<Scope, PrincipalError> {
        if text == Scope::ALL {
            return Ok(Scope::All);
        }
        Project::parse(text).map(Scope::Project).map_err(|e| PrincipalError::Project(e.to_string()))
    }

    fn covers(&self, project: &Project) -> bool {
        match self {
            Scope::All => true,
            Scope::Project(p) => p == project,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str(Scope::ALL),
            Scope::Project(p) => write!(f, "{p}"),
        }
    }
}

/// A role in a scope.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    pub scope: Scope,
    pub role: Role,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.scope, self.role)
    }
}

/// Who makes a call.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Principal {
    /// A master, by its configured name.
    Master(String),
    /// An executor, by its configured name (the name it registers with).
    Executor(String),
    /// A person or a program acting for one (the CLI, the HTTP API), with what it may do.
    User { name: String, grants: Vec<Grant> },
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
    #[error("{0} is not a role: write read, submit or admin")]
    Role(String),
    #[error("{0} (or * for every project)")]
    Project(String),
    #[error("{0} is not a grant: write PROJECT=ROLE, e.g. team-a=submit or *=admin")]
    Grant(String),
    #[error("{0}: only a user carries grants, at most {GRANTS_MAX}")]
    Grants(String),
}

impl Principal {
    /// A user with no grants yet.
    pub fn user(name: &str) -> Principal {
        Principal::User { name: name.to_owned(), grants: vec![] }
    }

    /// The principal written as `master/NAME`, `executor/NAME` or `user/NAME` (what a certificate names: no
    /// grants).
    pub fn parse(text: &str) -> Result<Principal, PrincipalError> {
        let quoted = || quote(text).to_string();
        let (role, name) = text.split_once('/').ok_or_else(|| PrincipalError::Form(quoted()))?;
        if name.is_empty() || name.len() > NAME_MAX || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(PrincipalError::Name(quoted()));
        }
        match role {
            "master" => Ok(Principal::Master(name.to_owned())),
            "executor" => Ok(Principal::Executor(name.to_owned())),
            "user" => Ok(Principal::user(name)),
            _ => Err(PrincipalError::Form(quoted())),
        }
    }

    /// The principal as [`Principal::wire`] writes it: [`Principal::parse`]'s form, and for a user with grants a
    /// space and its grants, `PROJECT=ROLE` separated by commas (`user/ops team-a=read,*=admin`).
    pub fn parse_wire(text: &str) -> Result<Principal, PrincipalError> {
        let Some((who, grants)) = text.split_once(' ') else { return Principal::parse(text) };
        let Principal::User { name, .. } = Principal::parse(who)? else {
            return Err(PrincipalError::Grants(quote(text).to_string()));
        };
        let grants = grants.split(',').map(parse_grant).collect::<Result<Vec<_>, _>>()?;
        if grants.len() > GRANTS_MAX {
            return Err(PrincipalError::Grants(quote(text).to_string()));
        }
        Ok(Principal::User { name, grants })
    }

    /// The principal with its grants, as it travels in metadata (the simulation's identity, a forwarded call).
    pub fn wire(&self) -> String {
        match self {
            Principal::User { grants, .. } if !grants.is_empty() => {
                let g: Vec<String> = grants.iter().map(Grant::to_string).collect();
                format!("{self} {}", g.join(","))
            }
            _ => self.to_string(),
        }
    }

    /// The highest role this principal has in `project`, if any (users only).
    pub fn role_in(&self, project: &Project) -> Option<Role> {
        match self {
            Principal::User { grants, .. } => grants.iter().filter(|g| g.scope.covers(project)).map(|g| g.role).max(),
            _ => None,
        }
    }

    /// The highest role this principal has in every project (`*`), if any (users only).
    fn role_everywhere(&self) -> Option<Role> {
        match self {
            Principal::User { grants, .. } => grants.iter().filter(|g| g.scope == Scope::All).map(|g| g.role).max(),
            _ => None,
        }
    }

    /// The highest role this principal has anywhere, if any (users only).
    fn role_anywhere(&self) -> Option<Role> {
        match self {
            Principal::User { grants, .. } => grants.iter().map(|g| g.role).max(),
            _ => None,
        }
    }
}

/// One `PROJECT=ROLE` grant.
pub fn parse_grant(text: &str) -> Result<Grant, PrincipalError> {
    let (scope, role) = text.split_once('=').ok_or_else(|| PrincipalError::Grant(quote(text).to_string()))?;
    Ok(Grant { scope: Scope::parse(scope)?, role: Role::parse(role)? })
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Master(n) => write!(f, "master/{n}"),
            Principal::Executor(n) => write!(f, "executor/{n}"),
            Principal::User { name, .. } => write!(f, "user/{name}"),
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
    /// A job call whose job's project the callee does not know yet (a handler, before the leader looks the job
    /// up), or `ListJobs`: `need` in some project.
    Jobs { need: Role },
    /// `JobManager.CreateJob` in `project`.
    CreateJob { project: Project },
    /// A call on the existing job `job` of `project` (`None`: a corrupt record, whose project cannot be read):
    /// `GetJob`, `GetJobStatus` (`read`), `CancelJob`, `DeleteJob` (`submit`).
    Job { job: JobId, need: Role, project: Option<Project> },
    /// `TaskScheduler.ScheduleTask` from a job master of `job`; `host` is the executor hosting the incarnation
    /// the request names, if the callee knows it.
    ScheduleTask { job: String, host: Option<String> },
    /// A job master's heartbeat or status report to the job manager (`Framework.*` at the leader); `host` as for
    /// [`Action::ScheduleTask`].
    ReportToJobManager { job: String, host: Option<String> },
    /// A worker's heartbeat or status report to its job master (`Framework.*` at an executor).
    ReportToJobMaster { host: Option<String> },
    /// `ExecutorService.PreDispatchTask` of a job master (`job_master`) or of a worker.
    Dispatch { job_master: bool },
    /// `ExecutorService.ConfirmDispatchTask`.
    ConfirmDispatch,
    /// `ExecutorService.ReadLogs`.
    ReadLogs,
}

impl Action {
    /// Whether only a user (or a master forwarding one) makes this call: what [`Mode::Users`] holds anonymous
    /// callers to.
    fn is_users(&self) -> bool {
        matches!(self, Action::ResignLeader | Action::Jobs { .. } | Action::CreateJob { .. } | Action::Job { .. })
    }
}

/// Whether calls are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Everyone may do everything, anonymous callers included: what a cluster without TLS or tokens can do.
    Insecure,
    /// Users are held to their grants; anonymous callers may make every call but the users' (a cluster with
    /// tokens but no TLS, whose masters and executors cannot prove who they are).
    Users,
    /// The table of the module documentation.
    Checked,
}

/// How a refusal is sent: the caller is not known, is known and may not do this, or may not even know whether the
/// job it names exists (answered exactly as a missing job).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeniedCode {
    Unauthenticated,
    PermissionDenied,
    Hidden,
}

/// A refusal: its code and what is missing, in words a person can act on (for [`DeniedCode::Hidden`], the
/// missing job's own message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{missing}")]
pub struct Denied {
    pub code: DeniedCode,
    pub missing: String,
}

/// The roles an action admits, for messages.
fn who(action: &Action) -> String {
    match action {
        Action::RegisterExecutor { .. } => "an executor registering under its own name".into(),
        Action::Heartbeat { .. } => "the executor the id was issued to".into(),
        Action::DeregisterExecutor { .. } => {
            "the executor the id was issued to, or role admin in every project (*)".into()
        }
        Action::QueryMetaStore => "a master or an executor".into(),
        Action::ReadCluster => "a master, an executor or a user".into(),
        Action::ResignLeader => "role admin in every project (*)".into(),
        Action::Jobs { need } => format!("role {need} in some project"),
        Action::CreateJob { project } => format!("role {} in project {project}", Role::Submit),
        Action::Job { need, project: Some(p), .. } => format!("role {need} in project {p}"),
        Action::Job { need, project: None, .. } => format!("role {need} in every project (*)"),
        Action::ScheduleTask { .. } | Action::ReportToJobManager { .. } => {
            "the executor hosting the job master incarnation named".into()
        }
        Action::ReportToJobMaster { .. } => "an executor (the one hosting the worker)".into(),
        Action::Dispatch { job_master: true } => "a master (job masters are placed by the leader)".into(),
        Action::Dispatch { job_master: false } | Action::ConfirmDispatch => "a master or an executor".into(),
        Action::ReadLogs => "a master (users read logs through a master: `foreman job logs`)".into(),
    }
}

/// The call's name, for messages.
fn call(action: &Action) -> String {
    match action {
        Action::RegisterExecutor { name } => format!("registering executor {}", quote(name)),
        Action::Heartbeat { executor, .. } => format!("a heartbeat for executor {executor}"),
        Action::DeregisterExecutor { executor, .. } => format!("deregistering executor {executor}"),
        Action::QueryMetaStore => "QueryMetaStore".to_owned(),
        Action::ReadCluster => "reading the cluster".to_owned(),
        Action::ResignLeader => "ResignLeader".to_owned(),
        Action::Jobs { need: Role::Read } => "reading jobs".to_owned(),
        Action::Jobs { .. } => "changing jobs".to_owned(),
        Action::CreateJob { .. } => "creating a job".to_owned(),
        Action::Job { job, need: Role::Read, .. } => format!("reading job {job}"),
        Action::Job { job, .. } => format!("changing job {job}"),
        Action::ScheduleTask { job, .. } => format!("ScheduleTask for job {}", quote(job)),
        Action::ReportToJobManager { job, .. } => format!("a job master report for job {}", quote(job)),
        Action::ReportToJobMaster { .. } => "a worker report".to_owned(),
        Action::Dispatch { job_master: true } => "dispatching a job master".to_owned(),
        Action::Dispatch { job_master: false } => "dispatching a worker".to_owned(),
        Action::ConfirmDispatch => "ConfirmDispatchTask".to_owned(),
        Action::ReadLogs => "ReadLogs".to_owned(),
    }
}

/// What a user has, for messages: its grants, or that it has none.
fn has(principal: &Principal) -> String {
    match principal {
        Principal::User { grants, .. } if grants.is_empty() => {
            format!("{principal} has no grants (a token with one comes from `foreman token add`)")
        }
        Principal::User { grants, .. } => {
            let g: Vec<String> = grants.iter().map(Grant::to_string).collect();
            format!("{principal} has {}", g.join(", "))
        }
        _ => format!("{principal} may not"),
    }
}

/// Whether `principal` may make `action` in `mode`; a refusal says what is missing.
pub fn authorize(principal: &Principal, action: &Action, mode: Mode) -> Result<(), Denied> {
    match mode {
        Mode::Insecure => return Ok(()),
        Mode::Users if *principal == Principal::Anonymous && !action.is_users() => return Ok(()),
        Mode::Users | Mode::Checked => {}
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
            quote(owner),
            quote(me)
        ),
    };
    let at_least = |role: Option<Role>, need: Role| role.is_some_and(|r| r >= need);
    let allowed = match (principal, action) {
        (Principal::Executor(me), Action::RegisterExecutor { name }) => {
            if me != name {
                // Who the caller is names the executor: no other name is its to register under.
                return Err(Denied {
                    code: DeniedCode::PermissionDenied,
                    missing: format!(
                        "{} needs {}: this caller is executor {}, and may register under that name only",
                        call(action),
                        who(action),
                        quote(me)
                    ),
                });
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
        (Principal::User { .. }, Action::DeregisterExecutor { .. } | Action::ResignLeader) => {
            at_least(principal.role_everywhere(), Role::Admin)
        }
        (Principal::Master(_) | Principal::Executor(_), Action::QueryMetaStore) => true,
        (_, Action::ReadCluster) => true,
        (Principal::Master(_), Action::Jobs { .. } | Action::CreateJob { .. } | Action::Job { .. }) => true,
        (Principal::User { .. }, Action::Jobs { need }) => at_least(principal.role_anywhere(), *need),
        (Principal::User { .. }, Action::CreateJob { project }) => at_least(principal.role_in(project), Role::Submit),
        (Principal::User { .. }, Action::Job { job, need, project }) => {
            let role = match project {
                Some(p) => principal.role_in(p),
                None => principal.role_everywhere(),
            };
            if role.is_none() {
                // Whether the job exists is not this caller's to know.
                let missing = crate::core::job::JobError::NotFound { id: job.clone() }.to_string();
                return Err(Denied { code: DeniedCode::Hidden, missing });
            }
            at_least(role, *need)
        }
        (Principal::Executor(me), Action::ScheduleTask { job, host } | Action::ReportToJobManager { job, host }) => {
            if let Some(host) = host.as_deref().filter(|h| *h != me) {
                return Err(not_yours(format!("the job master of job {}", quote(job)), host, me));
            }
            true
        }
        (Principal::Executor(me), Action::ReportToJobMaster { host }) => {
            if let Some(host) = host.as_deref().filter(|h| *h != me) {
                return Err(not_yours("the worker this job master placed there".to_owned(), host, me));
            }
            true
        }
        (Principal::Master(_), Action::Dispatch { .. } | Action::ConfirmDispatch | Action::ReadLogs) => true,
        (Principal::Executor(_), Action::Dispatch { job_master: false } | Action::ConfirmDispatch) => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied {
            code: DeniedCode::PermissionDenied,
            missing: format!("{} needs {}; {}", call(action), who(action), has(principal)),
        })
    }
}

/// The projects whose jobs `principal` may read in `mode`, for `ListJobs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readable {
    /// Every project, and the corrupt records (whose project cannot be read).
    All,
    /// These projects only.
    Projects(BTreeSet<Project>),
}

impl Readable {
    /// Whether a job of `project` may be listed (`None`: a corrupt record).
    pub fn admits(&self, project: Option<&Project>) -> bool {
        match (self, project) {
            (Readable::All, _) => true,
            (Readable::Projects(set), Some(p)) => set.contains(p),
            (Readable::Projects(_), None) => false,
        }
    }

    /// Only `project` of these (a listing filtered by project).
    pub fn only(self, project: &Project) -> Readable {
        if self.admits(Some(project)) {
            Readable::Projects(BTreeSet::from([project.clone()]))
        } else {
            Readable::Projects(BTreeSet::new())
        }
    }
}

/// The projects whose jobs `principal` may read in `mode`: every one for a master (which lists only for a user it
/// forwards, whose principal is then the one asked about) and in [`Mode::Insecure`]; for a user, those of its
/// grants with at least `read`, or every one with a grant in `*`; none for anyone else.
pub fn readable(principal: &Principal, mode: Mode) -> Readable {
    if mode == Mode::Insecure {
        return Readable::All;
    }
    match principal {
        Principal::Master(_) => Readable::All,
        Principal::User { grants, .. } => {
            if grants.iter().any(|g| g.scope == Scope::All) {
                return Readable::All;
            }
            Readable::Projects(
                grants
                    .iter()
                    .filter_map(|g| match &g.scope {
                        Scope::Project(p) => Some(p.clone()),
                        Scope::All => None,
                    })
                    .collect(),
            )
        }
        Principal::Executor(_) | Principal::Anonymous => Readable::Projects(BTreeSet::new()),
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
    /// A user with grants written as `PROJECT=ROLE,...` (empty: none).
    fn u(n: &str, grants: &str) -> Principal {
        let text = if grants.is_empty() { format!("user/{n}") } else { format!("user/{n} {grants}") };
        Principal::parse_wire(&text).unwrap()
    }
    /// The operator: admin in every project.
    fn ops() -> Principal {
        u("ops", "*=admin")
    }
    fn p(name: &str) -> Project {
        Project::parse(name).unwrap()
    }
    fn job(need: Role, project: Option<&str>) -> Action {
        Action::Job { job: JobId::parse("j").unwrap(), need, project: project.map(p) }
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
        use DeniedCode::{Hidden as H, PermissionDenied as D, Unauthenticated as U};
        let register = |n: &str| Action::RegisterExecutor { name: n.into() };
        let table: Vec<(Principal, Action, Option<DeniedCode>)> = vec![
            (e("e1"), register("e1"), None),
            (e("e1"), register("e2"), Some(D)),
            (m("m1"), register("e1"), Some(D)),
            (ops(), register("e1"), Some(D)),
            (A, register("e1"), Some(U)),
            (e("e1"), hb(1, Some("e1")), None),
            (e("e1"), hb(1, None), None),
            (e("e1"), hb(2, Some("e2")), Some(D)),
            (m("m1"), hb(1, Some("e1")), Some(D)),
            (ops(), hb(1, None), Some(D)),
            (A, hb(1, None), Some(U)),
            (e("e1"), dereg(1, Some("e1")), None),
            (e("e1"), dereg(2, Some("e2")), Some(D)),
            (ops(), dereg(2, Some("e2")), None),
            (m("m1"), dereg(2, Some("e2")), Some(D)),
            (A, dereg(2, None), Some(U)),
            (m("m1"), Action::QueryMetaStore, None),
            (e("e1"), Action::QueryMetaStore, None),
            (ops(), Action::QueryMetaStore, Some(D)),
            (A, Action::QueryMetaStore, Some(U)),
            (m("m1"), Action::ReadCluster, None),
            (e("e1"), Action::ReadCluster, None),
            (ops(), Action::ReadCluster, None),
            (A, Action::ReadCluster, Some(U)),
            (ops(), Action::ResignLeader, None),
            (m("m1"), Action::ResignLeader, Some(D)),
            (e("e1"), Action::ResignLeader, Some(D)),
            (A, Action::ResignLeader, Some(U)),
            (u("r", "a=read"), Action::ResignLeader, Some(D)),
            (u("adm", "a=admin"), Action::ResignLeader, Some(D)),
            (u("adm", "a=admin"), dereg(2, Some("e2")), Some(D)),
            (u("none", ""), Action::ReadCluster, None),
            (ops(), Action::Jobs { need: Role::Submit }, None),
            (u("r", "a=read"), Action::Jobs { need: Role::Read }, None),
            (u("r", "a=read"), Action::Jobs { need: Role::Submit }, Some(D)),
            (u("s", "b=submit"), Action::Jobs { need: Role::Submit }, None),
            (u("none", ""), Action::Jobs { need: Role::Read }, Some(D)),
            (m("m1"), Action::Jobs { need: Role::Admin }, None),
            (e("e1"), Action::Jobs { need: Role::Read }, Some(D)),
            (A, Action::Jobs { need: Role::Read }, Some(U)),
            (u("s", "b=submit"), Action::CreateJob { project: p("b") }, None),
            (u("s", "b=submit"), Action::CreateJob { project: p("a") }, Some(D)),
            (u("r", "a=read"), Action::CreateJob { project: p("a") }, Some(D)),
            (u("adm", "a=admin"), Action::CreateJob { project: p("a") }, None),
            (ops(), Action::CreateJob { project: p("z") }, None),
            (m("m1"), Action::CreateJob { project: p("a") }, None),
            (e("e1"), Action::CreateJob { project: p("a") }, Some(D)),
            (A, Action::CreateJob { project: p("a") }, Some(U)),
            (u("r", "a=read"), job(Role::Read, Some("a")), None),
            (u("r", "a=read"), job(Role::Submit, Some("a")), Some(D)),
            (u("r", "a=read"), job(Role::Read, Some("b")), Some(H)),
            (u("r", "a=read"), job(Role::Submit, Some("b")), Some(H)),
            (u("s", "b=submit,a=read"), job(Role::Submit, Some("b")), None),
            (u("s", "b=submit,a=read"), job(Role::Submit, Some("a")), Some(D)),
            (u("r", "a=read"), job(Role::Read, None), Some(H)),
            (u("all", "*=read"), job(Role::Read, None), None),
            (u("all", "*=read"), job(Role::Submit, Some("q")), Some(D)),
            (ops(), job(Role::Submit, None), None),
            (m("m1"), job(Role::Submit, Some("a")), None),
            (e("e1"), job(Role::Read, Some("a")), Some(D)),
            (A, job(Role::Read, Some("a")), Some(U)),
            (e("e1"), sched(Some("e1")), None),
            (e("e1"), sched(None), None),
            (e("e1"), sched(Some("e2")), Some(D)),
            (m("m1"), sched(None), Some(D)),
            (ops(), sched(None), Some(D)),
            (A, sched(None), Some(U)),
            (e("e1"), report(Some("e1")), None),
            (e("e1"), report(None), None),
            (e("e1"), report(Some("e2")), Some(D)),
            (m("m1"), report(None), Some(D)),
            (ops(), report(None), Some(D)),
            (A, report(None), Some(U)),
            (e("e1"), Action::ReportToJobMaster { host: None }, None),
            (e("e1"), Action::ReportToJobMaster { host: Some("e1".into()) }, None),
            (e("e1"), Action::ReportToJobMaster { host: Some("e2".into()) }, Some(D)),
            (m("m1"), Action::ReportToJobMaster { host: None }, Some(D)),
            (ops(), Action::ReportToJobMaster { host: None }, Some(D)),
            (A, Action::ReportToJobMaster { host: None }, Some(U)),
            (m("m1"), Action::Dispatch { job_master: true }, None),
            (e("e1"), Action::Dispatch { job_master: true }, Some(D)),
            (ops(), Action::Dispatch { job_master: true }, Some(D)),
            (A, Action::Dispatch { job_master: true }, Some(U)),
            (m("m1"), Action::Dispatch { job_master: false }, None),
            (e("e1"), Action::Dispatch { job_master: false }, None),
            (ops(), Action::Dispatch { job_master: false }, Some(D)),
            (A, Action::Dispatch { job_master: false }, Some(U)),
            (m("m1"), Action::ConfirmDispatch, None),
            (e("e1"), Action::ConfirmDispatch, None),
            (ops(), Action::ConfirmDispatch, Some(D)),
            (A, Action::ConfirmDispatch, Some(U)),
            // An executor's logs are a master's to read: a user reads them through one (`JobLogs`), which checks
            // the job's project; another executor has no business there.
            (m("m1"), Action::ReadLogs, None),
            (e("e1"), Action::ReadLogs, Some(D)),
            (ops(), Action::ReadLogs, Some(D)),
            (A, Action::ReadLogs, Some(U)),
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
        assert_eq!(
            d.missing,
            "ResignLeader needs an identity (role admin in every project (*)); this call carries none"
        );
        let d = authorize(&e("e1"), &Action::ResignLeader, Mode::Checked).unwrap_err();
        assert_eq!(d.missing, "ResignLeader needs role admin in every project (*); executor/e1 may not");
        let d = authorize(&u("r", "a=read"), &job(Role::Submit, Some("a")), Mode::Checked).unwrap_err();
        assert_eq!(d.missing, "changing job j needs role submit in project a; user/r has a=read");
        let d = authorize(&u("n", ""), &Action::CreateJob { project: p("a") }, Mode::Checked).unwrap_err();
        assert_eq!(
            d.missing,
            "creating a job needs role submit in project a; user/n has no grants (a token with one comes from \
             `foreman token add`)"
        );
        // A job the caller may not read is answered as a missing one, word for word.
        let d = authorize(&u("s", "b=submit"), &job(Role::Read, Some("a")), Mode::Checked).unwrap_err();
        assert_eq!(d.missing, crate::core::job::JobError::NotFound { id: JobId::parse("j").unwrap() }.to_string());
        let d = authorize(&e("e1"), &Action::RegisterExecutor { name: "rogue".into() }, Mode::Checked).unwrap_err();
        assert_eq!(
            d.missing,
            "registering executor \"rogue\" needs an executor registering under its own name: this caller is executor \
             \"e1\", and may register under that name only"
        );
        let d = authorize(&e("e1"), &report(Some("e2")), Mode::Checked).unwrap_err();
        assert!(d.missing.contains("the job master of job \"j\" belongs to executor \"e2\""), "{}", d.missing);
    }

    #[test]
    fn principals_parse_and_print_back() {
        for p in [m("m-1"), e("e_2"), u("ops", "")] {
            assert_eq!(Principal::parse(&p.to_string()), Ok(p.clone()));
            assert_eq!(Principal::parse_wire(&p.wire()), Ok(p.clone()));
        }
        for bad in ["", "master", "master/", "admin/x", "executor/a b", &format!("user/{}", "x".repeat(NAME_MAX + 1))] {
            assert!(Principal::parse(bad).is_err(), "{bad:?}");
        }
        let grants = u("ops", "a=read,*=admin,b-2=submit");
        assert_eq!(grants.wire(), "user/ops a=read,*=admin,b-2=submit");
        assert_eq!(grants.to_string(), "user/ops", "messages name the user, not its grants");
        assert_eq!(Principal::parse_wire(&grants.wire()), Ok(grants.clone()));
        assert!(Principal::parse(&grants.wire()).is_err(), "a certificate's name carries no grants");
        for bad in ["user/x ", "user/x a", "user/x a=root", "user/x A=read", "executor/x a=read", "user/x a=read,"] {
            assert!(Principal::parse_wire(bad).is_err(), "{bad:?}");
        }
        let many = vec!["a=read"; GRANTS_MAX + 1].join(",");
        assert!(Principal::parse_wire(&format!("user/x {many}")).is_err());
    }

    fn principal() -> impl Strategy<Value = Principal> {
        let name = "[a-c]{1,2}";
        prop_oneof![
            name.prop_map(Principal::Master),
            name.prop_map(Principal::Executor),
            (name, proptest::collection::vec(grant(), 0..4))
                .prop_map(|(name, grants)| Principal::User { name, grants }),
            Just(Principal::Anonymous),
        ]
    }

    fn grant() -> impl Strategy<Value = Grant> {
        let scope = prop_oneof![Just(Scope::All), "[a-c]".prop_map(|n| Scope::Project(Project::parse(&n).unwrap()))];
        let role = prop_oneof![Just(Role::Read), Just(Role::Submit), Just(Role::Admin)];
        (scope, role).prop_map(|(scope, role)| Grant { scope, role })
    }

    /// The actions only an executor's own may make, with their owner.
    fn owned_action() -> impl Strategy<Value = (Action, String)> {
        let owner = "[a-c]{1,2}";
        (0..5u8, owner, 1..5u64).prop_map(|(kind, owner, id)| {
            let o = Some(owner.clone());
            let a = match kind {
                0 => Action::Heartbeat { executor: ExecutorId(id), owner: o },
                1 => Action::DeregisterExecutor { executor: ExecutorId(id), owner: o },
                2 => Action::ScheduleTask { job: "j".into(), host: o },
                3 => Action::ReportToJobManager { job: "j".into(), host: o },
                _ => Action::ReportToJobMaster { host: o },
            };
            (a, owner)
        })
    }

    proptest! {
        /// A user's job calls: allowed exactly when a grant covering the job's project has the role the call
        /// needs; refused as a missing job exactly when no grant covers the project; a listing shows exactly the
        /// projects a call on one of their jobs would read; the same holds for the wire form it travels in.
        #[test]
        fn job_calls_follow_the_grants(
            grants in proptest::collection::vec(grant(), 0..4),
            project in "[a-d]",
            need in prop_oneof![Just(Role::Read), Just(Role::Submit), Just(Role::Admin)],
        ) {
            let user = Principal::User { name: "x".into(), grants: grants.clone() };
            prop_assert_eq!(Principal::parse_wire(&user.wire()), Ok(user.clone()));
            let project = Project::parse(&project).unwrap();
            let best = grants.iter().filter(|g| g.scope == Scope::All || g.scope == Scope::Project(project.clone()))
                .map(|g| g.role).max();
            let action = Action::Job { job: JobId::parse("j").unwrap(), need, project: Some(project.clone()) };
            for mode in [Mode::Checked, Mode::Users] {
                let got = authorize(&user, &action, mode);
                match best {
                    None => prop_assert_eq!(got.unwrap_err().code, DeniedCode::Hidden),
                    Some(r) if r >= need => prop_assert!(got.is_ok()),
                    Some(_) => prop_assert_eq!(got.unwrap_err().code, DeniedCode::PermissionDenied),
                }
                let read = Action::Job { job: JobId::parse("j").unwrap(), need: Role::Read, project: Some(project.clone()) };
                prop_assert_eq!(readable(&user, mode).admits(Some(&project)), authorize(&user, &read, mode).is_ok());
                let create = authorize(&user, &Action::CreateJob { project: project.clone() }, mode);
                prop_assert_eq!(create.is_ok(), best >= Some(Role::Submit));
            }
        }

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
            prop_assert_eq!(resign.is_ok(), p.role_everywhere() == Some(Role::Admin));
            if p == Principal::Anonymous {
                prop_assert_eq!(jm.unwrap_err().code, DeniedCode::Unauthenticated);
            }
            // Job calls: masters and users only; executors never.
            let a = Action::Job { job: JobId::parse("j").unwrap(), need: Role::Read, project: None };
            if matches!(p, Principal::Executor(_)) {
                prop_assert_eq!(authorize(&p, &a, Mode::Checked).unwrap_err().code, DeniedCode::PermissionDenied);
            }
            // Mode::Users: what anonymous may do is every call but the users'; anyone else as when checked.
            let b = Action::Jobs { need: Role::Read };
            for action in [hb(1, Some("zz")), Action::ResignLeader, b, a] {
                let users = authorize(&p, &action, Mode::Users);
                if p == Principal::Anonymous {
                    prop_assert_eq!(users.is_ok(), !action.is_users());
                } else {
                    prop_assert_eq!(users, authorize(&p, &action, Mode::Checked));
                }
            }
        }
    }
}
