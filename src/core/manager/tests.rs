use super::*;
use crate::core::job::JobSpec;
use crate::core::registry::{ExecutorSpec, ReportedTask, TaskKind};

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

fn policy() -> ManagerPolicy {
    ManagerPolicy {
        registry: RegistryPolicy::default(),
        placement: PlacementPolicy::default(),
        jobs: JobPolicy::default(),
        job_masters: HeartbeatTiming {
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(500),
            self_fence: Duration::from_secs(3),
            offline_ttl: Duration::from_secs(5),
        },
        dispatch_window: Duration::from_secs(1),
        check_interval: Duration::from_millis(500),
        tombstone_retention: Duration::from_secs(600),
        batch_max: 128,
        report_capacity: false,
        pin_wait: Duration::from_secs(60),
    }
}

fn manager() -> Manager {
    let mut m = Manager::recover(ms(0), LeaderEpoch(1), policy(), Plants::default(), 7, Snapshot::default());
    m.ready();
    m
}

fn spec(request: &str) -> JobSpec {
    JobSpec {
        job_type: "fake".into(),
        config: "{}".into(),
        selectors: vec![],
        cost: 1,
        request: request.into(),
        project: Default::default(),
    }
}

fn id(s: &str) -> JobId {
    JobId::parse(s).unwrap()
}

fn request(m: &mut Manager, now: u64, to: u64, r: Request) -> Ready {
    m.step(ms(now), Input::Request(ReplyTo(to), r));
    m.ready()
}

#[test]
fn a_get_waits_for_the_create_under_way_and_sees_it_once_durable() {
    let mut m = manager();
    let r = request(&mut m, 1, 1, Request::CreateJob { id: None, spec: spec("t-1") });
    let (io, records) = r.write.expect("the create writes its record");
    assert!(matches!(&records[..], [Record::Job(j)] if j.state == JobState::Created));
    assert!(r.answers.is_empty(), "no answer before the write is taken");
    let created = match &records[0] {
        Record::Job(j) => j.id.clone(),
        _ => unreachable!(),
    };
    // A read while the write is in flight waits.
    let r = request(&mut m, 2, 2, Request::GetJob { id: created.clone(), include_config: false });
    assert!(r.answers.is_empty() && r.write.is_none());
    assert_eq!(m.queued(), 1);
    m.on_write(ms(3), io, WriteOutcome::Written);
    let r = m.ready();
    let to: Vec<ReplyTo> = r.answers.iter().map(|(to, _)| *to).collect();
    assert_eq!(to, [ReplyTo(1), ReplyTo(2)], "answers in decision order");
    assert!(r.answers.iter().all(|(_, a)| matches!(a, Ok(Reply::Job(v)) if v.id() == &created)));
}

/// A create that is durable now: its id and record.
fn created(m: &mut Manager, now: u64, to: u64, token: &str) -> (JobId, JobRecord) {
    let r = request(m, now, to, Request::CreateJob { id: None, spec: spec(token) });
    let (io, records) = r.write.expect("the create writes its record");
    let Record::Job(record) = records[0].clone() else { panic!("{records:?}") };
    m.on_write(ms(now), io, WriteOutcome::Written);
    m.ready();
    (record.id.clone(), record)
}

/// Group commit: creates queued behind a write in flight go in one write per transaction's worth of operations
/// (the policy's `batch_max`, 128 here), each answered once that write is taken, in order; a read of a job the write
/// in flight does not touch is answered at once, one of a job it touches waits for it.
#[test]
fn a_storm_of_creates_goes_in_one_write_per_transaction_and_each_is_answered_once_it_is_taken() {
    let mut m = manager();
    let (durable, _) = created(&mut m, 1, 1, "old");
    let r = request(&mut m, 2, 2, Request::CreateJob { id: None, spec: spec("held") });
    let (held, records) = r.write.expect("the create writes at once");
    let Record::Job(in_flight) = &records[0] else { panic!("{records:?}") };
    let in_flight = in_flight.id.clone();
    let r = request(&mut m, 3, 3, Request::GetJob { id: durable.clone(), include_config: false });
    assert!(matches!(&r.answers[..], [(ReplyTo(3), Ok(Reply::Job(v)))] if v.id() == &durable), "{r:?}");
    let r = request(&mut m, 3, 4, Request::GetJob { id: in_flight.clone(), include_config: false });
    assert!(r.answers.is_empty(), "a read of the job being written waits");
    for n in 0..200 {
        let r = request(&mut m, 4, 100 + n, Request::CreateJob { id: None, spec: spec(&format!("c-{n}")) });
        assert!(r.write.is_none() && r.answers.is_empty());
    }
    m.on_write(ms(5), held, WriteOutcome::Written);
    let r = m.ready();
    let to: Vec<ReplyTo> = r.answers.iter().map(|(to, _)| *to).collect();
    assert_eq!(to, [ReplyTo(2), ReplyTo(4)], "the held create and the read that waited for it, and no other");
    let (batch, records) = r.write.expect("the queued creates write together");
    assert_eq!(records.len(), 128, "one transaction's worth");
    assert!(records.iter().all(|r| matches!(r, Record::Job(j) if j.state == JobState::Created)));
    assert_eq!(m.queued(), 72);
    m.on_write(ms(6), batch, WriteOutcome::Written);
    let r = m.ready();
    let to: Vec<u64> = r.answers.iter().map(|(to, _)| to.0).collect();
    assert_eq!(to, (100..228).collect::<Vec<_>>(), "each answered, in order");
    assert!(r.answers.iter().all(|(_, a)| matches!(a, Ok(Reply::Job(_)))));
    let (rest, records) = r.write.expect("the rest");
    assert_eq!((records.len(), m.queued()), (72, 0));
    m.on_write(ms(7), rest, WriteOutcome::Written);
    assert_eq!(m.ready().answers.len(), 72);
    assert_eq!(m.jobs().len(), 202);
}

/// Creates with ids queued behind a write read their tombstones together, and write together once every read is
/// in (in queue order, whatever order the reads come back in); a second create of one of their ids waits, and is
/// then refused as the id is taken.
#[test]
fn creates_with_ids_read_their_tombstones_together_and_write_together() {
    let mut m = manager();
    let r = request(&mut m, 1, 1, Request::CreateJob { id: None, spec: spec("held") });
    let (held, _) = r.write.expect("in flight");
    for (to, job, token) in [(10, "j1", "t-1"), (11, "j2", "t-2"), (12, "j1", "t-3")] {
        request(&mut m, 2, to, Request::CreateJob { id: Some(id(job)), spec: spec(token) });
    }
    m.on_write(ms(3), held, WriteOutcome::Written);
    let r = m.ready();
    let reads: Vec<Read> = r.reads.iter().map(|(_, read)| read.clone()).collect();
    assert_eq!(reads, [Read::Tombstone(id("j1")), Read::Tombstone(id("j2"))], "the second create of j1 waits");
    assert_eq!(m.queued(), 1);
    // j2's read comes back first: nothing is decided until j1's is in too.
    m.on_read(ms(4), r.reads[1].0, Ok(ReadResult::Tombstone(Some("an older job's token".into()))));
    let early = m.ready();
    assert!(early.write.is_none() && early.answers.is_empty(), "{early:?}");
    m.on_read(ms(5), r.reads[0].0, Ok(ReadResult::Tombstone(None)));
    let r = m.ready();
    let (io, records) = r.write.expect("both creates write together");
    let keys: Vec<String> = records
        .iter()
        .map(|r| match r {
            Record::Job(j) => format!("job {}", j.id),
            Record::DeleteTombstone(id) => format!("tombstone {id} deleted"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(keys, ["job j1", "job j2", "tombstone j2 deleted"]);
    m.on_write(ms(6), io, WriteOutcome::Written);
    let r = m.ready();
    let to: Vec<u64> = r.answers.iter().map(|(to, _)| to.0).collect();
    assert_eq!(to, [10, 11, 12]);
    assert!(matches!(&r.answers[2].1, Err(Refusal::Job(JobError::AlreadyExists { .. }))), "{:?}", r.answers[2]);
}

/// What may not join a staged write waits for the next one: a repeat of a create whose job the staged write
/// creates (its answer would show a job not yet durable). A batch the metastore refuses refuses each of its
/// operations as alone: its creates are forgotten, the jobs it changed are read back (and only those).
#[test]
fn a_refused_batch_refuses_each_of_its_operations_and_reads_back_only_the_jobs_it_changed() {
    let mut m = manager();
    let (old, old_record) = created(&mut m, 1, 1, "old");
    let r = request(&mut m, 2, 2, Request::CreateJob { id: None, spec: spec("held") });
    let (held, _) = r.write.expect("in flight");
    for (to, r) in [
        (10, Request::CreateJob { id: None, spec: spec("c-0") }),
        (11, Request::CancelJob { id: old.clone() }),
        (12, Request::CreateJob { id: None, spec: spec("c-1") }),
        (13, Request::CreateJob { id: None, spec: spec("c-0") }),
    ] {
        request(&mut m, 3, to, r);
    }
    m.on_write(ms(4), held, WriteOutcome::Written);
    let r = m.ready();
    let (batch, records) = r.write.expect("the batch");
    let written: Vec<(String, JobState)> = records
        .iter()
        .map(|r| match r {
            Record::Job(j) => (j.spec.request.clone(), j.state),
            other => panic!("{other:?}"),
        })
        .collect();
    let want = [("c-0", JobState::Created), ("old", JobState::Canceled), ("c-1", JobState::Created)];
    assert_eq!(written, want.map(|(t, s)| (t.to_string(), s)), "the repeat of c-0 waits");
    assert_eq!(m.queued(), 1);
    m.on_write(ms(5), batch, WriteOutcome::NotApplied("too many requests".into()));
    let r = m.ready();
    assert_eq!(r.reads.iter().map(|(_, read)| read.clone()).collect::<Vec<_>>(), [Read::Job(old.clone())]);
    assert!(r.answers.is_empty(), "answered once memory agrees with the metastore again");
    m.on_read(ms(6), r.reads[0].0, Ok(ReadResult::Job(Some(Ok(old_record)))));
    let r = m.ready();
    let to: Vec<u64> = r.answers.iter().map(|(to, _)| to.0).collect();
    assert_eq!(to, [10, 11, 12]);
    assert!(r.answers.iter().all(|(_, a)| matches!(a, Err(Refusal::Metastore(_)))), "{:?}", r.answers);
    assert_eq!(m.jobs().get(&old).unwrap().state(), JobState::Created, "read back as durable");
    assert!(m.jobs().by_request("c-1").is_none(), "forgotten");
    // The repeat of c-0 is a create of its own now (the first was never durable).
    let (_, records) = r.write.expect("the waiting create writes");
    assert!(matches!(&records[..], [Record::Job(j)] if j.spec.request == "c-0"));
}

#[test]
fn a_create_whose_write_is_not_applied_is_refused_and_one_whose_outcome_is_unknown_ends_the_term() {
    for unknown in [false, true] {
        let mut m = manager();
        let r = request(&mut m, 1, 1, Request::CreateJob { id: Some(id("j1")), spec: spec("") });
        let (read, what) = r.reads[0].clone();
        assert_eq!(what, Read::Tombstone(id("j1")));
        m.on_read(ms(2), read, Ok(ReadResult::Tombstone(None)));
        let (io, _) = m.ready().write.expect("the record is written");
        let outcome =
            if unknown { WriteOutcome::Unknown("timeout".into()) } else { WriteOutcome::NotApplied("refused".into()) };
        m.on_write(ms(3), io, outcome);
        let r = m.ready();
        assert!(r.reads.is_empty() && r.write.is_none(), "nothing read back, nothing written: {r:?}");
        assert_eq!(r.answers.len(), 1);
        let refusal = r.answers[0].1.clone().expect_err("the create is refused");
        assert!(matches!(refusal, Refusal::Metastore(_)), "{refusal:?}");
        // Unknown: the write may still land after anything this term would write next, so the term ends.
        assert_eq!(r.step_down.is_some(), unknown, "{r:?}");
        if !unknown {
            assert!(m.jobs().get(&id("j1")).is_none(), "memory agrees with the store");
        }
    }
}

#[test]
fn a_failed_write_of_the_periodic_pass_ends_the_term_and_dispatches_nothing() {
    let mut m = manager();
    let exec = ExecutorSpec {
        name: "e1".into(),
        address: "e1:1".into(),
        capacity: 4,
        labels: Default::default(),
        instance: 1,
    };
    let r = request(&mut m, 1, 1, Request::RegisterExecutor { spec: exec });
    let (io, _) = r.write.unwrap();
    m.on_write(ms(2), io, WriteOutcome::Written);
    m.ready();
    let r = request(
        &mut m,
        3,
        2,
        Request::Heartbeat {
            id: ExecutorId(1),
            seen: LeaderEpoch(1),
            tasks: vec![],
            ended: vec![],
            draining: false,
            fenced: false,
            held: vec![],
        },
    );
    assert!(matches!(r.answers[0].1, Ok(Reply::Heartbeat { known: true, .. })));
    let r = request(&mut m, 4, 3, Request::CreateJob { id: None, spec: spec("") });
    m.on_write(ms(5), r.write.unwrap().0, WriteOutcome::Written);
    m.ready();
    m.step(ms(600), Input::Tick);
    let r = m.ready();
    let (io, records) = r.write.expect("the pass writes the start");
    assert!(records.iter().any(|r| matches!(r, Record::JobMasterFence(..))));
    assert!(r.dispatches.is_empty(), "nothing dispatched before the write is taken");
    m.on_write(ms(601), io, WriteOutcome::Unknown("timeout".into()));
    let r = m.ready();
    assert!(r.dispatches.is_empty());
    assert!(r.step_down.is_some());
}

fn executor(name: &str, instance: u64) -> ExecutorSpec {
    ExecutorSpec { name: name.into(), address: format!("{name}:1"), capacity: 4, labels: Default::default(), instance }
}

fn beat(id: u64) -> Request {
    Request::Heartbeat {
        id: ExecutorId(id),
        seen: LeaderEpoch(1),
        tasks: vec![],
        ended: vec![],
        draining: false,
        fenced: false,
        held: vec![],
    }
}

/// The periodic pass jumps the queue of durable requests: it waits for the one write in flight, never for the
/// requests behind it. Guards the ordering rule of `Manager::run` (the leader-glue fix of `sim/regressions.rs`
/// seed 77196: sixty creates queued on the term's write lock, and the liveness check behind them all, declared an
/// executor offline 16.8 s after it was last heard, against a bound of 8.3 s). With the queue served first (shown
/// by reverting the order once): "the offline verdict comes before the sixty queued creates: [Job(JobRecord { ..
/// request: "c-0" .. })]".
#[test]
fn the_periodic_pass_waits_for_the_write_in_flight_only_not_for_queued_requests() {
    let mut m = manager();
    // Two executors (one alone expiring is not a mass eviction), both heard at 3 ms; only e2 keeps beating.
    for (to, name) in [(1, "e1"), (2, "e2")] {
        let r = request(&mut m, 1, to, Request::RegisterExecutor { spec: executor(name, to) });
        m.on_write(ms(2), r.write.unwrap().0, WriteOutcome::Written);
        m.ready();
    }
    for id in [1, 2] {
        let r = request(&mut m, 3, 10 + id, beat(id));
        assert!(matches!(r.answers[0].1, Ok(Reply::Heartbeat { known: true, .. })));
    }
    // A create's write stalls in the metastore; sixty more creates queue behind it.
    let r = request(&mut m, 9_000, 100, Request::CreateJob { id: None, spec: spec("held") });
    let (held, _) = r.write.expect("the first create writes");
    for n in 0..60 {
        let r = request(&mut m, 9_001, 200 + n, Request::CreateJob { id: None, spec: spec(&format!("c-{n}")) });
        assert!(r.write.is_none() && r.answers.is_empty(), "queued behind the write in flight");
    }
    assert_eq!(m.queued(), 60);
    // e2 still beats: heartbeats never wait.
    let r = request(&mut m, 9_500, 300, beat(2));
    assert!(matches!(r.answers[0].1, Ok(Reply::Heartbeat { known: true, .. })));
    // e1's TTL runs out at 10.003 s; the pass is due.
    m.step(ms(10_100), Input::Tick);
    assert!(m.ready().write.is_none(), "one write in flight at a time");
    m.on_write(ms(10_200), held, WriteOutcome::Written);
    let r = m.ready();
    let (_, records) = r.write.expect("the next write");
    assert!(
        records.iter().any(|r| matches!(r, Record::DeleteExecutor(ExecutorId(1)))),
        "the offline verdict comes before the sixty queued creates: {records:?}"
    );
    assert_eq!(m.queued(), 60, "no queued create was served before the pass");
}

fn job_master_beat(job: &JobId, epoch: Epoch) -> Request {
    let msg =
        crate::core::workers::Message { task: TaskId::job_master(job), master_epoch: Epoch(1), worker_epoch: epoch };
    Request::JobMaster { msg, status: None, progress: String::new(), last_error: None, wall: WallTime(0) }
}

/// A settling read that brings back a record older than the incarnation the bookkeeping holds (a write of this
/// term, the job's first create, landed after its own settling read and after the job started) leaves the job
/// waiting to start while its job master runs and checks in. That job master is told to stop (revoked), and the
/// job starts again once it is lost, never beside it. Before the fix the job master was accepted for ever: the job
/// waited for ever and its job master could place no worker (`sim/aimed_late.rs`, seed 600000 without the switch:
/// "job-0 did not end within 240s").
#[test]
fn a_job_master_its_reloaded_job_no_longer_names_is_revoked_and_the_job_starts_again_once_it_is_lost() {
    let (mut m, epoch, created) = dispatched_job("j1");
    // The first heartbeat makes the job running; that write is not applied, and the settling read finds the record
    // as the create wrote it (a record that names no incarnation, whatever put it there: the write fence keeps a
    // late create from landing over a newer record, so this is the last line behind it).
    let r = request(&mut m, 700, 4, job_master_beat(&id("j1"), epoch));
    let (io, _) = r.write.expect("running is written");
    m.on_write(ms(2_700), io, WriteOutcome::NotApplied("refused".into()));
    let (read, what) = m.ready().reads[0].clone();
    assert_eq!(what, Read::Job(id("j1")));
    m.on_read(ms(2_701), read, Ok(ReadResult::Job(Some(Ok(created)))));
    m.ready();
    assert_eq!(m.jobs().get(&id("j1")).unwrap().phase(), crate::core::job::Phase::Waiting);
    assert!(m.masters().get(&TaskId::job_master(&id("j1"))).unwrap().state.may_be_live());
    // Heard again: told to stop, not accepted.
    let r = request(&mut m, 3_000, 5, job_master_beat(&id("j1"), epoch));
    assert!(
        matches!(&r.answers[0].1, Ok(Reply::JobMaster { reply, .. }) if reply.verdict == WorkerVerdict::StaleWorker),
        "{:?}",
        r.answers
    );
    // Not started beside it while it may live; started again once it is lost (its TTL after it was last heard).
    for at in [3_500, 5_500, 7_500] {
        request(&mut m, at, 6, beat(1));
        m.step(ms(at + 1), Input::Tick);
        assert!(m.ready().write.is_none(), "nothing starts at {at} ms while the revoked incarnation may live");
    }
    request(&mut m, 8_100, 6, beat(1));
    m.step(ms(8_101), Input::Tick);
    let (io, records) = m.ready().write.expect("the job starts again");
    assert!(records.iter().any(|r| matches!(r, Record::JobMasterFence(_, e) if *e > epoch)), "{records:?}");
    m.on_write(ms(8_102), io, WriteOutcome::Written);
    assert_eq!(m.ready().dispatches.len(), 1);
}

/// A job with one executor (e1, 4 slots), its job master dispatched and not heard yet: the manager, the job
/// master's epoch, the job's record as its create wrote it.
fn dispatched_job(job: &str) -> (Manager, Epoch, JobRecord) {
    let mut m = manager();
    let r = request(&mut m, 1, 1, Request::RegisterExecutor { spec: executor("e1", 1) });
    m.on_write(ms(2), r.write.unwrap().0, WriteOutcome::Written);
    m.ready();
    request(&mut m, 3, 2, beat(1));
    let r = request(&mut m, 4, 3, Request::CreateJob { id: Some(id(job)), spec: spec("") });
    let (read, _) = r.reads[0].clone();
    m.on_read(ms(5), read, Ok(ReadResult::Tombstone(None)));
    let (io, records) = m.ready().write.expect("the create writes");
    let created = match &records[0] {
        Record::Job(j) => j.clone(),
        other => panic!("{other:?}"),
    };
    m.on_write(ms(6), io, WriteOutcome::Written);
    m.ready();
    m.step(ms(600), Input::Tick);
    let (io, _) = m.ready().write.expect("the pass writes the start");
    m.on_write(ms(601), io, WriteOutcome::Written);
    let epoch = m.ready().dispatches[0].epoch;
    (m, epoch, created)
}

/// As [`dispatched_job`], its job master online (its running state written).
fn running_job(job: &str) -> (Manager, Epoch) {
    let (mut m, epoch, _) = dispatched_job(job);
    let r = request(&mut m, 700, 4, job_master_beat(&id(job), epoch));
    let (io, _) = r.write.expect("running is written");
    m.on_write(ms(701), io, WriteOutcome::Written);
    m.ready();
    assert_eq!(m.jobs().get(&id(job)).unwrap().state(), JobState::Running);
    (m, epoch)
}

fn schedule(job: &str, worker: u64, master_epoch: Epoch) -> Request {
    Request::ScheduleTask(Schedule {
        task: TaskId::worker(&id(job), &format!("w{worker}")).unwrap(),
        job: id(job),
        master_epoch,
        epoch: Some(Epoch(master_epoch.0 * 1_000_000 + worker + 1)),
        cost: 1,
        selectors: vec![],
        resources: vec![],
    })
}

/// Design.md §5 rule 5: once a cancel is acknowledged the job starts nothing new, so its job master, still running
/// until the stop reaches it, may place no worker. Before the fix it could (swarm seed 1796502674: a worker placed
/// 1.7 s after the cancel was acknowledged started once its job master had stopped).
#[test]
fn a_job_whose_cancel_was_acknowledged_places_no_worker() {
    let (mut m, epoch) = running_job("j1");
    let r = request(&mut m, 800, 5, schedule("j1", 0, epoch));
    assert!(matches!(&r.answers[0].1, Ok(Reply::Placed { executor: ExecutorId(1), .. })), "{:?}", r.answers);
    let r = request(&mut m, 900, 6, Request::CancelJob { id: id("j1") });
    let (io, records) = r.write.expect("the cancel writes");
    assert!(matches!(&records[..], [Record::Job(j)] if j.state == JobState::Canceling), "{records:?}");
    m.on_write(ms(901), io, WriteOutcome::Written);
    assert!(m.ready().answers.iter().any(|(to, a)| *to == ReplyTo(6) && a.is_ok()), "the cancel is acknowledged");
    let r = request(&mut m, 1_000, 7, schedule("j1", 1, epoch));
    match &r.answers[0].1 {
        Err(Refusal::Job(e @ JobError::PlacesNoWorkers { state: JobState::Canceling, .. })) => {
            assert_eq!(e.to_string(), "job j1 is Canceling: its job master may place no new workers");
        }
        other => panic!("{other:?}"),
    }
    assert!(m.registry().placer().reservation(&TaskId::worker(&id("j1"), "w1").unwrap()).is_none(), "nothing reserved");
}

/// A job master says it finished before its task stops: its slots stay counted until its executor reports the
/// incarnation ended (or the reservation's window closes). Before the fix the leader gave them back on the job
/// master's word and placed on a full executor, which refused (swarm seed 1796448458).
#[test]
fn a_job_master_that_says_it_finished_holds_its_slots_until_its_executor_reports_it_ended() {
    let (mut m, epoch) = running_job("j1");
    let task = TaskId::job_master(&id("j1"));
    assert_eq!(m.registry().placer().reservation(&task), Some(ExecutorId(1)));
    let msg = crate::core::workers::Message { task: task.clone(), master_epoch: Epoch(1), worker_epoch: epoch };
    let r = request(
        &mut m,
        800,
        5,
        Request::JobMaster {
            msg,
            status: Some(WorkerStatus::Finished),
            progress: String::new(),
            last_error: None,
            wall: WallTime(0),
        },
    );
    if let Some((io, _)) = r.write {
        m.on_write(ms(801), io, WriteOutcome::Written);
        m.ready();
    }
    assert_eq!(m.jobs().get(&id("j1")).unwrap().state(), JobState::Finished);
    assert_eq!(m.registry().placer().reservation(&task), Some(ExecutorId(1)), "its slot is still held");
    assert_eq!(m.registry().placer().used(ExecutorId(1)), Some(1));
    // Its executor reports the incarnation ended: the slot is free.
    let ended = vec![crate::core::registry::EndedTask { task: task.clone(), epoch }];
    let r = request(
        &mut m,
        900,
        6,
        Request::Heartbeat {
            id: ExecutorId(1),
            seen: LeaderEpoch(1),
            tasks: vec![],
            ended,
            draining: false,
            fenced: false,
            held: vec![],
        },
    );
    assert!(matches!(r.answers[0].1, Ok(Reply::Heartbeat { known: true, .. })));
    assert_eq!(m.registry().placer().reservation(&task), None);
    assert_eq!(m.registry().placer().used(ExecutorId(1)), Some(0));
}

/// A job master's plain heartbeat is answered at once while an operation is in progress, unless that operation
/// touches its job: its job master has a deadline of its own, and a heartbeat held behind a slow write fenced a
/// healthy job master (swarm seed 1796457366). A message that may change durable state still waits its turn, and
/// a cancel is said only once it is durable.
#[test]
fn a_job_masters_heartbeat_does_not_wait_behind_a_write_about_another_job() {
    let (mut m, epoch) = running_job("j1");
    let msg = crate::core::workers::Message {
        task: TaskId::job_master(&id("j1")),
        master_epoch: Epoch(1),
        worker_epoch: epoch,
    };
    let heartbeat = |status| Request::JobMaster {
        msg: msg.clone(),
        status,
        progress: String::new(),
        last_error: None,
        wall: WallTime(0),
    };
    // Another job's create is in progress (its tombstone is being read).
    let r = request(&mut m, 800, 5, Request::CreateJob { id: Some(id("j2")), spec: spec("") });
    let (read, _) = r.reads[0].clone();
    let r = request(&mut m, 810, 6, heartbeat(None));
    assert!(
        matches!(&r.answers[..], [(ReplyTo(6), Ok(Reply::JobMaster { reply, cancel: false }))]
            if reply.verdict == WorkerVerdict::Accepted),
        "{:?}",
        r.answers
    );
    let r = request(&mut m, 820, 7, heartbeat(Some(WorkerStatus::Running)));
    assert_eq!(r.answers.len(), 1, "a running status is a heartbeat: {:?}", r.answers);
    // A status that ends the incarnation writes: it waits.
    let r = request(&mut m, 830, 8, heartbeat(Some(WorkerStatus::Finished)));
    assert!(r.answers.is_empty(), "{:?}", r.answers);
    assert_eq!(m.queued(), 1);
    m.on_read(ms(840), read, Ok(ReadResult::Tombstone(None)));
    // The finish joins the create's write (group commit: it touches another job).
    let (io, records) = m.ready().write.expect("the create writes, and the finish with it");
    assert!(matches!(&records[..], [Record::Job(c), Record::Job(j)]
        if c.id == id("j2") && j.id == id("j1") && j.state == JobState::Finished));
    m.on_write(ms(850), io, WriteOutcome::Written);
    let to: Vec<ReplyTo> = m.ready().answers.iter().map(|(to, _)| *to).collect();
    assert_eq!(to, [ReplyTo(5), ReplyTo(8)]);
}

#[test]
fn a_job_masters_heartbeat_waits_behind_a_write_about_its_own_job_and_hears_the_cancel_once_durable() {
    let (mut m, epoch) = running_job("j1");
    let msg = crate::core::workers::Message {
        task: TaskId::job_master(&id("j1")),
        master_epoch: Epoch(1),
        worker_epoch: epoch,
    };
    let r = request(&mut m, 800, 5, Request::CancelJob { id: id("j1") });
    let (io, _) = r.write.expect("the cancel writes");
    let r = request(
        &mut m,
        810,
        6,
        Request::JobMaster { msg, status: None, progress: String::new(), last_error: None, wall: WallTime(0) },
    );
    assert!(r.answers.is_empty(), "no cancel is said before it is durable: {:?}", r.answers);
    m.on_write(ms(820), io, WriteOutcome::Written);
    let r = m.ready();
    assert!(
        r.answers.iter().any(|(to, a)| *to == ReplyTo(6) && matches!(a, Ok(Reply::JobMaster { cancel: true, .. }))),
        "{:?}",
        r.answers
    );
}

/// Issue 14: a job master that fails retryably (its logic panicked) is started again after the job's backoff,
/// charged like a loss, its job still running; one that fails terminally fails its job.
#[test]
fn a_job_masters_retryable_failure_waits_out_the_backoff_and_a_terminal_one_fails_the_job() {
    let report = |epoch, retryable| {
        let msg = crate::core::workers::Message {
            task: TaskId::job_master(&id("j1")),
            master_epoch: Epoch(1),
            worker_epoch: epoch,
        };
        let status = WorkerStatus::Failed { message: "job master panicked: boom".into(), retryable };
        let wall = WallTime(1_700_000_000_000);
        Request::JobMaster { msg, status: Some(status), progress: String::new(), last_error: None, wall }
    };
    let (mut m, epoch) = running_job("j1");
    let r = request(&mut m, 800, 5, report(epoch, true));
    let (io, records) = r.write.expect("the end of the incarnation is written");
    assert!(
        matches!(&records[..], [Record::Job(j)] if j.state == JobState::Running && j.restarts == 1
            && j.failure.is_none() && j.executor.is_none()),
        "{records:?}"
    );
    // Users see why it restarts: the job master's failure is the job's last error, at the leader's wall time.
    let Record::Job(j) = &records[0] else { unreachable!() };
    let want = LastError {
        source: "j1".into(),
        message: "job master panicked: boom".into(),
        retryable: true,
        at: WallTime(1_700_000_000_000),
    };
    assert_eq!(j.last_error.as_deref(), Some(&want));
    m.on_write(ms(810), io, WriteOutcome::Written);
    let r = m.ready();
    assert!(r.answers.iter().any(|(to, _)| *to == ReplyTo(5)), "{:?}", r.answers);
    let job = m.jobs().get(&id("j1")).unwrap();
    assert_eq!(job.phase(), Phase::Waiting);
    let allowed = job.backoff().not_before().expect("the backoff is charged");
    assert!(allowed > ms(800), "{allowed:?}");
    // The same for a terminal failure fails the job with the job master's reason.
    let (mut m, epoch) = running_job("j1");
    let (_, records) = request(&mut m, 800, 5, report(epoch, false)).write.expect("written");
    assert!(
        matches!(&records[..], [Record::Job(j)] if j.state == JobState::Failed
            && j.failure.as_ref().is_some_and(|f| f.message == "job master panicked: boom")),
        "{records:?}"
    );
}

/// Issue 14: the last error a job got over (a worker's retryable failure) comes with its job master's heartbeats
/// and is kept in the job's record, written once per new error: a repeat writes nothing and is answered at once
/// even while another job's write is in progress; one from an older incarnation changes nothing.
#[test]
fn a_job_masters_last_error_is_persisted_once_per_new_error() {
    use crate::core::job::LastError;
    use crate::core::time::WallTime;
    let (mut m, epoch) = running_job("j1");
    let msg = |worker_epoch| crate::core::workers::Message {
        task: TaskId::job_master(&id("j1")),
        master_epoch: Epoch(1),
        worker_epoch,
    };
    let error = |message: &str| LastError {
        source: "j1/w0".into(),
        message: message.into(),
        retryable: true,
        at: WallTime(1_796_472_601_000),
    };
    let beat = |worker_epoch, e: &LastError| Request::JobMaster {
        msg: msg(worker_epoch),
        status: None,
        progress: String::new(),
        last_error: Some(e.clone()),
        wall: WallTime(0),
    };
    let r = request(&mut m, 800, 5, beat(epoch, &error("first")));
    assert!(r.answers.is_empty(), "answered once it is durable: {:?}", r.answers);
    let (io, records) = r.write.expect("a new last error is written");
    assert!(
        matches!(&records[..], [Record::Job(j)] if j.last_error.as_deref() == Some(&error("first")) && j.state == JobState::Running),
        "{records:?}"
    );
    m.on_write(ms(810), io, WriteOutcome::Written);
    assert!(m.ready().answers.iter().any(|(to, _)| *to == ReplyTo(5)));
    assert_eq!(m.jobs().get(&id("j1")).and_then(|j| j.last_error()), Some(&error("first")));
    // The same error again writes nothing, and is answered at once behind another job's operation.
    let r = request(&mut m, 820, 6, Request::CreateJob { id: Some(id("j2")), spec: spec("") });
    let (read, _) = r.reads[0].clone();
    let r = request(&mut m, 830, 7, beat(epoch, &error("first")));
    assert!(r.write.is_none() && r.answers.len() == 1, "{r:?}");
    // A new one waits for the operation in progress, then is written.
    let r = request(&mut m, 840, 8, beat(epoch, &error("second")));
    assert!(r.answers.is_empty(), "{:?}", r.answers);
    m.on_read(ms(850), read, Ok(ReadResult::Tombstone(None)));
    let (io, records) = m.ready().write.expect("the create writes, and the new last error with it");
    assert!(
        matches!(&records[..], [Record::Job(c), Record::Job(j)]
            if c.id == id("j2") && j.last_error.as_deref() == Some(&error("second"))),
        "{records:?}"
    );
    m.on_write(ms(870), io, WriteOutcome::Written);
    // An older incarnation's error changes nothing.
    let r = request(&mut m, 880, 9, beat(Epoch(epoch.0 - 1), &error("stale")));
    assert!(r.write.is_none(), "{r:?}");
    assert_eq!(m.jobs().get(&id("j1")).and_then(|j| j.last_error()), Some(&error("second")));
}

/// Design.md §5 rule 6: a worker is placed only where its job may run (the job's selectors), and on top of that
/// where its job master asks. Before the fix only the job master's own selectors counted (issue 14: "workers
/// ignore the job's selectors").
#[test]
fn workers_are_placed_by_their_jobs_selectors_and_their_own() {
    use crate::core::labels::Selector;
    let mut m = manager();
    for (to, zone) in [(1u64, "a"), (2, "b"), (3, "b")] {
        let mut spec = executor(&format!("e{to}"), to);
        spec.labels = [("zone".to_owned(), zone.to_owned()), ("n".to_owned(), to.to_string())].into();
        spec.capacity = 16;
        let r = request(&mut m, 1, to, Request::RegisterExecutor { spec });
        m.on_write(ms(2), r.write.unwrap().0, WriteOutcome::Written);
        m.ready();
        request(&mut m, 3, 10 + to, beat(to));
    }
    let mut job = spec("");
    job.selectors = vec![Selector::parse("zone=b").unwrap()];
    let r = request(&mut m, 4, 20, Request::CreateJob { id: Some(id("j1")), spec: job });
    let (read, _) = r.reads[0].clone();
    m.on_read(ms(5), read, Ok(ReadResult::Tombstone(None)));
    let (io, _) = m.ready().write.expect("the create writes");
    m.on_write(ms(6), io, WriteOutcome::Written);
    m.ready();
    m.step(ms(600), Input::Tick);
    let (io, _) = m.ready().write.expect("the pass writes the start");
    m.on_write(ms(601), io, WriteOutcome::Written);
    let epoch = m.ready().dispatches[0].epoch;
    let r = request(&mut m, 700, 21, job_master_beat(&id("j1"), epoch));
    m.on_write(ms(701), r.write.expect("running is written").0, WriteOutcome::Written);
    m.ready();
    // Eight workers, no selectors of their own: all in zone b (e2 or e3), never on e1.
    for w in 0..8 {
        let r = request(&mut m, 800 + w, 30 + w, schedule("j1", w, epoch));
        match &r.answers[0].1 {
            Ok(Reply::Placed { executor, .. }) => assert_ne!(*executor, ExecutorId(1), "w{w} placed in zone a"),
            other => panic!("w{w}: {other:?}"),
        }
    }
    // The job master narrows further: n=3 within zone b.
    let mut narrowed = schedule("j1", 8, epoch);
    if let Request::ScheduleTask(s) = &mut narrowed {
        s.selectors = vec![Selector::parse("n=3").unwrap()];
    }
    let r = request(&mut m, 900, 40, narrowed);
    assert!(matches!(&r.answers[0].1, Ok(Reply::Placed { executor: ExecutorId(3), .. })), "{:?}", r.answers);
    // A worker selector that contradicts the job's matches no executor: refused, saying so.
    let mut outside = schedule("j1", 9, epoch);
    if let Request::ScheduleTask(s) = &mut outside {
        s.selectors = vec![Selector::parse("zone=a").unwrap()];
    }
    let r = request(&mut m, 901, 41, outside);
    match &r.answers[0].1 {
        Err(Refusal::Placement(e)) => assert!(e.to_string().contains("zone"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// The job masters' share holds among the executors a job's selectors admit too: there its workers must run, so
/// job masters filling them would starve every such job for ever. Found by swarm seed 1796461625 once workers were
/// placed by their job's selectors: two jobs of zone a, whose one executor has 2 slots, each ran its job master
/// there and neither could place a worker.
#[test]
fn job_masters_leave_room_for_workers_among_the_executors_their_selectors_admit() {
    use crate::core::labels::Selector;
    let mut m = manager();
    for (to, zone, capacity) in [(1u64, "a", 2u32), (2, "b", 16)] {
        let mut spec = executor(&format!("e{to}"), to);
        spec.labels = [("zone".to_owned(), zone.to_owned())].into();
        spec.capacity = capacity;
        let r = request(&mut m, 1, to, Request::RegisterExecutor { spec });
        m.on_write(ms(2), r.write.unwrap().0, WriteOutcome::Written);
        m.ready();
        request(&mut m, 3, 10 + to, beat(to));
    }
    for (n, job) in ["j1", "j2"].into_iter().enumerate() {
        let mut s = spec("");
        s.selectors = vec![Selector::parse("zone=a").unwrap()];
        let r = request(&mut m, 4, 20 + n as u64, Request::CreateJob { id: Some(id(job)), spec: s });
        let (read, _) = r.reads[0].clone();
        m.on_read(ms(5), read, Ok(ReadResult::Tombstone(None)));
        let (io, _) = m.ready().write.expect("the create writes");
        m.on_write(ms(6), io, WriteOutcome::Written);
        m.ready();
    }
    m.step(ms(600), Input::Tick);
    let (io, _) = m.ready().write.expect("the pass writes a start");
    m.on_write(ms(601), io, WriteOutcome::Written);
    let r = m.ready();
    assert_eq!(r.dispatches.len(), 1, "one job master in zone a, not two: {:?}", r.dispatches);
    assert_eq!((r.dispatches[0].job.as_str(), r.dispatches[0].executor), ("j1", ExecutorId(1)));
    let waiting = m.jobs().get(&id("j2")).unwrap();
    assert_eq!(waiting.phase(), Phase::Waiting);
    let why = m.capacity(ms(602)).waiting;
    assert_eq!(why.len(), 1);
    assert_eq!((why[0].job.as_str(), why[0].admitted_share), ("j2", Some((1, 1))));
    let r = request(&mut m, 700, 30, Request::GetJob { id: id("j2"), include_config: false });
    let shown = format!("{:?}", r.answers[0].1);
    assert!(
        shown.contains(
            "waiting for a job-master slot among the 1 executors its selectors admit: job masters may hold \
                        half of their 2 slots, and hold 1"
        ),
        "{shown}"
    );
}

/// Creates job `job` in `project`, its write taken.
fn created_in(m: &mut Manager, now: u64, job: &str, project: &str) {
    let spec = JobSpec { project: crate::core::ids::Project::parse(project).unwrap(), ..spec("") };
    let r = request(m, now, now, Request::CreateJob { id: Some(id(job)), spec });
    let (read, _) = r.reads[0].clone();
    m.on_read(ms(now), read, Ok(ReadResult::Tombstone(None)));
    let (io, _) = m.ready().write.expect("the record is written");
    m.on_write(ms(now), io, WriteOutcome::Written);
    m.ready();
}

#[test]
fn job_calls_are_checked_against_the_jobs_project_and_listings_show_only_readable_projects() {
    use crate::core::auth::{authorize, Action, DeniedCode, Mode, Principal, Readable, Role};
    let mut m = manager();
    created_in(&mut m, 1, "a1", "a");
    created_in(&mut m, 2, "b1", "b");
    created_in(&mut m, 3, "d1", "default");
    // (request, the action the driver checks)
    let project = |p: &str| Some(crate::core::ids::Project::parse(p).unwrap());
    let table = [
        (Request::GetJob { id: id("a1"), include_config: false }, Some((Role::Read, project("a")))),
        (Request::CancelJob { id: id("b1") }, Some((Role::Submit, project("b")))),
        (Request::DeleteJob { id: id("d1"), wall: WallTime(0) }, Some((Role::Submit, project("default")))),
        (Request::GetJob { id: id("nope"), include_config: false }, None),
    ];
    for (r, want) in table {
        let got = m.action_of(&r);
        let want = want.map(|(need, project)| {
            let job = match &r {
                Request::GetJob { id, .. } | Request::CancelJob { id } | Request::DeleteJob { id, .. } => id.clone(),
                _ => unreachable!(),
            };
            Action::Job { job, need, project }
        });
        assert_eq!(got, want, "{r:?}");
    }
    // Project b's submitter: another project's job is not found, word for word; its own it may cancel.
    let b = Principal::parse_wire("user/bob b=submit").unwrap();
    let hidden = authorize(&b, &m.action_of(&Request::CancelJob { id: id("a1") }).unwrap(), Mode::Checked);
    assert_eq!(hidden.unwrap_err().code, DeniedCode::Hidden);
    assert!(authorize(&b, &m.action_of(&Request::CancelJob { id: id("b1") }).unwrap(), Mode::Checked).is_ok());
    // Listings: each caller sees its projects' jobs only.
    let listed = |m: &mut Manager, readable: Readable| {
        let filter =
            JobFilter { job_type: String::new(), state: None, after: None, size: 10, include_config: false, readable };
        match request(m, 10, 99, Request::ListJobs(filter)).answers.pop() {
            Some((_, Ok(Reply::Jobs { jobs, .. }))) => {
                jobs.iter().map(|j| j.id().as_str().to_owned()).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(listed(&mut m, crate::core::auth::readable(&b, Mode::Checked)), ["b1"]);
    let ops = Principal::parse_wire("user/ops *=read").unwrap();
    assert_eq!(listed(&mut m, crate::core::auth::readable(&ops, Mode::Checked)), ["a1", "b1", "d1"]);
    let only_a = crate::core::auth::readable(&ops, Mode::Checked).only(&project("a").unwrap());
    assert_eq!(listed(&mut m, only_a), ["a1"]);
    let b_asks_for_a = crate::core::auth::readable(&b, Mode::Checked).only(&project("a").unwrap());
    assert!(listed(&mut m, b_asks_for_a).is_empty(), "a filter never widens what a caller may read");
}

#[test]
fn a_listing_pages_from_its_token_through_readable_and_corrupt_jobs_each_once_in_order() {
    use crate::core::auth::Readable;
    use crate::core::job::CorruptRecord;
    let corrupt =
        |j: &str| (id(j), CorruptRecord { key: format!("jobs/{j}"), problem: "does not decode".into(), len: 3 });
    let snapshot = Snapshot { corrupt_jobs: vec![corrupt("b"), corrupt("h")], ..Snapshot::default() };
    let mut m = Manager::recover(ms(0), LeaderEpoch(1), policy(), Plants::default(), 7, snapshot);
    m.ready();
    for (i, j) in ["a", "c", "e", "g", "i"].into_iter().enumerate() {
        created_in(&mut m, i as u64 + 1, j, "default");
    }
    let page = |m: &mut Manager, after: Option<&str>, size: usize| {
        let filter = JobFilter {
            job_type: String::new(),
            state: None,
            after: after.map(id),
            size,
            include_config: false,
            readable: Readable::All,
        };
        match request(m, 10, 99, Request::ListJobs(filter)).answers.pop() {
            Some((_, Ok(Reply::Jobs { jobs, next }))) => (
                jobs.iter().map(|j| j.id().as_str().to_owned()).collect::<Vec<_>>(),
                next.map(|n| n.as_str().to_owned()),
            ),
            other => panic!("{other:?}"),
        }
    };
    // (after, size) → (ids, next token)
    type Row<'a> = (Option<&'a str>, usize, &'a [&'a str], Option<&'a str>);
    let table: [Row; 6] = [
        (None, 2, &["a", "b"], Some("b")),
        (Some("b"), 2, &["c", "e"], Some("e")),
        (Some("e"), 2, &["g", "h"], Some("h")),
        (Some("h"), 2, &["i"], None),
        (Some("d"), 3, &["e", "g", "h"], Some("h")),
        (Some("i"), 2, &[], None),
    ];
    for (after, size, ids, next) in table {
        let want = (ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(), next.map(str::to_owned));
        assert_eq!(page(&mut m, after, size), want, "after {after:?}, size {size}");
    }
}

/// Three executors e1..e3 of `capacity` slots, heard from, and job j1 running (its job master checked in): the
/// manager at 701 ms and the job master's epoch.
fn job_running_on_three_executors(capacity: u32) -> (Manager, Epoch) {
    let mut m = manager();
    for to in 1u64..=3 {
        let mut spec = executor(&format!("e{to}"), to);
        spec.capacity = capacity;
        let r = request(&mut m, 1, to, Request::RegisterExecutor { spec });
        m.on_write(ms(2), r.write.unwrap().0, WriteOutcome::Written);
        m.ready();
        request(&mut m, 3, 10 + to, beat(to));
    }
    let r = request(&mut m, 4, 20, Request::CreateJob { id: Some(id("j1")), spec: spec("") });
    let (read, _) = r.reads[0].clone();
    m.on_read(ms(5), read, Ok(ReadResult::Tombstone(None)));
    let (io, _) = m.ready().write.expect("the create writes");
    m.on_write(ms(6), io, WriteOutcome::Written);
    m.ready();
    m.step(ms(600), Input::Tick);
    let (io, _) = m.ready().write.expect("the pass writes the start");
    m.on_write(ms(601), io, WriteOutcome::Written);
    let epoch = m.ready().dispatches[0].epoch;
    let r = request(&mut m, 700, 21, job_master_beat(&id("j1"), epoch));
    m.on_write(ms(701), r.write.expect("running is written").0, WriteOutcome::Written);
    m.ready();
    (m, epoch)
}

/// Worker `worker` of j1 asking to be placed with its scratch directory `resource`.
fn with_scratch(epoch: Epoch, worker: u64, resource: &str) -> Request {
    let mut r = schedule("j1", worker, epoch);
    if let Request::ScheduleTask(s) = &mut r {
        s.resources = vec![ResourcePin { resource: resource.to_owned(), executor: None }];
    }
    r
}

/// A pinned worker whose executor cannot take it waits at most the pin wait: then its resource is given up (told
/// to its job master as waited out) and it is placed elsewhere; the wait starts again for the new pin.
#[test]
fn a_pin_the_executor_cannot_honour_is_given_up_after_the_pin_wait() {
    let (mut m, epoch) = job_running_on_three_executors(2);
    let placed = |r: &Ready| match &r.answers[0].1 {
        Ok(Reply::Placed { executor, lost, .. }) => (*executor, lost.clone()),
        other => panic!("{other:?}"),
    };
    let (first, _) = placed(&request(&mut m, 800, 30, with_scratch(epoch, 0, "j1/w0/scratch")));
    // Its executor is full: it reports two tasks of its capacity of two running (the others report nothing).
    let full = |m: &mut Manager, at: u64, n: u64| {
        for e in 1..=3u64 {
            let mut b = beat(e);
            if let Request::Heartbeat { tasks, .. } = &mut b {
                if ExecutorId(e) == first {
                    *tasks = ["other/w0", "other/w1"]
                        .iter()
                        .map(|t| ReportedTask {
                            task: TaskId::parse(t).unwrap(),
                            kind: TaskKind::Worker,
                            epoch: Epoch(1),
                            cost: 1,
                        })
                        .collect();
                }
            }
            request(m, at, 100 + 10 * n + e, b);
        }
        let r = request(m, at, 40 + n, with_scratch(epoch, 0, "j1/w0/scratch"));
        r.answers[0].1.clone()
    };
    assert!(matches!(full(&mut m, 900, 0), Err(Refusal::Placement(PlacementError::PinnedFull { .. }))));
    assert!(matches!(full(&mut m, 30_000, 1), Err(Refusal::Placement(PlacementError::PinnedFull { .. }))));
    // 60 s after the first refusal: given up, placed elsewhere, told.
    let (elsewhere, lost) = match full(&mut m, 60_900, 2) {
        Ok(Reply::Placed { executor, lost, .. }) => (executor, lost),
        other => panic!("{other:?}"),
    };
    assert_ne!(elsewhere, first);
    let want = vec![LostResource {
        resource: "j1/w0/scratch".into(),
        holder: Some(format!("e{}", first.0)),
        waited_out: true,
    }];
    assert_eq!(lost, want);
}

/// A worker naming a local resource is placed again where the resource went with its first placement, while that
/// executor is online; once it drains (or goes offline) it may go anywhere; another job's resource is refused.
#[test]
fn a_worker_goes_back_to_the_executor_holding_its_resource_while_that_executor_serves() {
    let (mut m, epoch) = job_running_on_three_executors(16);
    let with_scratch = |worker: u64, resource: &str| {
        let mut r = schedule("j1", worker, epoch);
        if let Request::ScheduleTask(s) = &mut r {
            s.resources = vec![ResourcePin { resource: resource.to_owned(), executor: None }];
        }
        r
    };
    let placed = |r: &Ready| match &r.answers[0].1 {
        Ok(Reply::Placed { executor, .. }) => *executor,
        other => panic!("{other:?}"),
    };
    let first = placed(&request(&mut m, 800, 30, with_scratch(0, "j1/w0/scratch")));
    // Least-loaded placement would spread the next ones; the resource holds w0 where it is, every time.
    for n in 0..4 {
        assert_eq!(placed(&request(&mut m, 801 + n, 31 + n, with_scratch(0, "j1/w0/scratch"))), first);
    }
    // The next periodic pass writes where it is (the placement did not wait for a write).
    m.step(ms(1_200), Input::Tick);
    let (io, records) = m.ready().write.expect("the pass writes the resource");
    let resource = Record::Resource { resource: "j1/w0/scratch".into(), held: Held::On(first) };
    assert!(records.contains(&resource), "{records:?}");
    m.on_write(ms(1_201), io, WriteOutcome::Written);
    m.ready();
    // The job shows where its worker's resource lives, and the executors how many they hold.
    let r = request(&mut m, 805, 36, Request::GetJob { id: id("j1"), include_config: false });
    let want = vec![ResourcePlace {
        worker: "w0".into(),
        name: "scratch".into(),
        executor: first,
        executor_name: Some(format!("e{}", first.0)),
    }];
    assert!(
        matches!(&r.answers[0].1, Ok(Reply::Job(JobView::Job { resources, .. })) if *resources == want),
        "{:?}",
        r.answers
    );
    let r = request(&mut m, 806, 37, Request::ListExecutors);
    let Ok(Reply::Executors(list)) = &r.answers[0].1 else { panic!("{:?}", r.answers) };
    let held: Vec<(ExecutorId, u32)> = list.iter().map(|u| (u.view.record.id, u.resources)).collect();
    assert_eq!(held, (1..=3).map(|e| (ExecutorId(e), u32::from(ExecutorId(e) == first))).collect::<Vec<_>>());
    // Another job's resource is not this job master's to name.
    let r = request(&mut m, 810, 40, with_scratch(1, "j2/w1/scratch"));
    assert!(matches!(&r.answers[0].1, Err(Refusal::InvalidArgument { field: "resources", .. })), "{:?}", r.answers);
    // Its executor drains: the resource goes with it, and w0 is placed elsewhere.
    let mut draining = beat(first.0);
    if let Request::Heartbeat { draining: d, .. } = &mut draining {
        *d = true;
    }
    request(&mut m, 820, 41, draining);
    let r = request(&mut m, 820, 43, Request::GetJob { id: id("j1"), include_config: false });
    assert!(
        matches!(&r.answers[0].1, Ok(Reply::Job(JobView::Job { resources, .. })) if resources.is_empty()),
        "the note went with the drain: {:?}",
        r.answers
    );
    // Placed elsewhere, told that its resource was lost with the executor that held it, at every placement until
    // an incarnation placed since runs.
    let lost = vec![LostResource {
        resource: "j1/w0/scratch".into(),
        holder: Some(format!("e{}", first.0)),
        waited_out: false,
    }];
    let again = |m: &mut Manager, at: u64, n: u64| {
        let mut r = with_scratch(0, "j1/w0/scratch");
        if let Request::ScheduleTask(s) = &mut r {
            s.epoch = Some(Epoch(epoch.0 * 1_000_000 + n));
        }
        match request(m, at, 42 + n, r).answers.remove(0).1 {
            Ok(Reply::Placed { executor, lost, .. }) => (executor, lost),
            other => panic!("{other:?}"),
        }
    };
    let (elsewhere, told) = again(&mut m, 821, 7);
    assert_ne!(elsewhere, first);
    assert_eq!(told, lost);
    assert_eq!(again(&mut m, 822, 8).1, lost, "said again: the worker has not run since");
    // The loss is durable: the next pass writes it (a new term tells it too).
    m.step(ms(1_800), Input::Tick);
    let (io, records) = m.ready().write.expect("the pass writes the loss");
    assert!(records.contains(&Record::Resource { resource: "j1/w0/scratch".into(), held: Held::Lost }), "{records:?}");
    m.on_write(ms(1_801), io, WriteOutcome::Written);
    m.ready();
    // A report of an incarnation older than the first placed since the loss changes nothing; one placed since ends it.
    let running = |e: u64| {
        let mut b = beat(elsewhere.0);
        if let Request::Heartbeat { tasks, .. } = &mut b {
            *tasks = vec![ReportedTask {
                task: TaskId::parse("j1/w0").unwrap(),
                kind: TaskKind::Worker,
                epoch: Epoch(epoch.0 * 1_000_000 + e),
                cost: 1,
            }];
        }
        b
    };
    request(&mut m, 1_900, 50, running(6));
    assert_eq!(again(&mut m, 1_901, 9).1, lost);
    request(&mut m, 1_902, 51, running(7));
    let (there, told) = again(&mut m, 1_903, 10);
    assert!(told.is_empty(), "{told:?}");
    assert_eq!(there, elsewhere, "pinned where it went");
    m.step(ms(2_400), Input::Tick);
    let (_, records) = m.ready().write.expect("the pass writes where it is now");
    assert!(
        records.contains(&Record::Resource { resource: "j1/w0/scratch".into(), held: Held::On(elsewhere) }),
        "{records:?}"
    );
}

/// A new term keeps the resource records of the jobs and executors it knows, and deletes the others' at its first
/// write.
#[test]
fn a_new_term_drops_the_resource_records_of_jobs_and_executors_it_does_not_know() {
    let snapshot = Snapshot {
        resources: vec![("gone/w0/scratch".into(), Held::On(ExecutorId(4))), ("other/w1/scratch".into(), Held::Lost)],
        ..Snapshot::default()
    };
    let mut m = Manager::recover(ms(0), LeaderEpoch(2), policy(), Plants::default(), 7, snapshot);
    m.ready();
    m.step(ms(600), Input::Tick);
    let (_, records) = m.ready().write.expect("the first pass deletes the stale records");
    for r in ["gone/w0/scratch", "other/w1/scratch"] {
        assert!(records.contains(&Record::Resource { resource: r.into(), held: Held::Gone }), "{records:?}");
    }
}
