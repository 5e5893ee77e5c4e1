//! How a foreman process learns it must stop: Ctrl-C (SIGINT) or SIGTERM, the signal service managers and
//! container runtimes send. Either starts the same graceful exit (a leader resigns; an executor drains and leaves).

/// Resolves when the process is asked to stop; returns the signal's name for the log.
///
/// In the simulation build no signal ever arrives (nodes are stopped by the simulator), so this never resolves
/// there.
pub async fn requested() -> &'static str {
    #[cfg(not(madsim))]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // A process that cannot watch SIGTERM still stops on Ctrl-C (and SIGTERM's default action ends it).
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                biased;
                _ = ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(madsim)]
    {
        std::future::pending::<&'static str>().await
    }
}

/// Resolves on Ctrl-C; never, if Ctrl-C cannot be watched (rather than at once).
#[cfg(not(madsim))]
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
