//! Which of a job's logs a reader is shown: one choice for the master that reads a worker's output and for the CLI
//! that follows every worker, so that the two never show different incarnations.

use crate::rpc::pb;

/// The incarnation of each worker a reader of a job's logs is shown, among those the executors hold (`sources`,
/// as `JobLogs` lists them): of every worker (only `worker`, when given) the incarnation `epoch`, or the newest
/// held when `epoch` is 0, with the executor holding it (the first in `sources` if two hold the same one); the
/// workers in their natural order (`w2` before `w10`). The master that reads a worker's output and the CLI that
/// follows every worker both choose with it, so they never show different incarnations.
pub fn shown<'a>(sources: &'a [pb::LogSource], worker: Option<&str>, epoch: u64) -> Vec<&'a pb::LogSource> {
    let mut by: std::collections::BTreeMap<(u64, &str), (u64, &pb::LogSource)> = Default::default();
    for s in sources {
        let Some(i) = s.incarnation.as_ref() else { continue };
        if worker.is_some_and(|w| w != i.worker) || epoch != 0 && i.epoch != epoch {
            continue;
        }
        let natural = i.worker.strip_prefix('w').and_then(|n| n.parse::<u64>().ok()).unwrap_or(u64::MAX);
        let chosen = by.entry((natural, i.worker.as_str())).or_insert((i.epoch, s));
        if i.epoch > chosen.0 {
            *chosen = (i.epoch, s);
        }
    }
    by.into_values().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(worker: &str, epoch: u64, executor: u32) -> pb::LogSource {
        pb::LogSource {
            incarnation: Some(pb::LogIncarnation { worker: worker.into(), epoch, ..Default::default() }),
            executor_id: executor.into(),
            executor_name: format!("e{executor}"),
        }
    }

    fn picked(s: &[pb::LogSource], worker: Option<&str>, epoch: u64) -> Vec<(String, u64, u64)> {
        shown(s, worker, epoch)
            .into_iter()
            .map(|s| s.incarnation.as_ref().map(|i| (i.worker.clone(), i.epoch, s.executor_id)).unwrap())
            .collect()
    }

    #[test]
    fn each_worker_is_shown_its_newest_or_asked_incarnation_in_natural_order() {
        let s = [source("w10", 1, 1), source("w2", 3, 1), source("w2", 5, 2), source("w2", 4, 3)];
        let w = |w: &str, e, x| (w.to_owned(), e, x);
        assert_eq!(picked(&s, None, 0), [w("w2", 5, 2), w("w10", 1, 1)]);
        assert_eq!(picked(&s, Some("w10"), 0), [w("w10", 1, 1)]);
        assert_eq!(picked(&s, Some("w2"), 4), [w("w2", 4, 3)]);
        assert_eq!(picked(&s, Some("w2"), 9), []);
        assert_eq!(picked(&s, Some("w3"), 0), []);
        // One incarnation held twice: the first listed.
        let twice = [source("w0", 2, 4), source("w0", 2, 1)];
        assert_eq!(picked(&twice, None, 0), [w("w0", 2, 4)]);
    }
}
