//! A throwaway etcd cluster of real `etcd` processes on loopback (the `etcd` binary on PATH; Debian: etcd-server),
//! for the real-process tests that fault etcd itself: members are killed and started again on the same ports and
//! data directories.
//!
//! Every member logs to its own file next to its data directory. Dropping the [`EtcdCluster`] SIGKILLs every member
//! still running; when the test failed, it first prints the tail of each log and keeps the directory.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::{hold_ports, tail, unique_suffix, LOG_TAIL_LINES, POLL};

/// The deadline of one HTTP call to a member (`/health`, `/v3/maintenance/status`).
const HTTP_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest HTTP answer read from a member.
const HTTP_MAX_BYTES: u64 = 64 * 1024;
/// etcd's raft timing: its defaults, written out. A shared 2-core machine can stall a member for a few hundred
/// milliseconds; a shorter election timeout would make etcd change leaders by itself, and every etcd leader change
/// extends every lease (the masters' election leases included) by the election timeout.
const HEARTBEAT_INTERVAL_MS: &str = "100";
const ELECTION_TIMEOUT_MS: &str = "1000";

/// One member: its name, its client and peer addresses (`127.0.0.1:<port>`), its data directory and log.
pub struct EtcdMember {
    pub name: String,
    pub client: String,
    pub peer: String,
    pub data: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl EtcdMember {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A member's `/v3/maintenance/status` answer, as far as it is read here (uint64s are strings in etcd's JSON).
#[derive(Debug, Deserialize)]
struct Status {
    header: StatusHeader,
    leader: String,
}

#[derive(Debug, Deserialize)]
struct StatusHeader {
    member_id: String,
}

/// The members of one etcd cluster.
pub struct EtcdCluster {
    pub dir: PathBuf,
    pub members: Vec<EtcdMember>,
    /// `--initial-cluster`: every member's name and peer URL.
    initial_cluster: String,
    /// `--initial-cluster-token`: unique per run.
    token: String,
}

impl EtcdCluster {
    /// Starts `size` members (`etcd0`, `etcd1`, ...) on free loopback ports, with data directories in a fresh
    /// temporary directory named after `label`. Returns at once: see [`EtcdCluster::wait_healthy`].
    pub fn start(label: &str, size: usize) -> EtcdCluster {
        let run = unique_suffix();
        let dir = std::env::temp_dir().join(format!("foreman-etcd-{label}-{run}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // All ports are held at once so they differ; each is released just before its member binds it.
        let listeners = hold_ports(2 * size);
        let address = |i: usize| listeners[i].local_addr().expect("bound address").to_string();
        let members: Vec<EtcdMember> = (0..size)
            .map(|i| EtcdMember {
                name: format!("etcd{i}"),
                client: address(2 * i),
                peer: address(2 * i + 1),
                data: dir.join(format!("etcd{i}.data")),
                log: dir.join(format!("etcd{i}.log")),
                child: None,
            })
            .collect();
        drop(listeners);
        let initial_cluster =
            members.iter().map(|m| format!("{}=http://{}", m.name, m.peer)).collect::<Vec<_>>().join(",");
        let mut c = EtcdCluster { dir, members, initial_cluster, token: format!("foreman-{label}-{run}") };
        for i in 0..size {
            c.spawn(i);
        }
        eprintln!(
            "etcd cluster: {}; data and logs in {}",
            c.members.iter().map(|m| format!("{}={}", m.name, m.client)).collect::<Vec<_>>().join(" "),
            c.dir.display()
        );
        c
    }

    /// The client endpoints, comma separated (`--etcd` of `foreman master`).
    pub fn endpoints(&self) -> String {
        self.members.iter().map(|m| m.client.as_str()).collect::<Vec<_>>().join(",")
    }

    /// Starts (or restarts, with the same data directory and ports) member `i`, appending to its log. A member
    /// whose data directory exists rejoins with what it holds; the `--initial-cluster*` flags only matter the
    /// first time.
    pub fn spawn(&mut self, i: usize) {
        let (initial_cluster, token) = (self.initial_cluster.clone(), self.token.clone());
        let m = &mut self.members[i];
        assert!(m.child.is_none(), "{} is already running", m.name);
        let log = File::options().create(true).append(true).open(&m.log).expect("open the etcd log");
        let (client, peer) = (format!("http://{}", m.client), format!("http://{}", m.peer));
        let data = m.data.to_string_lossy().into_owned();
        let child = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir", &data])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &token])
            .args(["--heartbeat-interval", HEARTBEAT_INTERVAL_MS, "--election-timeout", ELECTION_TIMEOUT_MS])
            // A member coming back must not depose a healthy leader by campaigning with a higher term.
            .arg("--pre-vote")
            .args(["--log-level", "warn", "--logger", "zap"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start etcd ({e}); is it installed? (Debian: apt-get install etcd-server)")
            });
        m.child = Some(child);
    }

    /// SIGKILLs member `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Fails the test if a member exited on its own.
    pub fn assert_running(&mut self) {
        for m in &mut self.members {
            if let Some(child) = m.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("{} exited on its own: {status}; its log:\n{}", m.name, tail(&m.log, LOG_TAIL_LINES));
                }
            }
        }
    }

    /// Polls the `/health` of every running member until all say healthy (each is part of a cluster with a
    /// leader), for at most `max`.
    pub async fn wait_healthy(&mut self, max: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            self.assert_running();
            let mut last = String::new();
            for m in self.members.iter().filter(|m| m.is_running()) {
                match http(&m.client, "GET /health HTTP/1.0\r\n\r\n").await {
                    Ok(body) if body.contains(r#""health":"true""#) => {}
                    Ok(body) => last = format!("{}: {body}", m.name),
                    Err(e) => last = format!("{}: {e}", m.name),
                }
            }
            if last.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= max {
                return Err(format!("etcd not healthy within {max:?}: {last}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The member that leads etcd's raft group now, as the running members report it.
    pub async fn leader(&self) -> Option<usize> {
        let mut ids = vec![];
        let mut leader = None;
        for (i, m) in self.members.iter().enumerate().filter(|(_, m)| m.is_running()) {
            let request = "POST /v3/maintenance/status HTTP/1.0\r\nContent-Type: application/json\r\n\
                           Content-Length: 2\r\n\r\n{}";
            let Ok(body) = http(&m.client, request).await else { continue };
            let Ok(status) = serde_json::from_str::<Status>(&body) else { continue };
            ids.push((i, status.header.member_id));
            leader = Some(status.leader);
        }
        let leader = leader?;
        ids.into_iter().find(|(_, id)| *id == leader).map(|(i, _)| i)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if failed {
            for m in &self.members {
                eprintln!("---- last lines of {} ({}) ----\n{}", m.name, m.log.display(), tail(&m.log, LOG_TAIL_LINES));
            }
            eprintln!("(etcd data and logs kept in {})", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sends one HTTP/1.0 request to `address` and returns the body of a 200 answer (off the async workers: the
/// socket blocks, within [`HTTP_TIMEOUT`]).
async fn http(address: &str, request: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let (address, request) = (address.to_owned(), request.to_owned());
    let answer = tokio::task::spawn_blocking(move || {
        let address: std::net::SocketAddr = address.parse().map_err(|e| format!("{address}: {e}"))?;
        let mut stream = std::net::TcpStream::connect_timeout(&address, HTTP_TIMEOUT).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(HTTP_TIMEOUT)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(HTTP_TIMEOUT)).map_err(|e| e.to_string())?;
        stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream.take(HTTP_MAX_BYTES).read_to_string(&mut answer).map_err(|e| e.to_string())?;
        Ok::<String, String>(answer)
    })
    .await
    .map_err(|e| format!("the blocking task: {e}"))??;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(|| format!("not an HTTP answer: {answer}"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_owned());
    }
    Ok(body.to_owned())
}
