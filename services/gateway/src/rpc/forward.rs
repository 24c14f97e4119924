//! The memory and generator services on the gateway's own port, for the all-in-one
//! `memgpt serve`: each call (streams included) is passed unchanged to a healthy endpoint of
//! the gateway's pool for that service, after the gateway's own API-key check. With auth on,
//! only keys allowed every namespace (`*`) may call them: these services know no tenants.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

use crate::auth::Auth;
use crate::clients::Pool;

/// A backend service that may be forwarded.
pub trait Forwarded: Send + Sync + 'static {
    /// Its fully qualified gRPC name.
    const NAME: &'static str;
}

/// `memgpt.memory.v1.Memory`.
pub struct MemoryApi;
impl Forwarded for MemoryApi {
    const NAME: &'static str = "memgpt.memory.v1.Memory";
}

/// `memgpt.generator.v1.Generator`.
pub struct GeneratorApi;
impl Forwarded for GeneratorApi {
    const NAME: &'static str = "memgpt.generator.v1.Generator";
}

/// Forwards every call of service `S` to `pool`.
pub struct Forward<S> {
    pool: Arc<Pool>,
    auth: Arc<Auth>,
    _service: PhantomData<fn() -> S>,
}

impl<S> Forward<S> {
    /// A forwarder to `pool`, checking keys with `auth`.
    pub fn new(pool: Arc<Pool>, auth: Arc<Auth>) -> Self {
        Self { pool, auth, _service: PhantomData }
    }
}

impl<S> Clone for Forward<S> {
    fn clone(&self) -> Self {
        Self { pool: Arc::clone(&self.pool), auth: Arc::clone(&self.auth), _service: PhantomData }
    }
}

impl<S: Forwarded> NamedService for Forward<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: Forwarded> Service<http::Request<Body>> for Forward<S> {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let metadata = tonic::metadata::MetadataMap::from_headers(request.headers().clone());
        let allowed = self.auth.authorize(&metadata).and_then(|who| who.check_operator(S::NAME));
        let channel = self.pool.healthy_channel();
        Box::pin(async move {
            if let Err(e) = allowed {
                return Ok(Status::from(e).into_http());
            }
            let Some(mut channel) = channel else {
                return Ok(Status::unavailable(format!("no healthy {} endpoint", S::NAME)).into_http());
            };
            if let Err(e) = std::future::poll_fn(|cx| channel.poll_ready(cx)).await {
                return Ok(Status::unavailable(format!("{}: {e}", S::NAME)).into_http());
            }
            Ok(channel.call(request).await.unwrap_or_else(|e| Status::unavailable(format!("{}: {e}", S::NAME)).into_http()))
        })
    }
}
