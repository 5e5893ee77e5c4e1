//! Design.md §5 rule 2, fenced messages: no receiver accepts a message from an older epoch than one it already
//! accepted from the same sender, judged by the core's [`FencedEpochs`] over the recorder's story. The messages
//! and their receivers, from what the nodes report accepting:
//! - the leader's, at each executor process: registration replies and heartbeat acknowledgements (the leader
//!   epoch they carry) and dispatches (the leader epoch they were placed under; a task started is a dispatch
//!   accepted);
//! - a job master's heartbeats and status reports at the leader, per term (the job master's incarnation);
//! - a worker's heartbeats and status reports at its job master, per job-master incarnation (the worker's).
//!
//! A process remembers nothing once it is killed or restarted: its receivers start afresh.

use foreman::core::invariants::{FencedEpochs, Receiver, Sender, Violation};
use foreman::executor::ExecutorObservation;
use foreman::master::Observation;

use super::Events;
use crate::cluster::Seen;

/// Rule 2 over the whole run: every receiver's accepted epochs, per sender, never go back.
pub fn fenced_messages(events: &Events) -> Result<(), Violation> {
    let mut fenced = FencedEpochs::default();
    for (at, node, seen) in events {
        let executor = || Receiver::Executor { node: node.clone() };
        match seen {
            Seen::Exec(ExecutorObservation::Registered { leader_epoch, .. }) => {
                fenced.on_accepted(*at, &executor(), &Sender::Leader, leader_epoch.0, "a registration")?;
            }
            Seen::Exec(ExecutorObservation::HeartbeatAcked { leader_epoch, .. }) => {
                fenced.on_accepted(*at, &executor(), &Sender::Leader, leader_epoch.0, "a heartbeat acknowledgement")?;
            }
            Seen::Exec(ExecutorObservation::TaskStarted { task, epoch, leader_epoch }) => {
                let what = format!("a dispatch of {task} epoch {epoch}");
                fenced.on_accepted(*at, &executor(), &Sender::Leader, leader_epoch.0, &what)?;
            }
            Seen::Exec(ExecutorObservation::WorkerHeard { master, master_epoch, task, epoch }) => {
                let receiver = Receiver::JobMaster { node: node.clone(), task: master.clone(), epoch: *master_epoch };
                fenced.on_accepted(*at, &receiver, &Sender::Task(task.to_string()), epoch.0, "a message")?;
            }
            Seen::Master(Observation::JobMasterHeard { leader_epoch, task, epoch }) => {
                let receiver = Receiver::Leader { master: node.clone(), epoch: *leader_epoch };
                fenced.on_accepted(*at, &receiver, &Sender::Task(task.to_string()), epoch.0, "a message")?;
            }
            Seen::Killed | Seen::Restarted => fenced.on_node_gone(node),
            _ => {}
        }
    }
    Ok(())
}
