//! What each request does, composed from the stages (`crate::stages`) after its checks
//! (`crate::validate`): a question (Ask, AskStream), a chat turn, and the memory operations
//! (Remember, Forget, Search).

pub mod ask;
pub mod chat;
pub mod memories;

use memgpt_proto::gateway::v1::{AskResponse, AskStreamResponse};
use tokio::sync::mpsc;

/// What a streamed answer sends: deltas, then one message with the final answer (or the
/// error that ended it).
pub type Answers = mpsc::Receiver<Result<AskStreamResponse, tonic::Status>>;

/// Runs `flow` (a question or a chat turn) on its own task, in the current span; its deltas
/// and then its final answer or error come out of the returned channel. Dropping the channel
/// cancels the generation.
pub fn streamed<F, Fut>(flow: F) -> Answers
where
    F: FnOnce(mpsc::Sender<Result<AskStreamResponse, tonic::Status>>) -> Fut,
    Fut: std::future::Future<Output = crate::Result<AskResponse>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let fut = flow(tx.clone());
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        let last = match fut.await {
            Ok(answer) => Ok(AskStreamResponse { delta: String::new(), r#final: Some(answer) }),
            Err(e) => Err(tonic::Status::from(e)),
        };
        let _ = tx.send(last).await;
    }));
    rx
}

/// The final answer of a streamed one (deltas skipped).
pub async fn last(mut answers: Answers) -> Result<AskResponse, tonic::Status> {
    while let Some(msg) = answers.recv().await {
        if let Some(answer) = msg?.r#final {
            return Ok(answer);
        }
    }
    Err(tonic::Status::internal("the answer ended without a final message"))
}
