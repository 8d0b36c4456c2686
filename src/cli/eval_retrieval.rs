//! `parley eval retrieval <questions.csv>`: how well search finds the right document or passage.
//! It ingests `--docs` (default `knowledge/`) into a fresh, temporary knowledge base (SQLite and
//! Qdrant Edge in a temporary dir, BM25, plus dense vectors when `PARLEY_EMBEDDING_MODEL` is set),
//! asks every question, and prints recall@1, recall@5 and MRR ([`crate::knowledge::eval`]);
//! `--json` prints only `{"questions", "recall_at_1", "recall_at_5", "mrr"}`.

use std::path::PathBuf;

use anyhow::Context;

use super::knowledge_bench::temporary_knowledge;
use crate::domain::TenantId;
use crate::knowledge::eval::{RankedResult, first_relevant, read_questions, report};
use crate::knowledge::jobs::read_paths;

#[derive(Debug, clap::Args)]
pub struct RetrievalArgs {
    /// Labelled questions: a CSV with columns question,expected (a document name or id, or a
    /// passage id).
    pub questions: PathBuf,
    /// The documents to search.
    #[arg(long, default_value = "knowledge")]
    pub docs: PathBuf,
    /// Print only the metrics as a JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print each question that missed the top 5.
    #[arg(long)]
    pub verbose: bool,
}

pub async fn run(args: RetrievalArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.questions)
        .with_context(|| format!("cannot read {}", args.questions.display()))?;
    let questions =
        read_questions(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", args.questions.display()))?;
    let uploads = read_paths(std::slice::from_ref(&args.docs))
        .with_context(|| format!("cannot read {}", args.docs.display()))?;

    let (_dir, store, knowledge) = temporary_knowledge().await?;
    let tenant = TenantId::default_tenant();
    let job = knowledge
        .ingest(&tenant, uploads, Vec::new(), &mut |_| {})
        .await?;
    if let Some(failed) = job.files.iter().find(|f| f.error.is_some()) {
        anyhow::bail!(
            "{} could not be ingested: {}",
            failed.name,
            failed.error.as_deref().unwrap_or("")
        );
    }

    let mut ranks = Vec::with_capacity(questions.len());
    for q in &questions {
        let passages = knowledge.search(&tenant, &q.question, &[], 10).await?;
        let results: Vec<RankedResult> = passages
            .iter()
            .map(|p| RankedResult {
                chunk_id: p.chunk_id.to_string(),
                document_id: p.document_id.to_string(),
                document_name: p.document_name.clone(),
            })
            .collect();
        let rank = first_relevant(&results, &q.expected);
        if args.verbose && rank.is_none_or(|r| r > 5) {
            eprintln!(
                "miss: {} (expected {}, got {:?})",
                q.question,
                q.expected,
                results.first().map(|r| &r.document_name)
            );
        }
        ranks.push(rank);
    }
    let metrics = report(&ranks);
    if args.json {
        println!("{}", serde_json::to_string(&metrics)?);
    } else {
        println!("questions  {}", metrics.questions);
        println!("recall@1   {:.3}", metrics.recall_at_1);
        println!("recall@5   {:.3}", metrics.recall_at_5);
        println!("MRR        {:.3}", metrics.mrr);
    }
    drop(knowledge);
    store.close().await;
    Ok(())
}
