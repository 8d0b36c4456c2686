//! `parley ingest <paths or folders>`: adds documents to the knowledge base of the configured
//! data dir or database, in this process, with a progress bar, and prints what happened to each
//! file. With the embedded Qdrant Edge index a running `parley serve` holds the index, so upload
//! through `POST /api/v1/knowledge/documents` instead (the command says so).

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::domain::TenantId;
use crate::knowledge::Knowledge;
use crate::knowledge::jobs::{parse_tags, read_paths};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Files or folders (read recursively) to add; a file with the name of an existing document
    /// replaces it.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Tags for every file, comma-separated (e.g. pricing,faq).
    #[arg(long, default_value = "")]
    pub tags: String,
    /// The tenant the documents belong to.
    #[arg(long, default_value = "default")]
    pub tenant: String,
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let config = Config::load()?;
    let tenant = TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    if config.tenant(&tenant).is_none() {
        anyhow::bail!("--tenant: `{tenant}` is not a configured tenant");
    }
    let tags = parse_tags([args.tags.as_str()]).map_err(|e| anyhow::anyhow!("--tags: {e}"))?;
    let uploads = read_paths(&args.paths).context("cannot read the files to ingest")?;
    if uploads.is_empty() {
        anyhow::bail!("no files found in the given paths");
    }
    let store = Store::open_configured(&config, None).await?;
    let knowledge = Knowledge::open(store.clone(), &config).await.map_err(|e| {
        if format!("{e:#}").contains("in use by another process") {
            anyhow::anyhow!(
                "{e:#}: a running `parley serve` holds the knowledge index; upload with POST /api/v1/knowledge/documents instead"
            )
        } else {
            e
        }
    })?;

    let bar = ProgressBar::new(uploads.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files, {msg} [{elapsed_precise}]")
            .expect("a valid progress template"),
    );
    let started = std::time::Instant::now();
    let progress_bar = bar.clone();
    let job = knowledge
        .ingest(&tenant, uploads, tags, &mut move |job| {
            progress_bar.set_position(job.files_done as u64);
            progress_bar.set_message(format!("{} chunks", job.chunks_done));
        })
        .await?;
    bar.finish();
    let elapsed = started.elapsed();
    let mut failed = 0;
    for file in &job.files {
        match &file.error {
            Some(error) => {
                failed += 1;
                println!("failed     {}: {error}", file.name);
            }
            None => println!("{:<10} {} ({} chunks)", file.status, file.name, file.chunks),
        }
    }
    println!(
        "{} files, {} chunks in {:.2} s ({:.0} chunks/s); {failed} failed",
        job.files_total,
        job.chunks_done,
        elapsed.as_secs_f64(),
        job.chunks_done as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    drop(knowledge);
    store.close().await;
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} files could not be ingested",
            job.files_total
        );
    }
    Ok(())
}
