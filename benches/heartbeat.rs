//! Heartbeat throughput of the master on one core, side by side with the limit (issue 17: the master's rate at least
//! 0.7 of a bare tonic echo's), and what mutual TLS costs per heartbeat (issue 15).
//!
//! Run with `scripts/with-etcd cargo bench --bench heartbeat` (production build; the master campaigns in a real
//! etcd, whose address `scripts/with-etcd` sets in `FOREMAN_TEST_ETCD`).
//!
//! The master under test is the real one: `Master::run` (election in etcd, the leader's term driver and its job
//! manager) behind `MasterService` on a tonic server, as `foreman master` serves it, on a thread of its own with a
//! current-thread runtime (one core), pinned to the first CPU this process may use. The echo is a tonic server on a
//! thread of the same kind whose `Discovery/Heartbeat` answers a fixed `HeartbeatResponse`: the same messages
//! decoded and encoded, the same transport, nothing else. The load generator is gRPC written on `h2` directly (a
//! 5-byte prefix and the prost message; `grpc-status` read from the trailers), on the main thread with a
//! current-thread runtime pinned to the second CPU: tonic's own client costs more per call than the server, so it
//! would measure itself.
//!
//! 1,024 executors are registered first (`RegisterExecutor`, through the leader's job manager into etcd), and every
//! heartbeat is one of a registered executor; each must be accepted (`grpc-status` 0 and verdict `ACCEPTED`): any
//! other answer is printed and fails the run. Two shapes: 1,024 connections with one heartbeat in flight each (an
//! executor per connection, as a cluster has them), and 4 connections with 256 in flight each. For each: the
//! heartbeats per second of the master and of the echo, their ratio, and the server thread's CPU time per
//! heartbeat (its thread CPU clock over the measured window) with how busy each core was. The master and the echo
//! run each shape in three interleaved rounds (the machine may be shared), and the best round of each is printed
//! with every round's ratio.
//!
//! Then the same master path with mutual TLS on (certificates made as `foreman tls init` makes them, in a
//! temporary directory; each connection presents an executor's certificate, and the master checks every call's
//! caller against it): heartbeats per second and CPU per heartbeat with TLS against the plain-text master's of the
//! first part. With TLS each connection may heartbeat only for its own executor, so in the 4-connection shape the
//! 256 heartbeats in flight on a connection are all its executor's.
//!
//! The bench master's executors have an offline TTL of 60 s (the default is 10 s), so that the executors stay
//! online while the echo runs its shape: the TTL is only compared on the leader's periodic check, never on the
//! heartbeat path measured here. Heartbeats carry no running tasks.
//!
//! `--quick` (CI, a debug build: `scripts/with-etcd cargo test --bench heartbeat -- --quick`): a short warm-up and
//! under a second of measurement per shape; it checks that every heartbeat is accepted, and its figures are only
//! printed.

#[cfg(not(madsim))]
mod bench {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::{BufMut, Bytes, BytesMut};
    use prost::Message;
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::sync::{mpsc, oneshot};
    use tonic::transport::server::TcpIncoming;
    use tonic::{Request, Response, Status};

    use foreman::config::MasterConfig;
    use foreman::core::auth::Principal;
    use foreman::master::{Master, MasterService};
    use foreman::meta::MetaStore;
    use foreman::rpc::pb;

    /// Executors registered before any heartbeat.
    const EXECUTORS: usize = 1_024;
    /// Registrations in flight at once (the leader batches them into its metastore writes).
    const REGISTER_IN_FLIGHT: usize = 64;
    /// Connections opened at once while a shape sets up.
    const CONNECT_IN_FLIGHT: usize = 64;
    /// How long the first registration may wait for the master to lead (campaign, recovery).
    const LEAD_DEADLINE: Duration = Duration::from_secs(30);
    /// A call with no answer within this fails the run rather than hanging it.
    const CALL_TIMEOUT: Duration = Duration::from_secs(10);
    /// The most distinct failure texts kept; the rest are counted together.
    const FAILURE_KINDS_MAX: usize = 16;
    /// The bench master's executor offline TTL (see the module documentation).
    const OFFLINE_TTL: Duration = Duration::from_secs(60);
    /// How long a server may take to stop (the master gives its election lease back first).
    const STOP_DEADLINE: Duration = Duration::from_secs(10);
    /// The bench master's name, and the principal its certificate names.
    const MASTER_NAME: &str = "bench";

    const HEARTBEAT_PATH: &str = "/foreman.v1.Discovery/Heartbeat";
    const REGISTER_PATH: &str = "/foreman.v1.Discovery/RegisterExecutor";

    // why: a benchmark measures wall time; nothing here runs in the simulator.
    #[allow(clippy::disallowed_methods)]
    fn clock() -> std::time::Instant {
        std::time::Instant::now()
    }

    /// The CPU time of the calling thread.
    fn thread_cpu() -> Duration {
        foreman::clock::thread_cpu()
    }

    /// The first two CPUs this process may run on: the server's and the load generator's.
    fn two_cpus() -> Option<(usize, usize)> {
        let set = rustix::thread::sched_getaffinity(None).ok()?;
        let mut cpus = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&i| set.is_set(i));
        Some((cpus.next()?, cpus.next()?))
    }

    /// Pins the calling thread to `cpu`.
    fn pin(cpu: Option<usize>) {
        if let Some(cpu) = cpu {
            let mut set = rustix::thread::CpuSet::new();
            set.set(cpu);
            if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
                eprintln!("could not pin a thread to cpu {cpu}: {e}");
            }
        }
    }

    /// A shape of the load: connections, and heartbeats in flight on each.
    #[derive(Clone, Copy)]
    struct Shape {
        name: &'static str,
        connections: usize,
        in_flight: usize,
    }

    const SHAPES: [Shape; 2] = [
        Shape { name: "1,024 connections x 1 in flight", connections: 1_024, in_flight: 1 },
        Shape { name: "4 connections x 256 in flight", connections: 4, in_flight: 256 },
    ];

    // ---- the servers under test ----

    /// What a server thread serves.
    enum Kind {
        /// The real master over etcd at `etcd`, of cluster `cluster`.
        Master { etcd: String, cluster: String },
        /// A Discovery service whose Heartbeat answers `reply`.
        Echo { reply: pb::HeartbeatResponse },
    }

    /// A server on a thread of its own (one current-thread runtime), asked for its thread's CPU time over a
    /// channel that the thread itself answers.
    struct Server {
        addr: SocketAddr,
        cpu: mpsc::UnboundedSender<oneshot::Sender<Duration>>,
        stop: Option<oneshot::Sender<()>>,
        /// Sent by the thread once its runtime is gone.
        done: Option<oneshot::Receiver<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Server {
        /// Starts a thread named `name` (what `perf report --comm` filters on) serving `kind`.
        fn start(name: &str, kind: Kind, cpu: Option<usize>) -> Result<Server, String> {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<SocketAddr, String>>();
            let (cpu_tx, mut cpu_rx) = mpsc::unbounded_channel::<oneshot::Sender<Duration>>();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    pin(cpu);
                    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("cannot build the server's runtime: {e}")));
                            return;
                        }
                    };
                    rt.block_on(async move {
                        tokio::spawn(async move {
                            while let Some(ask) = cpu_rx.recv().await {
                                let _ = ask.send(thread_cpu());
                            }
                        });
                        match kind {
                            Kind::Master { etcd, cluster } => serve_master(&etcd, &cluster, ready_tx, stop_rx).await,
                            Kind::Echo { reply } => serve_echo(reply, ready_tx, stop_rx).await,
                        }
                    });
                    // Every connection still open is dropped with the runtime, without waiting for its client.
                    drop(rt);
                    let _ = done_tx.send(());
                })
                .map_err(|e| format!("cannot start the server thread: {e}"))?;
            let addr = ready_rx.recv().map_err(|_| "the server thread ended before serving".to_owned())??;
            Ok(Server { addr, cpu: cpu_tx, stop: Some(stop_tx), done: Some(done_rx), thread: Some(thread) })
        }

        /// Stops the server and waits for its thread to end, while the caller's runtime keeps running (the
        /// generator's connection tasks among them: a thread joined from inside the runtime would block them).
        async fn stop(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(done) = self.done.take() {
                if tokio::time::timeout(STOP_DEADLINE, done).await.is_err() {
                    eprintln!("a server thread did not stop within {STOP_DEADLINE:?}; leaving it behind");
                    self.thread.take();
                }
            }
        }

        /// The server thread's CPU time so far.
        async fn cpu(&self) -> Result<Duration, String> {
            let (tx, rx) = oneshot::channel();
            self.cpu.send(tx).map_err(|_| "the server thread is gone".to_owned())?;
            rx.await.map_err(|_| "the server thread is gone".to_owned())
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// A loopback listener on a free port, with Nagle off as `Master::serve`'s listener has it.
    fn listener() -> Result<(TcpIncoming, SocketAddr), String> {
        let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| format!("cannot bind a loopback port: {e}"))?
            .with_nodelay(Some(true));
        let addr = incoming.local_addr().map_err(|e| format!("no local address: {e}"))?;
        Ok((incoming, addr))
    }

    /// The bench master's configuration.
    fn master_config(addr: &SocketAddr, etcd: &str, cluster: &str) -> MasterConfig {
        let mut cfg = MasterConfig {
            name: MASTER_NAME.into(),
            addr: addr.to_string(),
            http_addr: String::new(),
            etcd: vec![etcd.to_owned()],
            cluster: cluster.to_owned(),
            ..MasterConfig::default()
        };
        cfg.executors.offline_ttl = OFFLINE_TTL;
        cfg.fill_derived();
        cfg
    }

    /// Serves the master as `Master::serve` does (its services on a server from `rpc::tls::server_builder`, beside
    /// `Master::run`), on a listener bound here, until `stop`.
    async fn serve_master(
        etcd: &str,
        cluster: &str,
        ready: std::sync::mpsc::Sender<Result<SocketAddr, String>>,
        stop: oneshot::Receiver<()>,
    ) {
        let started = async {
            let (incoming, addr) = listener()?;
            let cfg = master_config(&addr, etcd, cluster);
            cfg.validate().map_err(|e| format!("the bench master's configuration is refused: {e}"))?;
            let store = MetaStore::etcd(&cfg.etcd, &cfg.cluster, cfg.rpc.metastore_timeout)
                .await
                .map_err(|e| format!("cannot use etcd at {etcd}: {e}"))?;
            let builder = foreman::rpc::tls::server_builder().map_err(|e| format!("cannot set up TLS: {e}"))?;
            Ok::<_, String>((incoming, addr, Master::new(cfg, store, 17), builder))
        };
        let (incoming, addr, m, mut builder) = match started.await {
            Ok(v) => v,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let svc = MasterService::new(m.clone());
        let server = builder
            .add_service(pb::discovery_server::DiscoveryServer::new(svc.clone()))
            .add_service(pb::job_manager_server::JobManagerServer::new(svc.clone()))
            .add_service(pb::task_scheduler_server::TaskSchedulerServer::new(svc.clone()))
            .add_service(pb::framework_server::FrameworkServer::new(svc))
            .serve_with_incoming(incoming);
        let _ = ready.send(Ok(addr));
        tokio::select! {
            biased;
            r = server => if let Err(e) = r { eprintln!("the master's server stopped: {e}") },
            _ = m.run(async { let _ = stop.await; }) => {}
        }
    }

    /// A Discovery service that answers every heartbeat with the same reply, and nothing else.
    struct Echo {
        reply: pb::HeartbeatResponse,
    }

    fn echo_only() -> Status {
        Status::unimplemented("the echo answers heartbeats only")
    }

    #[tonic::async_trait]
    impl pb::discovery_server::Discovery for Echo {
        async fn register_executor(
            &self,
            _: Request<pb::RegisterExecutorRequest>,
        ) -> Result<Response<pb::RegisterExecutorResponse>, Status> {
            Err(echo_only())
        }
        async fn deregister_executor(
            &self,
            _: Request<pb::DeregisterExecutorRequest>,
        ) -> Result<Response<pb::DeregisterExecutorResponse>, Status> {
            Err(echo_only())
        }
        async fn heartbeat(&self, _: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
            Ok(Response::new(self.reply.clone()))
        }
        async fn query_meta_store(
            &self,
            _: Request<pb::QueryMetaStoreRequest>,
        ) -> Result<Response<pb::QueryMetaStoreResponse>, Status> {
            Err(echo_only())
        }
        async fn list_executors(
            &self,
            _: Request<pb::ListExecutorsRequest>,
        ) -> Result<Response<pb::ListExecutorsResponse>, Status> {
            Err(echo_only())
        }
        async fn list_masters(
            &self,
            _: Request<pb::ListMastersRequest>,
        ) -> Result<Response<pb::ListMastersResponse>, Status> {
            Err(echo_only())
        }
        async fn get_leader(
            &self,
            _: Request<pb::GetLeaderRequest>,
        ) -> Result<Response<pb::GetLeaderResponse>, Status> {
            Err(echo_only())
        }
        async fn resign_leader(
            &self,
            _: Request<pb::ResignLeaderRequest>,
        ) -> Result<Response<pb::ResignLeaderResponse>, Status> {
            Err(echo_only())
        }
    }

    async fn serve_echo(
        reply: pb::HeartbeatResponse,
        ready: std::sync::mpsc::Sender<Result<SocketAddr, String>>,
        stop: oneshot::Receiver<()>,
    ) {
        let (incoming, addr) = match listener() {
            Ok(v) => v,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let server = tonic::transport::Server::builder()
            .add_service(pb::discovery_server::DiscoveryServer::new(Echo { reply }))
            .serve_with_incoming(incoming);
        let _ = ready.send(Ok(addr));
        // Stopped at once, as the master's is: a graceful shutdown would wait for the clients to close.
        tokio::select! {
            biased;
            r = server => if let Err(e) = r { eprintln!("the echo's server stopped: {e}") },
            _ = stop => {}
        }
    }

    // ---- the load generator: gRPC on h2 ----

    /// How the generator reaches a server: plain text, or mutual TLS with one client configuration per executor.
    #[derive(Clone)]
    enum Transport {
        Plain,
        Tls(Arc<Vec<tokio_rustls::TlsConnector>>),
    }

    /// One HTTP/2 connection and the request heads of its calls.
    #[derive(Clone)]
    struct Conn {
        send: h2::client::SendRequest<Bytes>,
        heartbeat: http::Uri,
        register: http::Uri,
        headers: http::HeaderMap,
    }

    /// Opens a connection to `addr`; with TLS, presenting executor `who`'s certificate.
    async fn connect(addr: SocketAddr, transport: &Transport, who: usize) -> Result<Conn, String> {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect to {addr}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (scheme, send) = match transport {
            Transport::Plain => ("http", handshake(tcp).await?),
            Transport::Tls(connectors) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::from(addr.ip());
                let tls = connectors[who].connect(name, tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
                ("https", handshake(tls).await?)
            }
        };
        let uri = |path: &str| {
            http::Uri::builder()
                .scheme(scheme)
                .authority(addr.to_string())
                .path_and_query(path)
                .build()
                .map_err(|e| format!("uri: {e}"))
        };
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        Ok(Conn { send, heartbeat: uri(HEARTBEAT_PATH)?, register: uri(REGISTER_PATH)?, headers })
    }

    /// The HTTP/2 handshake; the connection is driven by a task of its own until every handle is dropped.
    async fn handshake<T>(io: T) -> Result<h2::client::SendRequest<Bytes>, String>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// A gRPC message as it goes on the wire: uncompressed flag, big-endian length, the message.
    fn frame<M: Message>(m: &M) -> Bytes {
        let len = m.encoded_len();
        let mut b = BytesMut::with_capacity(5 + len);
        b.put_u8(0);
        b.put_u32(len as u32);
        m.encode(&mut b).expect("the buffer was sized for the message");
        b.freeze()
    }

    fn grpc_status(headers: &http::HeaderMap) -> Option<Result<i32, String>> {
        let v = headers.get("grpc-status")?;
        Some(v.to_str().ok().and_then(|s| s.parse().ok()).ok_or_else(|| format!("grpc-status {v:?} is not a number")))
    }

    fn refusal(code: i32, headers: &http::HeaderMap) -> String {
        let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
        format!("grpc-status {code} ({:?}): {message}", tonic::Code::from_i32(code))
    }

    /// One unary call of `path` on `conn` with the framed request `body`; the decoded answer, or what went wrong.
    async fn call<R: Message + Default>(conn: &Conn, uri: &http::Uri, body: Bytes) -> Result<R, String> {
        let mut send = conn.send.clone().ready().await.map_err(|e| format!("connection: {e}"))?;
        let mut req = http::Request::new(());
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = conn.headers.clone();
        let (response, mut stream) = send.send_request(req, false).map_err(|e| format!("send: {e}"))?;
        stream.send_data(body, true).map_err(|e| format!("send: {e}"))?;
        let response = response.await.map_err(|e| format!("response: {e}"))?;
        let (head, mut recv) = response.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(format!("HTTP status {}", head.status));
        }
        // A trailers-only answer (a refusal) has its grpc-status in the headers.
        if let Some(code) = grpc_status(&head.headers) {
            return Err(refusal(code?, &head.headers));
        }
        let mut data = BytesMut::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(|e| format!("body: {e}"))?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = recv.trailers().await.map_err(|e| format!("trailers: {e}"))?.unwrap_or_default();
        match grpc_status(&trailers) {
            Some(Ok(0)) => {}
            Some(code) => return Err(refusal(code?, &trailers)),
            None => return Err("no grpc-status in the trailers".into()),
        }
        if data.len() < 5 || data[0] != 0 {
            return Err(format!("not an uncompressed gRPC message ({} bytes)", data.len()));
        }
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        if data.len() != 5 + len {
            return Err(format!("a gRPC message of {len} bytes in a body of {}", data.len()));
        }
        R::decode(&data[5..]).map_err(|e| format!("decode: {e}"))
    }

    async fn call_in_time<R: Message + Default>(conn: &Conn, uri: &http::Uri, body: Bytes) -> Result<R, String> {
        tokio::time::timeout(CALL_TIMEOUT, call(conn, uri, body))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {CALL_TIMEOUT:?}")))
    }

    /// A registered executor and its heartbeat, framed once.
    struct Registered {
        id: u64,
        heartbeat: Bytes,
    }

    fn executor_name(i: usize) -> String {
        format!("e{i:04}")
    }

    fn registration(i: usize) -> Bytes {
        frame(&pb::RegisterExecutorRequest {
            name: executor_name(i),
            address: "127.0.0.1:1".into(),
            capacity: 1,
            labels: Default::default(),
            instance: i as u64 + 1,
        })
    }

    /// Registers the executors (with TLS, each over a connection with its own certificate), the first one retried
    /// until the master leads.
    async fn register(addr: SocketAddr, transport: &Transport) -> Result<Vec<Registered>, String> {
        let shared = match transport {
            Transport::Plain => Some(connect(addr, transport, 0).await?),
            Transport::Tls(_) => None,
        };
        let conn_for = |i: usize| {
            let shared = shared.clone();
            let transport = transport.clone();
            async move {
                match shared {
                    Some(c) => Ok(c),
                    None => connect(addr, &transport, i).await,
                }
            }
        };
        let started = clock();
        let first = loop {
            let conn = conn_for(0).await?;
            match call_in_time::<pb::RegisterExecutorResponse>(&conn, &conn.register, registration(0)).await {
                Ok(r) => break r,
                Err(e) if started.elapsed() > LEAD_DEADLINE => {
                    return Err(format!("the master did not register an executor within {LEAD_DEADLINE:?}: {e}"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let mut ids = vec![first.executor_id];
        let mut next = 1;
        while next < EXECUTORS {
            let mut batch = tokio::task::JoinSet::new();
            for i in next..(next + REGISTER_IN_FLIGHT).min(EXECUTORS) {
                let conn = conn_for(i);
                batch.spawn(async move {
                    let conn = conn.await?;
                    let r = call_in_time::<pb::RegisterExecutorResponse>(&conn, &conn.register, registration(i)).await;
                    r.map(|r| (i, r.executor_id)).map_err(|e| format!("RegisterExecutor of {}: {e}", executor_name(i)))
                });
            }
            let mut got = BTreeMap::new();
            while let Some(r) = batch.join_next().await {
                let (i, id) = r.map_err(|e| format!("a registration task: {e}"))??;
                got.insert(i, id);
            }
            next += got.len();
            ids.extend(got.into_values());
        }
        Ok(ids
            .into_iter()
            .map(|id| Registered {
                id,
                heartbeat: frame(&pb::HeartbeatRequest {
                    executor_id: id,
                    leader_epoch: first.leader_epoch,
                    ..Default::default()
                }),
            })
            .collect())
    }

    /// What the heartbeat loops count.
    #[derive(Default)]
    struct Tally {
        accepted: AtomicU64,
        failures: Mutex<BTreeMap<String, u64>>,
    }

    impl Tally {
        fn fail(&self, what: String) {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let key = if f.len() < FAILURE_KINDS_MAX || f.contains_key(&what) { what } else { "(other)".into() };
            *f.entry(key).or_default() += 1;
        }

        fn failed(&self) -> u64 {
            self.failures.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
        }
    }

    /// One heartbeat in flight, again and again until `stop`; a failure ends the loop (it is counted).
    async fn heartbeats(conn: Conn, body: Bytes, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            match call_in_time::<pb::HeartbeatResponse>(&conn, &conn.heartbeat, body.clone()).await {
                Ok(r) if r.verdict == pb::HeartbeatVerdict::Accepted as i32 => {
                    tally.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => {
                    tally.fail(format!("verdict {:?}", pb::HeartbeatVerdict::try_from(r.verdict)));
                    return;
                }
                Err(e) => {
                    tally.fail(e);
                    return;
                }
            }
        }
    }

    /// What one shape measured on one server.
    struct Figures {
        per_s: f64,
        /// The server thread's CPU time per heartbeat.
        cpu_per: Duration,
        /// How busy the server's and the generator's threads were over the window (CPU time / wall time).
        server_busy: f64,
        generator_busy: f64,
        failed: u64,
    }

    impl Figures {
        /// The least disturbed of some rounds (the machine is shared): the highest rate with its busy shares, the
        /// lowest CPU time per heartbeat, and every failure.
        fn best(rounds: &[Figures]) -> Figures {
            let top = rounds.iter().max_by(|a, b| a.per_s.total_cmp(&b.per_s)).expect("at least one round");
            Figures {
                per_s: top.per_s,
                cpu_per: rounds.iter().map(|f| f.cpu_per).min().unwrap_or_default(),
                server_busy: top.server_busy,
                generator_busy: top.generator_busy,
                failed: rounds.iter().map(|f| f.failed).sum(),
            }
        }
    }

    /// Runs `shape` against `server`: connections, warm-up, the measured window, then a stop and the failures.
    async fn run_shape(
        server: &Server,
        transport: &Transport,
        executors: &[Registered],
        shape: Shape,
        (warm_up, window): (Duration, Duration),
    ) -> Result<Figures, String> {
        let tls = matches!(transport, Transport::Tls(_));
        let mut conns = Vec::with_capacity(shape.connections);
        while conns.len() < shape.connections {
            let mut batch = tokio::task::JoinSet::new();
            for c in conns.len()..(conns.len() + CONNECT_IN_FLIGHT).min(shape.connections) {
                let transport = transport.clone();
                let addr = server.addr;
                batch.spawn(async move { connect(addr, &transport, c).await.map(|conn| (c, conn)) });
            }
            let mut got = BTreeMap::new();
            while let Some(r) = batch.join_next().await {
                let (c, conn) = r.map_err(|e| format!("a connect task: {e}"))??;
                got.insert(c, conn);
            }
            conns.extend(got.into_values());
        }
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut loops = tokio::task::JoinSet::new();
        for (c, conn) in conns.iter().enumerate() {
            for s in 0..shape.in_flight {
                // With TLS a connection may heartbeat only for the executor its certificate names.
                let who = if tls { c } else { c * shape.in_flight + s };
                let body = executors[who % executors.len()].heartbeat.clone();
                loops.spawn(heartbeats(conn.clone(), body, tally.clone(), stop.clone()));
            }
        }
        drop(conns);
        tokio::time::sleep(warm_up).await;
        let (n0, s0, g0, t0) = (tally.accepted.load(Ordering::Relaxed), server.cpu().await?, thread_cpu(), clock());
        tokio::time::sleep(window).await;
        let (n1, s1, g1, t1) = (tally.accepted.load(Ordering::Relaxed), server.cpu().await?, thread_cpu(), clock());
        stop.store(true, Ordering::Relaxed);
        while loops.join_next().await.is_some() {}
        if n1 == n0 {
            tally.fail(format!("no heartbeat was answered in the {window:?} measured"));
        }
        let failed = tally.failed();
        if failed > 0 {
            eprintln!("FAILED: {failed} heartbeats not accepted ({}):", shape.name);
            for (what, n) in tally.failures.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                eprintln!("  {n} x {what}");
            }
        }
        let wall = (t1 - t0).as_secs_f64();
        let n = (n1 - n0).max(1);
        Ok(Figures {
            per_s: (n1 - n0) as f64 / wall,
            cpu_per: (s1 - s0) / n as u32,
            server_busy: (s1 - s0).as_secs_f64() / wall,
            generator_busy: (g1 - g0).as_secs_f64() / wall,
            failed,
        })
    }

    // ---- TLS material ----

    /// Certificates for the master and every executor, made by `foreman tls init`'s code, and the generator's
    /// client configuration for each executor.
    fn tls_material(dir: &Path, cluster: &str) -> Result<Vec<tokio_rustls::TlsConnector>, String> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let flags = foreman::cli::tls::InitFlags {
            dir: dir.to_owned(),
            cluster: cluster.to_owned(),
            masters: vec![MASTER_NAME.into()],
            executors: (0..EXECUTORS).map(executor_name).collect(),
            users: vec![],
            hosts: vec![],
            etcd: false,
        };
        foreman::cli::tls::init(&flags)?;
        let file = |stem: &str| dir.join(format!("{stem}.pem"));
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_file(file("ca")).map_err(|e| format!("ca.pem: {e}"))?;
        roots.add(ca).map_err(|e| format!("ca.pem: {e}"))?;
        let roots = Arc::new(roots);
        // why: the provider tonic's `tls-ring` gives foreman's own clients and servers (deprecated in rustls for
        // lacking post-quantum key exchange, which neither end here offers).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        (0..EXECUTORS)
            .map(|i| {
                let stem = format!("executor-{}", executor_name(i));
                let cert = CertificateDer::from_pem_file(file(&stem)).map_err(|e| format!("{stem}.pem: {e}"))?;
                let key =
                    PrivateKeyDer::from_pem_file(file(&format!("{stem}-key"))).map_err(|e| format!("{stem}: {e}"))?;
                let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("rustls: {e}"))?
                    .with_root_certificates(roots.clone())
                    .with_client_auth_cert(vec![cert], key)
                    .map_err(|e| format!("{stem}: {e}"))?;
                cfg.alpn_protocols = vec![b"h2".to_vec()];
                Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
            })
            .collect()
    }

    /// A directory removed when dropped.
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    // ---- the run ----

    fn us(d: Duration) -> f64 {
        d.as_secs_f64() * 1e6
    }

    async fn run(
        etcd: String,
        server_cpu: Option<usize>,
        times: (Duration, Duration),
        rounds: usize,
    ) -> Result<u64, String> {
        let pid = std::process::id();
        let mut failed = 0;

        // The plain-text master, and the echo with the reply the master gives.
        let plain = Server::start(
            "master",
            Kind::Master { etcd: etcd.clone(), cluster: format!("hb-plain-{pid}") },
            server_cpu,
        )?;
        let registered_at = clock();
        let executors = register(plain.addr, &Transport::Plain).await?;
        println!(
            "registered {} executors with the master in {:.2} s (ids {}..={})",
            executors.len(),
            registered_at.elapsed().as_secs_f64(),
            executors.first().map_or(0, |e| e.id),
            executors.last().map_or(0, |e| e.id)
        );
        let cfg = master_config(&plain.addr, &etcd, "echo");
        let reply = pb::HeartbeatResponse {
            verdict: pb::HeartbeatVerdict::Accepted as i32,
            leader_epoch: 1,
            timing: Some(foreman::rpc::timing_to_wire(&cfg.executor_timing())),
            gone_jobs: vec![],
            // The master's reply names its address: the echo's is as long.
            leader_address: plain.addr.to_string(),
            ..Default::default()
        };
        let echo = Server::start("echo", Kind::Echo { reply }, server_cpu)?;

        println!(
            "{:<34} {:>11} {:>11} {:>6} {:>13} {:>13} {:>10}  busy: server, generator",
            "shape", "master hb/s", "echo hb/s", "ratio", "master CPU/hb", "echo CPU/hb", "CPU ratio"
        );
        let mut plain_figures = vec![];
        for shape in SHAPES {
            // Rounds of the master then the echo, interleaved, so that both see the machine's noise alike.
            let (mut ms, mut es) = (vec![], vec![]);
            for _ in 0..rounds {
                ms.push(run_shape(&plain, &Transport::Plain, &executors, shape, times).await?);
                es.push(run_shape(&echo, &Transport::Plain, &executors, shape, times).await?);
            }
            let each: Vec<String> = ms.iter().zip(&es).map(|(m, e)| format!("{:.2}", m.per_s / e.per_s)).collect();
            let (m, e) = (Figures::best(&ms), Figures::best(&es));
            let ratio = m.per_s / e.per_s;
            println!(
                "{:<34} {:>11.0} {:>11.0} {:>6.2} {:>10.1} µs {:>10.1} µs {:>10.2}  master {:.0}%, {:.0}%; echo {:.0}%, {:.0}%; \
                 rounds {}{}",
                shape.name,
                m.per_s,
                e.per_s,
                ratio,
                us(m.cpu_per),
                us(e.cpu_per),
                us(e.cpu_per) / us(m.cpu_per),
                m.server_busy * 100.0,
                m.generator_busy * 100.0,
                e.server_busy * 100.0,
                e.generator_busy * 100.0,
                each.join(" "),
                if ratio < 0.7 { "  (ratio short of 0.7)" } else { "" }
            );
            failed += m.failed + e.failed;
            plain_figures.push(m);
        }
        echo.stop().await;
        plain.stop().await;

        // The same master path with mutual TLS: this process's identity is the master's from here on (every call
        // the master takes is then checked against its caller's certificate).
        let cluster = format!("hb-tls-{pid}");
        let dir = TempDir(std::env::temp_dir().join(format!("foreman-heartbeat-bench-{pid}")));
        let made_at = clock();
        let connectors = tls_material(&dir.0, &cluster)?;
        println!(
            "made a CA and {} certificates in {:.2} s; mutual TLS from here on",
            EXECUTORS + 1,
            made_at.elapsed().as_secs_f64()
        );
        let (ca, cert, key) = (
            dir.0.join("ca.pem"),
            dir.0.join(format!("master-{MASTER_NAME}.pem")),
            dir.0.join(format!("master-{MASTER_NAME}-key.pem")),
        );
        let me = Principal::Master(MASTER_NAME.into());
        foreman::rpc::tls::set_up([Some(&ca), Some(&cert), Some(&key)], |t| t.expect(&me, Some(&cluster)))?;
        let tls = Server::start("master-tls", Kind::Master { etcd, cluster }, server_cpu)?;
        let transport = Transport::Tls(Arc::new(connectors));
        let registered_at = clock();
        let tls_executors = register(tls.addr, &transport).await?;
        println!(
            "registered {} executors over TLS, each with its own certificate, in {:.2} s",
            tls_executors.len(),
            registered_at.elapsed().as_secs_f64()
        );
        println!(
            "{:<34} {:>11} {:>11} {:>6} {:>13} {:>13} {:>10} {:>10}  busy: server, generator",
            "shape", "TLS hb/s", "plain hb/s", "ratio", "TLS CPU/hb", "plain CPU/hb", "CPU ratio", "TLS cost"
        );
        for (shape, p) in SHAPES.into_iter().zip(&plain_figures) {
            let mut ts = vec![];
            for _ in 0..rounds {
                ts.push(run_shape(&tls, &transport, &tls_executors, shape, times).await?);
            }
            let t = Figures::best(&ts);
            println!(
                "{:<34} {:>11.0} {:>11.0} {:>6.2} {:>10.1} µs {:>10.1} µs {:>10.2} {:>7.1} µs  {:.0}%, {:.0}%",
                shape.name,
                t.per_s,
                p.per_s,
                t.per_s / p.per_s,
                us(t.cpu_per),
                us(p.cpu_per),
                us(p.cpu_per) / us(t.cpu_per),
                us(t.cpu_per) - us(p.cpu_per),
                t.server_busy * 100.0,
                t.generator_busy * 100.0
            );
            failed += t.failed;
        }
        tls.stop().await;
        Ok(failed)
    }

    pub fn main() -> std::process::ExitCode {
        let quick = std::env::args().any(|a| a == "--quick");
        let (times, rounds) = if quick {
            ((Duration::from_millis(300), Duration::from_millis(700)), 1)
        } else {
            ((Duration::from_secs(1), Duration::from_secs(3)), 3)
        };
        let etcd = std::env::var("FOREMAN_TEST_ETCD").unwrap_or_default();
        if etcd.is_empty() {
            eprintln!(
                "FOREMAN_TEST_ETCD must name a real etcd as host:port (the master campaigns in it): run \
                 `scripts/with-etcd cargo bench --bench heartbeat`, which starts a throwaway one and sets it"
            );
            return std::process::ExitCode::FAILURE;
        }
        let cpus = two_cpus();
        println!(
            "heartbeat benchmark: the master's executor heartbeat path on one core (gRPC on loopback, etcd at {etcd}) \
             vs a bare tonic echo of the same messages; an h2 load generator on another core"
        );
        match cpus {
            Some((s, g)) => println!("server threads pinned to cpu {s}, the load generator to cpu {g}"),
            None => println!("fewer than two CPUs available: nothing pinned"),
        }
        println!(
            "{} executors; per shape and server {rounds} round(s) of {:.1} s of warm-up then {:.1} s measured, the \
             master's and the echo's interleaved; the best round of each is shown; target: master/echo >= 0.7",
            EXECUTORS,
            times.0.as_secs_f64(),
            times.1.as_secs_f64()
        );
        if quick {
            println!(
                "--quick: a short run to show the benchmark works; its figures mean little, in a debug build nothing"
            );
        }
        pin(cpus.map(|c| c.1));
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("cannot build the load generator's runtime: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        match rt.block_on(run(etcd, cpus.map(|c| c.0), times, rounds)) {
            Ok(0) => std::process::ExitCode::SUCCESS,
            Ok(n) => {
                eprintln!("FAILED: {n} heartbeats were not accepted (listed above): every heartbeat must be");
                std::process::ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("FAILED: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    }
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    bench::main()
}

// The simulation build has no sockets or threads to measure: the benchmark is empty there.
#[cfg(madsim)]
fn main() {}
