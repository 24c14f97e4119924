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

/// The future that tells a server to stop (drain and return), boxed so that a service's
/// `serve` is not generic.
pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

/// A service's whole run, as its `serve` returns it: boxed, behind a plain function that is
/// never inlined. The body of an `async fn` is compiled in every crate that awaits it (its
/// state machine is instantiated where it is polled), so an exported `async fn serve` put
/// the whole server (tonic, hyper, axum, the service's handlers) into every binary and test
/// binary that starts one: each service binary was a minute of codegen on 2 cores. Boxed in
/// the service's own crate, it is compiled once there and the others poll it through a
/// vtable.
pub type Serving<E> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), E>> + Send + 'static>>;

/// What a service binary does: telemetry from its configuration, listen on `listen`, log the
/// bound address (field `addr`, which tests and tools read), and `serve` until it returns.
pub async fn run_service<Fut, E>(
    name: &str,
    filter: &str,
    format: memgpt_telemetry::LogFormat,
    listen: std::net::SocketAddr,
    serve: impl FnOnce(tokio::net::TcpListener) -> Fut,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let _telemetry = memgpt_telemetry::init(&memgpt_telemetry::TelemetryConfig { service_name: name.into(), filter: filter.into(), format })?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "{name} listening");
    serve(listener).await?;
    Ok(())
}

/// The `main` of a service binary: parse the configuration (`$config`, a `clap::Parser` with
/// `log`, `log_format` and `listen` fields) from the command line and environment, then
/// [`run_service`] `$serve` until SIGTERM or Ctrl-C. A failure is printed and exits 1.
#[macro_export]
macro_rules! service_main {
    ($binary:literal, $config:ty, $serve:path) => {
        fn main() -> std::process::ExitCode {
            let config = <$config as clap::Parser>::parse();
            let (log, format, listen) = (config.log.clone(), config.log_format, config.listen);
            let runtime = tokio::runtime::Runtime::new().map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() });
            let outcome = runtime.and_then(|runtime| {
                runtime.block_on($crate::run_service($binary, &log, format, listen, |l| $serve(config, l, Box::pin($crate::shutdown_signal()))))
            });
            match outcome {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("Error: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    };
}
