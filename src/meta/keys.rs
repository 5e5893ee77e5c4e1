//! The metastore's key layout: every key foreman stores, as a function, so no other module spells a key.
//!
//! Keys here are relative: the store puts each under `/foreman/<cluster>/` ([`super::MetaStore::prefix`]).
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `election/<lease id, hex>` | a candidate's campaign value; the lowest creation revision leads | the candidate's lease (written by the election API, never by hand) |
//! | `leader-epoch` | decimal `u64`: the epoch of the latest leadership term | permanent; bumped by each new leader |
//! | `leader-term` | the current leader's name, address, lease and epoch | the leader's lease |
//! | `masters/<name>` | a master's membership record | the master's lease: it disappears when the master dies |
//! | `executor-next-id` | decimal `u64`: the next executor id to hand out | permanent |
//! | `executors/<id, 20 digits>` | an executor's record | until the executor is declared offline |
//! | `jobs/<job id>` | a job's record | until `DeleteJob` |
//! | `job-next-epoch` | decimal `u64`: the next incarnation epoch (one counter for every job, master and worker) | permanent |
//! | `deleted-jobs/<job id>` | a deleted job's create token and when it was deleted (`core::tombstone::Tombstone`, JSON): a delayed repeat of its create is refused | `jobs.tombstone-retention` after the deletion (collected by the leader), or until the id is created again |
//! | `job-masters/<job id>` | decimal `u64`: the epoch of the job's current job-master incarnation, written by the leader as it starts one; the job master guards its own writes on it | until `DeleteJob` |
//! | `workers/<job id>/<worker>` | decimal `u64`: the worker's current incarnation epoch, written by its job master before it dispatches it; the worker guards its checkpoints on it | until its job is deleted |
//! | `checkpoints/<job id>/<worker>` | a worker's checkpoint (the job type's business state) | until its job is deleted |
//! | `job-store/<job id>/<key>` | a value of the job's own store, written by its workers, fenced by the writer's record (at most 64 KiB) | until its job is deleted |
//! | `job-status/<job id>` | the job's status as its job master last stored it (`core::job_status::StoredStatus`, JSON: epoch, wall-clock `at`, document), written fenced on `job-masters/<job id>` | until its job is deleted |
//!
//! Invariants the layout keeps:
//! - Listing one kind never returns another: every listed family ends its prefix with `/`, the counters live
//!   outside the families (`executor-next-id` is not under `executors/`), and job ids contain no `/`
//!   ([`crate::core::ids::JobId`]), so `workers/a/` never matches job `a.b`'s or `ab`'s workers.
//! - Executor ids are zero-padded to 20 digits (every `u64`), so keys sort in id order.
//! - No key other than the election's begins with `election`: the simulated etcd finds the leader by a raw
//!   prefix scan of the election name without the trailing `/`.

/// The election's name (etcd's Election API appends `/<lease id>` for each candidate).
pub fn election() -> String {
    "election".to_owned()
}

/// The counter of leadership terms; a new leader takes the next value under its leader key.
pub fn leader_epoch() -> String {
    "leader-epoch".to_owned()
}

/// The current term: who leads under which epoch, put by the leader with its lease once it took its epoch (a
/// separate key, because a leased key must never be put twice under the same lease: the simulated etcd would then
/// forget that the key belongs to the lease).
pub fn leader_term() -> String {
    "leader-term".to_owned()
}

/// The term's write fence ([`crate::core::write_fence`]): every write of a leader compares the value its previous
/// write put here and puts the next; a new leader takes it under its election key before it recovers.
pub fn leader_writes() -> String {
    "leader-writes".to_owned()
}

/// A master's membership record, put with the master's election lease so that it disappears when the master dies.
pub fn masters(name: &str) -> String {
    format!("masters/{name}")
}

/// Every master's membership record.
pub fn masters_prefix() -> String {
    "masters/".to_owned()
}

/// The counter of executor ids (never reused).
pub fn executor_next_id() -> String {
    "executor-next-id".to_owned()
}

/// An executor's record; the id is zero-padded to 20 digits so that keys sort numerically.
pub fn executor(id: u64) -> String {
    format!("executors/{id:020}")
}

/// Every executor's record.
pub fn executors_prefix() -> String {
    "executors/".to_owned()
}

/// The id of the executor whose record lives at `key`, if `key` is one ([`executor`]'s inverse).
pub fn executor_id_of(key: &str) -> Option<u64> {
    let digits = key.strip_prefix("executors/")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A job's record.
pub fn job(id: &str) -> String {
    format!("jobs/{id}")
}

/// The job id a job record's key names (not validated as a job id).
pub fn job_id_of(key: &str) -> Option<&str> {
    key.strip_prefix("jobs/")
}

/// Every job's record.
pub fn jobs_prefix() -> String {
    "jobs/".to_owned()
}

/// Where a worker's local resource lives (`name`: `<worker>/<resource>`): the id of the executor holding it. Within
/// the family of the job records, so that a new leader reads them with the jobs, in the same listing.
pub fn resource(job: &str, name: &str) -> String {
    format!("jobs/{job}/resources/{name}")
}

/// The job and the `<worker>/<resource>` a resource record's key names, if `key` is one ([`resource`]'s inverse).
pub fn resource_of(key: &str) -> Option<(&str, &str)> {
    let (job, name) = key.strip_prefix("jobs/")?.split_once("/resources/")?;
    (!job.is_empty() && !job.contains('/') && !name.is_empty()).then_some((job, name))
}

/// The cluster-wide counter of incarnation epochs.
pub fn job_next_epoch() -> String {
    "job-next-epoch".to_owned()
}

/// The tombstone of a deleted job: its create token (`CreateJobRequest.request_id`) and when it was deleted, so
/// that a delayed repeat of that create is refused.
pub fn deleted_job(id: &str) -> String {
    format!("deleted-jobs/{id}")
}

/// Every tombstone of a deleted job.
pub fn deleted_jobs_prefix() -> String {
    "deleted-jobs/".to_owned()
}

/// The job id of the tombstone at `key`, if `key` is one ([`deleted_job`]'s inverse).
pub fn deleted_job_id_of(key: &str) -> Option<&str> {
    key.strip_prefix("deleted-jobs/").filter(|id| !id.is_empty() && !id.contains('/'))
}

/// The epoch of a job's current job-master incarnation: the fence of the job master's own writes.
pub fn job_master(job: &str) -> String {
    format!("job-masters/{job}")
}

/// One worker's record within its job.
pub fn worker(job: &str, task: &str) -> String {
    format!("workers/{job}/{task}")
}

/// Every worker record of one job.
pub fn workers_prefix(job: &str) -> String {
    format!("workers/{job}/")
}

/// One worker's checkpoint within its job.
pub fn checkpoint(job: &str, worker: &str) -> String {
    format!("checkpoints/{job}/{worker}")
}

/// Every checkpoint of one job.
pub fn checkpoints_prefix(job: &str) -> String {
    format!("checkpoints/{job}/")
}

/// A key of one job's own store ([`crate::framework::store`]; `key` checked there).
pub fn job_store(job: &str, key: &str) -> String {
    format!("job-store/{job}/{key}")
}

/// Every key of one job's store.
pub fn job_store_prefix(job: &str) -> String {
    format!("job-store/{job}/")
}

/// A job's status as its job master last stored it: what the leader shows when no job master answers live.
pub fn job_status(job: &str) -> String {
    format!("job-status/{job}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executor_keys_sort_numerically_and_parse_back() {
        let ids = [0, 1, 9, 10, 99, 100, 12_345, u64::MAX];
        let keys: Vec<String> = ids.iter().map(|&id| executor(id)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for (&id, key) in ids.iter().zip(&keys) {
            assert!(key.starts_with(&executors_prefix()));
            assert_eq!(executor_id_of(key), Some(id), "{key}");
        }
    }

    #[test]
    fn executor_id_of_refuses_other_keys() {
        for key in [
            "executors/1",
            "executors/0000000000000000000x",
            "executors/000000000000000000001",
            "executors/",
            "executor-next-id",
            "jobs/00000000000000000001",
            "executors/00000000000000000001/x",
            "executors/99999999999999999999",
        ] {
            assert_eq!(executor_id_of(key), None, "{key}");
        }
    }

    #[test]
    fn families_do_not_overlap() {
        let all = [
            leader_epoch(),
            leader_term(),
            leader_writes(),
            masters("m"),
            executor_next_id(),
            executor(7),
            job("a"),
            job_next_epoch(),
            worker("a", "w1"),
            checkpoint("a", "w1"),
            job_master("a"),
            deleted_job("a"),
            job_status("a"),
        ];
        let families = [
            masters_prefix(),
            executors_prefix(),
            jobs_prefix(),
            workers_prefix("a"),
            checkpoints_prefix("a"),
            deleted_jobs_prefix(),
        ];
        for key in &all {
            let matching = families.iter().filter(|p| key.starts_with(p.as_str())).count();
            assert!(matching <= 1, "{key} is in {matching} families");
            assert!(!key.starts_with(&election()), "{key} would confuse the simulated election");
        }
        assert!(!job("ab").starts_with(&workers_prefix("a")));
        assert!(!worker("ab", "t").starts_with(&workers_prefix("a")));
        assert!(!checkpoint("a.b", "w").starts_with(&checkpoints_prefix("a")));
        assert!(!job_next_epoch().starts_with(&jobs_prefix()));
        assert!(!job_master("a").starts_with(&jobs_prefix()));
        assert!(!job_status("a").starts_with(&jobs_prefix()));
        assert!(!executor_next_id().starts_with(&executors_prefix()));
        assert_eq!(resource_of(&resource("a.b", "w0/scratch")), Some(("a.b", "w0/scratch")));
        assert_eq!(resource_of(&job("a")), None);
        assert_eq!(resource_of("jobs/a/resources/"), None);
        assert_eq!(deleted_job_id_of(&deleted_job("a.b")), Some("a.b"));
        for key in ["deleted-jobs/", "deleted-jobs/a/b", "jobs/a"] {
            assert_eq!(deleted_job_id_of(key), None, "{key}");
        }
    }
}
