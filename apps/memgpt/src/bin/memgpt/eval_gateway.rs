//! `memgpt eval gateway-retrieval`: a BEIR data set through the gateway: Remember the corpus
//! (chunked, encoded, stored in the memory service), then Search each query with
//! `group_by_document` in each ranking mode asked for, and score each mode's document
//! rankings (a block of metric lines after `retrieval <mode>`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::gateway::v1::gateway_client::GatewayClient;

use crate::eval::Beir;

/// Options of `memgpt eval gateway-retrieval`.
#[derive(Debug, clap::Args)]
pub struct GatewayRetrievalArgs {
    /// BEIR folder: corpus.jsonl or corpus.jsonl.gz, queries.jsonl, qrels/test.tsv.
    #[arg(long)]
    data: PathBuf,
    /// A running gateway (http://host:port); without it the three services run in-process.
    #[arg(long, alias = "addr")]
    gateway: Option<String>,
    /// API key for `--gateway`.
    #[arg(long, env = "MEMGPT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Namespace to remember the corpus in.
    #[arg(long, default_value = "beir")]
    namespace: String,
    /// Keep only the judged-relevant documents plus this many others (a quick subset).
    #[arg(long)]
    corpus_limit: Option<usize>,
    /// Search only: the corpus is already remembered in `--namespace` of `--gateway`.
    #[arg(long, requires = "gateway")]
    no_remember: bool,
    /// Documents per Remember call (larger batches pad less when encoding).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Searches in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Ranking modes to score, comma-separated: dense, sparse, hybrid (the corpus is
    /// remembered once).
    #[arg(long, value_delimiter = ',', default_value = "hybrid", value_parser = ["dense", "sparse", "hybrid"])]
    retrieval: Vec<String>,
    /// How hybrid fuses: rrf or convex (the gateway's default when unset).
    #[arg(long, value_parser = ["rrf", "convex"])]
    fusion: Option<String>,
    /// RRF's k.
    #[arg(long)]
    rrf_k: Option<u32>,
    /// The dense list's weight of a convex fusion.
    #[arg(long)]
    dense_weight: Option<f32>,
    #[command(flatten)]
    model: crate::ModelArgs,
}

pub fn with_key<T>(msg: T, key: &Option<String>) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    memgpt_proto::auth::Bearer::new(key.as_deref()).context("the API key is not valid metadata")?.apply(req.metadata_mut());
    Ok(req)
}

pub fn gateway_retrieval(args: GatewayRetrievalArgs) -> anyhow::Result<()> {
    let beir = Beir::load(&args.data, args.corpus_limit)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let data = tempfile::tempdir()?;
        let (addr, stack) = match &args.gateway {
            Some(a) => (a.clone(), None),
            None => {
                let serve = crate::serve::ServeArgs::loopback(data.path().to_path_buf(), &args.model);
                let stack = crate::serve::start(&serve).await?;
                (stack.url(), Some(stack))
            }
        };
        let outcome = async {
            let mut client = GatewayClient::connect(addr.clone()).await.with_context(|| format!("cannot reach the gateway at {addr}"))?;
            let started = Instant::now();
            let docs: Vec<gw::Document> = beir
                .doc_ids
                .iter()
                .zip(&beir.doc_texts)
                .map(|(id, text)| gw::Document { id: id.clone(), text: text.clone(), metadata: Default::default(), ..Default::default() })
                .collect();
            let to_remember = if args.no_remember { &docs[..0] } else { &docs[..] };
            for batch in to_remember.chunks(args.batch.max(1)) {
                let req = gw::RememberRequest { namespace: args.namespace.clone(), documents: batch.to_vec(), warm: false, ..Default::default() };
                let resp = client.remember(with_key(req, &args.api_key)?).await?.into_inner();
                if let Some(failed) = resp.results.iter().find(|r| r.status != gw::DocumentStatus::Stored as i32) {
                    anyhow::bail!("document {} was not stored: {}", failed.document_id, failed.error);
                }
            }
            let secs = started.elapsed().as_secs_f64();
            eprintln!("remembered {} documents in {secs:.1} s ({:.1} documents/s)", to_remember.len(), to_remember.len() as f64 / secs);
            let mut per_mode = Vec::new();
            for mode in &args.retrieval {
                let ranking = crate::client::ranking(Some(mode), args.fusion.as_deref(), args.rrf_k, args.dense_weight);
                let started = Instant::now();
                let searches = beir.test.iter().map(|(_, text)| {
                    let mut client = client.clone();
                    let req = gw::SearchRequest {
                        question: text.clone(),
                        namespaces: vec![args.namespace.clone()],
                        top_k: Some(10),
                        group_by_document: true,
                        retrieval: Some(ranking),
                        ..Default::default()
                    };
                    let req = with_key(req, &args.api_key);
                    async move {
                        let resp = client.search(req?).await?.into_inner();
                        Ok::<_, anyhow::Error>(resp.citations.into_iter().map(|c| c.document_id).collect::<Vec<String>>())
                    }
                });
                let rankings: Vec<Vec<String>> = futures::stream::iter(searches).buffered(args.concurrency.max(1)).collect::<Vec<_>>().await.into_iter().collect::<anyhow::Result<_>>()?;
                eprintln!("searched {} queries ({mode}) in {:.1} s", rankings.len(), started.elapsed().as_secs_f64());
                per_mode.push((mode.clone(), rankings));
            }
            Ok::<_, anyhow::Error>(per_mode)
        }
        .await;
        // Stop the in-process services (the store flushes) before its folder goes.
        if let Some(stack) = stack {
            stack.shutdown().await?;
        }
        for (mode, rankings) in outcome? {
            println!("retrieval {mode}");
            beir.report(&rankings);
        }
        Ok(())
    })
}
