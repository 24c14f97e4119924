//! Chat sessions: each turn is answered like a question, recalling earlier turns from the
//! session's own namespace (`session:<key id>:<session id>`, so a key reaches only its own
//! sessions) beside the knowledge namespaces named; both turns are then remembered there.
//! Sessions idle longer than the configured time are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memgpt_proto::gateway::v1::{AskRequest, AskResponse, AskStreamResponse, ChatRequest, Document, RememberRequest, Task};
use tokio::sync::mpsc;

use crate::auth::Principal;
use crate::error::Result;
use crate::stages::Gateway;
use crate::trace::Trace;
use crate::validate;

/// Last use of each live session namespace.
#[derive(Default)]
pub struct Sessions {
    last_used: Mutex<HashMap<String, Instant>>,
}

/// The namespace of a key's session.
pub fn namespace(who: &Principal, session_id: &str) -> Result<String> {
    validate::session_id(session_id)?;
    Ok(format!("session:{}:{}", who.key_id, session_id))
}

impl Sessions {
    fn touch(&self, ns: &str) {
        self.last_used.lock().unwrap_or_else(|p| p.into_inner()).insert(ns.to_string(), Instant::now());
    }

    /// Forgets a session (its namespace is dropped by the caller).
    pub fn remove(&self, ns: &str) {
        self.last_used.lock().unwrap_or_else(|p| p.into_inner()).remove(ns);
    }

    /// Drops the namespaces of sessions idle longer than `idle`, every `idle / 4`.
    pub fn spawn_expiry(gw: Arc<Gateway>, sessions: Arc<Sessions>, idle: Duration) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep((idle / 4).max(Duration::from_millis(100))).await;
                let expired: Vec<String> = {
                    let mut map = sessions.last_used.lock().unwrap_or_else(|p| p.into_inner());
                    let old: Vec<String> = map.iter().filter(|(_, t)| t.elapsed() > idle).map(|(k, _)| k.clone()).collect();
                    old.iter().for_each(|k| {
                        map.remove(k);
                    });
                    old
                };
                for ns in expired {
                    let outcome = gw.memory.drop_namespace(&Trace::current(), &ns).await;
                    tracing::info!(namespace = %ns, ok = outcome.is_ok(), "idle chat session expired");
                }
            }
        });
    }
}

/// One chat turn.
pub async fn turn(
    gw: Arc<Gateway>,
    sessions: Arc<Sessions>,
    who: Principal,
    trace: Trace,
    req: ChatRequest,
    tx: mpsc::Sender<std::result::Result<AskStreamResponse, tonic::Status>>,
) -> Result<AskResponse> {
    let ns = namespace(&who, &req.session_id)?;
    let ask = AskRequest {
        question: req.message.clone(),
        namespaces: req.namespaces,
        top_k: req.top_k,
        filter: req.filter,
        min_score: req.min_score,
        attend_mode: gw.config.attend_mode(req.attend_mode),
        task: Task::Qa as i32,
        target_language: String::new(),
        params: req.params,
        retrieval: req.retrieval,
        as_of: req.as_of,
        max_hops: req.max_hops,
        answer_style: req.answer_style,
        attribution: req.attribution,
        order_by_attribution: req.order_by_attribution,
    };
    sessions.touch(&ns);
    let answer = super::ask::ask(Arc::clone(&gw), who.clone(), trace.clone(), ask, super::ask::Context { recall: Some(ns.clone()), ..Default::default() }, tx).await?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let turns = RememberRequest {
        namespace: ns.clone(),
        documents: vec![
            Document { id: format!("turn-{stamp}-user"), text: format!("User: {}", req.message), metadata: Default::default(), ..Default::default() },
            Document { id: format!("turn-{stamp}-assistant"), text: format!("Assistant: {}", answer.answer), metadata: Default::default(), ..Default::default() },
        ],
        warm: false,
        ..Default::default()
    };
    super::memories::remember_unchecked(&gw, &trace, turns).await?;
    sessions.touch(&ns);
    Ok(answer)
}
