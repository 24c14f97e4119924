//! The Qdrant nodes the store may talk to, and failover between them: a call goes to the node
//! that answered last; when that node cannot be reached (refused, reset, timed out) the same
//! call goes to the next node in turn, and the node that answers becomes the one used. Every
//! call the store makes is idempotent (upserts and deletes by id or filter, reads), so a call
//! retried on another node after a timeout changes nothing twice.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use qdrant_client::{Qdrant, QdrantError};
use tonic::Code;

use crate::error::{MemoryError, Result};

/// One node: its URL and its client.
struct Node {
    url: String,
    client: Qdrant,
}

/// The nodes of one Qdrant cluster (or one server).
pub(super) struct Nodes {
    nodes: Vec<Node>,
    /// The node that answered last.
    current: AtomicUsize,
}

/// Whether `err` says the node could not be reached, did not answer in time, or could not
/// serve the call itself (INTERNAL: also how the client reports a failed connect, and how a
/// node reports shards it cannot reach), rather than that the request was refused: only then
/// is another node tried.
fn unreachable(err: &QdrantError) -> bool {
    match err {
        // The client reports a failed connect as INTERNAL ("Failed to connect to ...").
        QdrantError::ResponseError { status } => matches!(
            status.code(),
            Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Unknown | Code::Internal
        ),
        _ => false,
    }
}

fn unavailable(err: impl std::fmt::Display) -> MemoryError {
    MemoryError::Unavailable(format!("qdrant: {err}"))
}

impl Nodes {
    /// Clients for `urls` (connections are made on first use), each call bounded by `timeout`.
    pub(super) fn new(urls: &[String], api_key: Option<&str>, timeout: Duration) -> Result<Self> {
        if urls.is_empty() {
            return Err(MemoryError::invalid("qdrant_url", "at least one URL is needed"));
        }
        let nodes = urls
            .iter()
            .map(|url| {
                let mut builder = Qdrant::from_url(url)
                    .skip_compatibility_check()
                    .timeout(timeout)
                    .connect_timeout(timeout.min(Duration::from_secs(2)));
                if let Some(key) = api_key {
                    builder = builder.api_key(key.to_string());
                }
                let client = builder.build().map_err(|e| MemoryError::invalid("qdrant_url", format!("`{url}`: {e}")))?;
                Ok(Node { url: url.clone(), client })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { nodes, current: AtomicUsize::new(0) })
    }

    /// Runs `op` on the node that answered last, then on each other node in turn while the
    /// node tried cannot be reached. `what` names the call in the logs.
    pub(super) async fn call<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T>
    where
        F: Fn(Qdrant) -> Fut,
        Fut: Future<Output = std::result::Result<T, QdrantError>>,
    {
        let n = self.nodes.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last = None;
        for k in (0..n).map(|i| (first + i) % n) {
            let node = &self.nodes[k];
            match op(node.client.clone()).await {
                Ok(value) => {
                    if k != first && self.current.swap(k, Ordering::Relaxed) != k {
                        tracing::warn!(call = what, from = %self.nodes[first].url, to = %node.url, "qdrant: failed over to another node");
                    }
                    return Ok(value);
                }
                Err(err) if unreachable(&err) => {
                    tracing::warn!(call = what, url = %node.url, error = %err, "qdrant node did not answer");
                    last = Some(err);
                }
                Err(err) => return Err(unavailable(err)),
            }
        }
        let err = last.map(|e| e.to_string()).unwrap_or_default();
        Err(unavailable(format!("no node could serve {what} ({n} tried; the last said: {err})")))
    }

    /// Whether some node answers its health check.
    pub(super) async fn any_healthy(&self) -> bool {
        let checks = self.nodes.iter().map(|node| node.client.health_check());
        futures::future::join_all(checks).await.iter().any(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn nodes(n: usize) -> Nodes {
        let urls: Vec<String> = (0..n).map(|i| format!("http://127.0.0.1:{}", 1 + i)).collect();
        Nodes::new(&urls, None, Duration::from_secs(1)).unwrap()
    }

    fn status(code: Code) -> QdrantError {
        QdrantError::ResponseError { status: tonic::Status::new(code, "test") }
    }

    #[tokio::test]
    async fn an_unreachable_node_hands_the_call_to_the_next_which_is_then_used_first() {
        let nodes = nodes(3);
        let attempts = AtomicUsize::new(0);
        let result = nodes
            .call("test", |_| {
                let attempt = attempts.fetch_add(1, Ordering::SeqCst);
                async move { if attempt == 0 { Err(status(Code::Unavailable)) } else { Ok(attempt) } }
            })
            .await;
        assert_eq!(result.unwrap(), 1, "the second node answered");
        assert_eq!(nodes.current.load(Ordering::Relaxed), 1, "and is the one used next");
        attempts.store(0, Ordering::SeqCst);
        nodes.call("test", |_| async { attempts.fetch_add(1, Ordering::SeqCst); Ok(()) }).await.unwrap();
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert_eq!(nodes.current.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_refused_request_is_not_retried_and_no_node_answering_names_the_call() {
        let nodes = nodes(3);
        let attempts = AtomicUsize::new(0);
        let refused = nodes.call("test", |_| async { attempts.fetch_add(1, Ordering::SeqCst); Err::<(), _>(status(Code::InvalidArgument)) }).await;
        assert!(matches!(refused, Err(MemoryError::Unavailable(_))));
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "a refusal is the cluster's answer, not a node's failure");

        attempts.store(0, Ordering::SeqCst);
        let down = nodes.call("upsert_points", |_| async { attempts.fetch_add(1, Ordering::SeqCst); Err::<(), _>(status(Code::DeadlineExceeded)) }).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 3, "every node tried once");
        let message = down.unwrap_err().to_string();
        assert!(message.contains("upsert_points") && message.contains("3 tried"), "{message}");
        assert!(matches!(Nodes::new(&[], None, Duration::from_secs(1)), Err(MemoryError::InvalidArgument { .. })));
    }
}
