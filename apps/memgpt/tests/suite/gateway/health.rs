//! The gateway's health checks of its backends: an endpoint is in once a check passes; one
//! that refuses or says it does not serve is out at its next check, one that is only slow to
//! answer (a loaded host, a far link) after a few checks in a row; one that serves again is
//! back at its next check.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memgpt_gateway::clients::pool::{Pool, SLOW_CHECKS_BEFORE_DOWN};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const SERVICE: &str = "memgpt.test.v1.Probe";
const SERVING: u8 = 0;
const NOT_SERVING: u8 = 1;
/// Answers after a minute (past any check's timeout).
const STALLED: u8 = 2;

/// A health service whose answer the test sets.
#[derive(Clone, Default)]
struct Probe(Arc<AtomicU8>);

#[tonic::async_trait]
impl Health for Probe {
    async fn check(&self, _: tonic::Request<HealthCheckRequest>) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        let status = match self.0.load(Ordering::Relaxed) {
            SERVING => ServingStatus::Serving,
            NOT_SERVING => ServingStatus::NotServing,
            _ => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                ServingStatus::Serving
            }
        };
        Ok(tonic::Response::new(HealthCheckResponse { status: status as i32 }))
    }

    type WatchStream = futures::stream::Empty<Result<HealthCheckResponse, tonic::Status>>;

    async fn watch(&self, _: tonic::Request<HealthCheckRequest>) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("watch"))
    }
}

/// A [`Probe`] on a free port.
async fn probe() -> (SocketAddr, Probe) {
    let probe = Probe::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(tonic::transport::Server::builder().add_service(HealthServer::new(probe.clone())).serve_with_incoming(incoming));
    (addr, probe)
}

fn healthy(pool: &Pool) -> Vec<bool> {
    pool.endpoints().into_iter().map(|(_, healthy, _)| healthy).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_in_once_checked_and_out_at_once_when_not_serving_or_after_a_few_slow_checks() {
    let (steady, _) = probe().await;
    let (slow, slowing) = probe().await;
    let (flapping, flaps) = probe().await;
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let addrs = [steady, slow, flapping, refused].map(|a| a.to_string());
    let pool = Pool::new("probe", SERVICE, &addrs, None, Duration::from_secs(10)).unwrap();
    assert_eq!(healthy(&pool), [false; 4], "out until checked");
    assert!(pool.healthy_channel().is_none());

    let timeout = Duration::from_millis(100);
    pool.check_all(timeout).await;
    assert_eq!(healthy(&pool), [true, true, true, false], "in once a check passed; the refused one stays out");

    slowing.0.store(STALLED, Ordering::Relaxed);
    flaps.0.store(NOT_SERVING, Ordering::Relaxed);
    for _ in 1..SLOW_CHECKS_BEFORE_DOWN {
        pool.check_all(timeout).await;
    }
    assert_eq!(healthy(&pool), [true, true, false, false], "slow {} times in a row: still in", SLOW_CHECKS_BEFORE_DOWN - 1);
    pool.check_all(timeout).await;
    assert_eq!(healthy(&pool), [true, false, false, false], "slow {SLOW_CHECKS_BEFORE_DOWN} times in a row: out");

    slowing.0.store(SERVING, Ordering::Relaxed);
    flaps.0.store(SERVING, Ordering::Relaxed);
    pool.check_all(timeout).await;
    assert_eq!(healthy(&pool), [true, true, true, false], "answering again: back in at the next check");
}
