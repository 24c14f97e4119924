//! Process lifecycle shared by the services.

/// Resolves on SIGTERM or Ctrl-C: the signal every service drains on.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The health-service name that stays SERVING while the process runs, whatever its
/// dependencies: what a liveness probe asks (the overall "" status follows dependencies, so
/// a liveness probe on it would restart a healthy process whose backend is down).
pub const LIVENESS_SERVICE: &str = "liveness";
