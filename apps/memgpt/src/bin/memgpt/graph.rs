//! `memgpt graph ENTITY`: the facts around an entity, hop by hop, in both directions.

use std::io::Write;

use memgpt_proto::gateway::v1 as gw;

use crate::client::{describe, ClientArgs};
use crate::commands::runtime;

/// Options of `memgpt graph`.
#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// The entity (matched trimmed, lowercased, inner spaces as one).
    pub entity: String,
    /// Namespaces to look in (repeatable).
    #[arg(long = "namespace", short = 'n', default_value = "default")]
    pub namespaces: Vec<String>,
    /// Hops to go out (1: the facts that name the entity).
    #[arg(long, default_value_t = 1)]
    pub hops: u32,
    /// Most facts shown (server bound when unset).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Only facts valid at this time (RFC 3339; default: now).
    #[arg(long)]
    pub as_of: Option<String>,
    /// Print the response as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn graph(client: ClientArgs, args: GraphArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let mut gateway = client.connect().await?;
        let req = gw::NeighborsRequest {
            entity: args.entity.clone(),
            namespaces: args.namespaces.clone(),
            hops: args.hops,
            limit: args.limit.unwrap_or(0),
            as_of: args.as_of.clone().unwrap_or_default(),
        };
        let resp = gateway.neighbors(req).await.map_err(|s| anyhow::anyhow!(describe(&s)))?.into_inner();
        let mut out = std::io::stdout().lock();
        if args.json {
            let edges: Vec<_> = resp
                .edges
                .iter()
                .map(|e| serde_json::json!({"hop": e.hop, "subject": e.subject, "relation": e.relation, "object": e.object, "memory_id": e.memory_id, "namespace": e.namespace}))
                .collect();
            writeln!(out, "{}", serde_json::json!({"edges": edges, "truncated": resp.truncated, "trace_id": resp.trace_id}))?;
            return Ok(());
        }
        if resp.edges.is_empty() {
            writeln!(out, "no facts about {:?}", args.entity)?;
        }
        for e in &resp.edges {
            writeln!(out, "hop {}  {} --{}--> {}  ({} {})", e.hop, e.subject, e.relation, e.object, e.namespace, e.memory_id)?;
        }
        if resp.truncated {
            writeln!(out, "(cut short by a bound: raise --limit or the gateway's --hop-fanout / --hop-facts)")?;
        }
        Ok(())
    })
}
