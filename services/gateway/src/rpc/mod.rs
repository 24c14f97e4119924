//! The `memgpt.gateway.v1.Gateway` gRPC adapter: authenticate, take the trace, run the flow
//! (`crate::flows`). [`forward`] serves the memory and generator APIs on the same port.

pub mod forward;

use std::sync::Arc;

use memgpt_proto::gateway::v1::gateway_server::Gateway as GatewayApi;
use memgpt_proto::gateway::v1::*;
use tokio::sync::OnceCell;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::{Auth, Principal};
use crate::error::{GatewayError, Result};
use crate::flows::chat::{self, Sessions};
use crate::flows::{self, ask, memories};
use crate::stages::Gateway;
use crate::trace::Trace;

/// Where the gateway appears once the encoder is loaded.
pub type GatewaySlot = Arc<OnceCell<Arc<Gateway>>>;

type AskStream = ReceiverStream<std::result::Result<AskStreamResponse, Status>>;

/// The Gateway service.
pub struct GatewayService {
    slot: GatewaySlot,
    auth: Arc<Auth>,
    sessions: Arc<Sessions>,
}

impl GatewayService {
    /// A service over the slot.
    pub fn new(slot: GatewaySlot, auth: Arc<Auth>, sessions: Arc<Sessions>) -> Self {
        Self { slot, auth, sessions }
    }

    fn begin<T>(&self, req: &Request<T>) -> Result<(Arc<Gateway>, Principal, Trace)> {
        let who = self.auth.authorize(req.metadata())?;
        let gw = self.slot.get().cloned().ok_or(GatewayError::Unavailable("encoder (still loading)"))?;
        Ok((gw, who, Trace::current()))
    }
}

#[tonic::async_trait]
impl GatewayApi for GatewayService {
    type AskStreamStream = AskStream;
    type ChatStream = AskStream;

    async fn ask(&self, request: Request<AskRequest>) -> std::result::Result<Response<AskResponse>, Status> {
        let (gw, who, trace) = self.begin(&request)?;
        let req = request.into_inner();
        flows::last(flows::streamed(|tx| ask::ask(gw, who, trace, req, ask::Context::default(), tx))).await.map(Response::new)
    }

    async fn ask_stream(&self, request: Request<AskRequest>) -> std::result::Result<Response<AskStream>, Status> {
        let (gw, who, trace) = self.begin(&request)?;
        let req = request.into_inner();
        Ok(Response::new(ReceiverStream::new(flows::streamed(|tx| ask::ask(gw, who, trace, req, ask::Context::default(), tx)))))
    }

    async fn remember(&self, request: Request<RememberRequest>) -> std::result::Result<Response<RememberResponse>, Status> {
        let (gw, who, trace) = self.begin(&request)?;
        Ok(Response::new(memories::remember(&gw, &who, &trace, request.into_inner()).await?))
    }

    async fn forget(&self, request: Request<ForgetRequest>) -> std::result::Result<Response<ForgetResponse>, Status> {
        let (gw, who, trace) = self.begin(&request)?;
        let forgotten = memories::forget(&gw, &who, &trace, request.into_inner()).await?;
        Ok(Response::new(ForgetResponse { forgotten }))
    }

    async fn search(&self, request: Request<SearchRequest>) -> std::result::Result<Response<SearchResponse>, Status> {
        let (gw, who, trace) = self.begin(&request)?;
        Ok(Response::new(memories::search(&gw, &who, &trace, request.into_inner()).await?))
    }

    async fn chat(&self, request: Request<ChatRequest>) -> std::result::Result<Response<AskStream>, Status> {
        let (gw, who, trace) = self.begin(&request)?;
        let req = request.into_inner();
        chat::namespace(&who, &req.session_id)?;
        let sessions = Arc::clone(&self.sessions);
        Ok(Response::new(ReceiverStream::new(flows::streamed(|tx| chat::turn(gw, sessions, who, trace, req, tx)))))
    }

    async fn delete_session(&self, request: Request<DeleteSessionRequest>) -> std::result::Result<Response<DeleteSessionResponse>, Status> {
        let (gw, who, trace) = self.begin(&request)?;
        let ns = chat::namespace(&who, &request.get_ref().session_id)?;
        self.sessions.remove(&ns);
        let deleted = gw.memory.drop_namespace(&trace, &ns).await?;
        Ok(Response::new(DeleteSessionResponse { deleted }))
    }

    async fn neighbors(&self, request: Request<NeighborsRequest>) -> std::result::Result<Response<NeighborsResponse>, Status> {
        let (gw, who, trace) = self.begin(&request)?;
        Ok(Response::new(memories::neighbors(&gw, &who, &trace, request.into_inner()).await?))
    }

    async fn info(&self, request: Request<InfoRequest>) -> std::result::Result<Response<InfoResponse>, Status> {
        let (gw, who, trace) = self.begin(&request)?;
        let mut backends = Vec::new();
        for (service, pool) in [("memory", gw.memory.pool()), ("generator", gw.generator.pool())] {
            backends.extend(pool.endpoints().into_iter().map(|(address, healthy, in_flight)| BackendInfo {
                service: service.into(),
                address,
                healthy,
                in_flight: in_flight as u32,
            }));
        }
        let generator = gw.generator.info(&trace).await;
        let encoder = gw.config.encoder_name();
        Ok(Response::new(InfoResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            auth_enabled: self.auth.enabled(),
            key_id: who.key_id.clone(),
            namespaces: who.patterns().to_vec(),
            backends,
            generator,
            default_top_k: gw.config.default_top_k,
            encoder,
            default_retrieval: Some(gw.config.default_retrieval()),
        }))
    }
}
