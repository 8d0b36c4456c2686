//! The knowledge base through its library API, on SQLite and on PostgreSQL (with Qdrant Edge):
//! every format, per-file errors, versions, deletion, tenants, tags, atomic replacement under
//! concurrent searches, rebuilding the index from the store, and hybrid search with embeddings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parley::config::Config;
use parley::domain::TenantId;
use parley::knowledge::jobs::read_paths;
use parley::knowledge::{JobRecord, Knowledge, Upload};
use parley::store::Store;
use parley::testkit::fake_openai::{FAKE_EMBEDDING_DIMENSIONS, FakeOpenAi};

use crate::common;

#[derive(Debug, Clone, Copy)]
enum Db {
    Sqlite,
    Postgres,
}

struct Kb {
    knowledge: Knowledge,
    store: Store,
    config: Config,
    schema: Option<String>,
    dir: tempfile::TempDir,
}

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

fn upload(name: &str, text: &str) -> Upload {
    Upload {
        name: name.to_owned(),
        bytes: Bytes::from(text.to_owned()),
    }
}

impl Kb {
    async fn open(db: Db, extra: &[(&str, &str)]) -> Option<Kb> {
        let dir = tempfile::tempdir().unwrap();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("PARLEY_DATA_DIR".into(), dir.path().display().to_string());
        env.insert(
            "PARLEY_CONFIG".into(),
            data("empty.toml").display().to_string(),
        );
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let schema = match db {
            Db::Sqlite => None,
            Db::Postgres => {
                let url = common::postgres_url()?;
                env.insert("DATABASE_URL".into(), url);
                Some(common::unique_name("it"))
            }
        };
        let config = Config::from_sources(&env).unwrap();
        let store = Store::open_configured(&config, schema.as_deref())
            .await
            .unwrap();
        let knowledge = Knowledge::open(store.clone(), &config).await.unwrap();
        Some(Kb {
            knowledge,
            store,
            config,
            schema,
            dir,
        })
    }

    /// Drops the knowledge base and opens it again on the same data.
    async fn reopen(self) -> Kb {
        let Kb {
            knowledge,
            store,
            config,
            schema,
            dir,
        } = self;
        drop(knowledge);
        let knowledge = Knowledge::open(store.clone(), &config).await.unwrap();
        Kb {
            knowledge,
            store,
            config,
            schema,
            dir,
        }
    }

    async fn ingest(&self, tenant_name: &str, uploads: Vec<Upload>, tags: &[&str]) -> JobRecord {
        let tags = tags.iter().map(|t| t.to_string()).collect();
        self.knowledge
            .ingest(&tenant(tenant_name), uploads, tags, &mut |_| {})
            .await
            .unwrap()
    }

    async fn search(&self, tenant_name: &str, query: &str) -> Vec<parley::knowledge::Passage> {
        self.knowledge
            .search(&tenant(tenant_name), query, &[], 5)
            .await
            .unwrap()
    }
}

macro_rules! on_both_stores {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn on_sqlite() {
                super::$name(super::Db::Sqlite).await;
            }
            #[tokio::test]
            async fn on_postgres() {
                super::$name(super::Db::Postgres).await;
            }
        }
    };
}

on_both_stores!(every_format_is_read_and_bad_files_are_reported_one_by_one);
async fn every_format_is_read_and_bad_files_are_reported_one_by_one(db: Db) {
    let Some(kb) = Kb::open(db, &[]).await else {
        return;
    };
    let uploads = read_paths(&[data("knowledge")]).unwrap();
    let job = kb.ingest("default", uploads, &["demo"]).await;
    assert_eq!(job.status, "done");
    assert_eq!(job.files_total, 9);
    assert_eq!(job.files_done, 9);
    let status: BTreeMap<&str, (&str, Option<&str>)> = job
        .files
        .iter()
        .map(|f| (f.name.as_str(), (f.status.as_str(), f.error.as_deref())))
        .collect();
    for ok in [
        "about.html",
        "brochure.docx",
        "faq.csv",
        "guide.md",
        "notes.txt",
        "price-list.pdf",
    ] {
        assert_eq!(status[ok].0, "done", "{ok}: {:?}", status[ok]);
    }
    assert_eq!(status["empty.md"], ("failed", Some("the file is empty")));
    assert!(
        status["malformed.pdf"].1.unwrap().contains("damaged"),
        "{:?}",
        status["malformed.pdf"]
    );
    assert!(
        status["setup.exe"]
            .1
            .unwrap()
            .starts_with("unsupported file type")
    );
    assert_eq!(
        job.chunks_done as u64,
        job.files.iter().map(|f| f.chunks).sum::<u64>()
    );

    // PDF: the text layer, with its page.
    let hits = kb.search("default", "covered parking slot").await;
    assert_eq!(hits[0].document_name, "price-list.pdf");
    assert_eq!(hits[0].page, Some(2));
    assert!(hits[0].text.contains("4 lakh"), "{}", hits[0].text);

    // HTML: main text under its headings; navigation, header, footer and scripts are not indexed.
    let hits = kb.search("default", "green building award").await;
    assert_eq!(hits[0].document_name, "about.html");
    assert_eq!(
        hits[0].section.as_deref(),
        Some("About Skyline Habitat > Awards")
    );
    for noise in [
        "menu link text",
        "header banner",
        "footer copyright",
        "tracking do-not-index console",
    ] {
        let hits = kb.search("default", noise).await;
        assert!(
            hits.iter().all(|h| h.document_name != "about.html"),
            "`{noise}` found in about.html: {hits:?}"
        );
    }

    // DOCX: headings become sections; tables are read.
    let hits = kb.search("default", "Sarjapur Road").await;
    assert_eq!(hits[0].document_name, "brochure.docx");
    assert_eq!(
        hits[0].section.as_deref(),
        Some("Skyline Heights brochure > Location")
    );
    let hits = kb.search("default", "carpet area 2 BHK").await;
    assert!(hits[0].text.contains("1,050 sq ft"), "{:?}", hits[0]);

    // CSV FAQ: one chunk per row, titled by its question.
    let hits = kb
        .search("default", "are pets allowed in the project")
        .await;
    assert_eq!(hits[0].document_name, "faq.csv");
    assert_eq!(hits[0].section.as_deref(), Some("Are pets allowed?"));

    // Markdown and plain text.
    let hits = kb
        .search("default", "what should I bring to the gate")
        .await;
    assert_eq!(
        hits[0].section.as_deref(),
        Some("Site visits > What to bring")
    );
    let hits = kb.search("default", "national holidays").await;
    assert_eq!(hits[0].document_name, "notes.txt");

    // The documents list shows the failures too.
    let documents = kb.knowledge.documents(&tenant("default")).await.unwrap();
    let malformed = documents
        .iter()
        .find(|d| d.name == "malformed.pdf")
        .unwrap();
    assert_eq!(malformed.status, "failed");
    assert_eq!(malformed.version, 0);
    assert!(malformed.error.as_deref().unwrap().contains("damaged"));
    let guide = documents.iter().find(|d| d.name == "guide.md").unwrap();
    assert_eq!(
        (guide.status.as_str(), guide.version, guide.chunks),
        ("ready", 1, 3)
    );
    assert_eq!(guide.tags, vec!["demo".to_owned()]);
    assert!(documents.iter().all(|d| d.name != "setup.exe"));
}

on_both_stores!(a_file_over_the_size_limit_is_refused_and_the_others_continue);
async fn a_file_over_the_size_limit_is_refused_and_the_others_continue(db: Db) {
    let Some(kb) = Kb::open(db, &[("PARLEY_KNOWLEDGE_MAX_FILE_BYTES", "1000")]).await else {
        return;
    };
    let uploads =
        read_paths(&[data("knowledge/price-list.pdf"), data("knowledge/guide.md")]).unwrap();
    let job = kb.ingest("default", uploads, &[]).await;
    assert_eq!(job.files[0].name, "guide.md");
    assert_eq!(job.files[0].status, "done");
    assert_eq!(
        job.files[1].error.as_deref(),
        Some("the file is 2031 bytes, over the limit of 1000 bytes")
    );
    assert_eq!(
        kb.search("default", "visit").await[0].document_name,
        "guide.md"
    );
}

on_both_stores!(uploading_a_document_again_replaces_its_chunks);
async fn uploading_a_document_again_replaces_its_chunks(db: Db) {
    let Some(kb) = Kb::open(db, &[]).await else {
        return;
    };
    kb.ingest(
        "default",
        vec![upload(
            "prices.md",
            "# Prices\n\nPrices start at one crore.",
        )],
        &[],
    )
    .await;
    let job = kb
        .ingest(
            "default",
            vec![upload(
                "prices.md",
                "# Prices\n\nPrices start at two crore.",
            )],
            &[],
        )
        .await;
    assert_eq!(job.files[0].status, "done");
    let hits = kb.search("default", "prices start crore").await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].text, "Prices start at two crore.");
    let documents = kb.knowledge.documents(&tenant("default")).await.unwrap();
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0].version, 2);

    // The same bytes and tags again change nothing.
    let job = kb
        .ingest(
            "default",
            vec![upload(
                "prices.md",
                "# Prices\n\nPrices start at two crore.",
            )],
            &[],
        )
        .await;
    assert_eq!(job.files[0].status, "unchanged");
    assert_eq!(
        kb.knowledge.documents(&tenant("default")).await.unwrap()[0].version,
        2
    );

    // A failed re-upload keeps the live version searchable and records the error.
    let job = kb
        .ingest("default", vec![upload("prices.md", "   ")], &[])
        .await;
    assert_eq!(job.files[0].status, "failed");
    let documents = kb.knowledge.documents(&tenant("default")).await.unwrap();
    assert_eq!(
        (documents[0].status.as_str(), documents[0].version),
        ("ready", 2)
    );
    assert!(documents[0].error.is_some());
    assert_eq!(kb.search("default", "crore").await.len(), 1);
    assert_eq!(kb.knowledge.index().count().await.unwrap(), 1);
}

on_both_stores!(a_deleted_document_leaves_search_at_once);
async fn a_deleted_document_leaves_search_at_once(db: Db) {
    let Some(kb) = Kb::open(db, &[]).await else {
        return;
    };
    let job = kb
        .ingest(
            "default",
            vec![
                upload("pool.md", "The pool opens at six."),
                upload("gym.md", "The gym opens at five."),
            ],
            &[],
        )
        .await;
    let pool = job.files[0].document_id.unwrap();
    kb.knowledge
        .delete_document(&tenant("default"), pool)
        .await
        .unwrap();
    let hits = kb.search("default", "pool gym opens").await;
    assert_eq!(
        hits.iter()
            .map(|h| h.document_name.as_str())
            .collect::<Vec<_>>(),
        vec!["gym.md"]
    );
    assert_eq!(kb.knowledge.index().count().await.unwrap(), 1);
    let again = kb.knowledge.delete_document(&tenant("default"), pool).await;
    assert!(matches!(
        again,
        Err(parley::knowledge::KnowledgeError::NotFound)
    ));
    // Another tenant cannot delete it either.
    let gym = job.files[1].document_id.unwrap();
    let other = kb.knowledge.delete_document(&tenant("acme"), gym).await;
    assert!(matches!(
        other,
        Err(parley::knowledge::KnowledgeError::NotFound)
    ));
}

on_both_stores!(one_tenant_never_retrieves_another_tenants_chunks);
async fn one_tenant_never_retrieves_another_tenants_chunks(db: Db) {
    let Some(kb) = Kb::open(db, &[]).await else {
        return;
    };
    let words = [
        "pool", "parking", "price", "visit", "loan", "garden", "school", "metro",
    ];
    let docs = |tenant_word: &str| -> Vec<Upload> {
        words
            .iter()
            .map(|w| {
                upload(
                    &format!("{w}.md"),
                    &format!("# {w}\n\nThe {w} of {tenant_word} is described here, {w} {w}."),
                )
            })
            .collect()
    };
    kb.ingest("default", docs("alpha"), &[]).await;
    kb.ingest("acme", docs("beta"), &[]).await;
    for query in words.iter().map(|w| format!("{w} beta alpha")) {
        for (tenant_name, own, other) in [("default", "alpha", "beta"), ("acme", "beta", "alpha")] {
            let hits = kb
                .knowledge
                .search(&tenant(tenant_name), &query, &[], 50)
                .await
                .unwrap();
            assert!(!hits.is_empty());
            assert!(
                hits.iter()
                    .all(|h| h.text.contains(own) && !h.text.contains(other)),
                "{hits:?}"
            );
        }
    }
    let hits = kb.search("nobody", "pool").await;
    assert!(hits.is_empty());
}

on_both_stores!(tags_limit_search_to_documents_carrying_them);
async fn tags_limit_search_to_documents_carrying_them(db: Db) {
    let Some(kb) = Kb::open(db, &[]).await else {
        return;
    };
    kb.ingest(
        "default",
        vec![upload("price.md", "Parking costs four lakh.")],
        &["pricing"],
    )
    .await;
    kb.ingest(
        "default",
        vec![upload("faq.md", "Parking is covered.")],
        &["faq"],
    )
    .await;
    let search = |tags: &'static [&'static str]| {
        let kb = &kb;
        async move {
            let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            let hits = kb
                .knowledge
                .search(&tenant("default"), "parking", &tags, 5)
                .await
                .unwrap();
            let mut names: Vec<String> = hits.into_iter().map(|h| h.document_name).collect();
            names.sort();
            names
        }
    };
    assert_eq!(search(&["pricing"]).await, vec!["price.md"]);
    assert_eq!(
        search(&["faq", "pricing"]).await,
        vec!["faq.md", "price.md"]
    );
    assert_eq!(search(&[]).await, vec!["faq.md", "price.md"]);
    assert!(search(&["projects"]).await.is_empty());
}

on_both_stores!(searches_during_a_reupload_never_see_a_mix_of_versions);
async fn searches_during_a_reupload_never_see_a_mix_of_versions(db: Db) {
    let Some(kb) = Kb::open(
        db,
        &[("PARLEY_CHUNK_TOKENS", "16"), ("PARLEY_CHUNK_OVERLAP", "0")],
    )
    .await
    else {
        return;
    };
    let version = |label: &str| {
        let sections: String = (0..40)
            .map(|i| {
                format!("## Part {i}\n\nThe tower brochure part {i} is edition {label} today.\n\n")
            })
            .collect();
        upload("brochure.md", &format!("# Brochure\n\n{sections}"))
    };
    kb.ingest("default", vec![version("alpha")], &[]).await;
    let done = Arc::new(AtomicBool::new(false));
    let mut searchers = Vec::new();
    for _ in 0..4 {
        let knowledge = kb.knowledge.clone();
        let done = done.clone();
        searchers.push(tokio::spawn(async move {
            let mut searches = 0;
            while !done.load(Ordering::Relaxed) {
                let hits = knowledge
                    .search(
                        &TenantId::default_tenant(),
                        "tower brochure edition",
                        &[],
                        20,
                    )
                    .await
                    .unwrap();
                let editions: std::collections::BTreeSet<&str> = hits
                    .iter()
                    .map(|h| h.text.split("edition ").nth(1).unwrap_or("?"))
                    .collect();
                assert!(editions.len() <= 1, "a mix of versions: {editions:?}");
                assert!(!hits.is_empty(), "the document vanished during a re-upload");
                searches += 1;
                tokio::task::yield_now().await;
            }
            searches
        }));
    }
    for label in ["beta", "gamma", "delta", "epsilon", "zeta"] {
        kb.ingest("default", vec![version(label)], &[]).await;
    }
    done.store(true, Ordering::Relaxed);
    let mut total = 0;
    for searcher in searchers {
        total += searcher.await.unwrap();
    }
    assert!(
        total > 20,
        "only {total} searches ran during the re-uploads"
    );
    let hits = kb.search("default", "tower brochure edition").await;
    assert!(hits.iter().all(|h| h.text.contains("zeta")));
}

on_both_stores!(the_index_is_rebuilt_from_the_store_when_they_disagree);
async fn the_index_is_rebuilt_from_the_store_when_they_disagree(db: Db) {
    let Some(kb) = Kb::open(db, &[]).await else {
        return;
    };
    kb.ingest(
        "default",
        vec![upload("gym.md", "The gym opens at five.")],
        &[],
    )
    .await;
    let index_dir = kb.dir.path().join("knowledge-index");
    // Lost writes (what Qdrant Edge 0.7.2 does after a crash): the index files are gone.
    let kb = {
        let Kb {
            knowledge,
            store,
            config,
            schema,
            dir,
        } = kb;
        drop(knowledge);
        std::fs::remove_dir_all(&index_dir).unwrap();
        Kb {
            knowledge: Knowledge::open(store.clone(), &config).await.unwrap(),
            store,
            config,
            schema,
            dir,
        }
    };
    assert_eq!(kb.search("default", "gym").await[0].document_name, "gym.md");
    // And the rebuilt index survives another restart.
    let kb = kb.reopen().await;
    assert_eq!(kb.knowledge.index().count().await.unwrap(), 1);
    assert_eq!(kb.search("default", "gym").await.len(), 1);
}

#[tokio::test]
async fn embeddings_make_search_hybrid_and_are_stored_with_the_chunks() {
    let fake = FakeOpenAi::start().await;
    let dims = FAKE_EMBEDDING_DIMENSIONS.to_string();
    let Some(kb) = Kb::open(
        Db::Sqlite,
        &[
            ("OPENAI_API_KEY", "test-key"),
            ("OPENAI_BASE_URL", &fake.base_url()),
            ("PARLEY_EMBEDDING_MODEL", "fake-embed"),
            ("PARLEY_EMBEDDING_DIMENSIONS", &dims),
        ],
    )
    .await
    else {
        return;
    };
    let uploads = read_paths(&[data("knowledge/guide.md"), data("knowledge/faq.csv")]).unwrap();
    let job = kb.ingest("default", uploads, &[]).await;
    assert!(job.files.iter().all(|f| f.status == "done"), "{job:?}");
    let hits = kb.search("default", "are pets allowed").await;
    assert_eq!(hits[0].section.as_deref(), Some("Are pets allowed?"));

    let requests = fake.requests();
    let embeddings: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/v1/embeddings")
        .collect();
    assert_eq!(embeddings.len(), 3, "one per file and one for the query");
    assert_eq!(embeddings[0].body["model"], "fake-embed");
    assert_eq!(
        embeddings[0].authorization.as_deref(),
        Some("Bearer test-key")
    );
    assert_eq!(
        embeddings[2].body["input"],
        serde_json::json!(["are pets allowed"])
    );
    // The dense vectors are in the store, so a rebuild needs no embedding calls.
    let kb = {
        let Kb {
            knowledge,
            store,
            config,
            schema,
            dir,
        } = kb;
        drop(knowledge);
        std::fs::remove_dir_all(dir.path().join("knowledge-index")).unwrap();
        Kb {
            knowledge: Knowledge::open(store.clone(), &config).await.unwrap(),
            store,
            config,
            schema,
            dir,
        }
    };
    assert_eq!(fake.requests().len(), requests.len());
    let hits = kb.search("default", "are pets allowed").await;
    assert_eq!(hits[0].section.as_deref(), Some("Are pets allowed?"));
}

#[tokio::test]
async fn a_write_ahead_log_over_its_limit_is_reclaimed_by_rebuilding_into_a_fresh_shard() {
    let Some(kb) = Kb::open(Db::Sqlite, &[("PARLEY_INDEX_WAL_LIMIT_BYTES", "1")]).await else {
        return;
    };
    let current =
        || std::fs::read_to_string(kb.dir.path().join("knowledge-index/CURRENT")).unwrap();
    let before = current();
    kb.ingest(
        "default",
        vec![upload("gym.md", "The gym opens at five.")],
        &[],
    )
    .await;
    let after = current();
    assert_ne!(
        before, after,
        "the job's housekeeping rebuilt the index into a new shard"
    );
    assert!(
        !kb.dir
            .path()
            .join("knowledge-index")
            .join(before.trim())
            .exists()
    );
    assert_eq!(kb.search("default", "gym").await[0].document_name, "gym.md");
    assert_eq!(kb.knowledge.index().count().await.unwrap(), 1);
}
