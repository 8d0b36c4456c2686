//! The knowledge API over HTTP on the real server: upload as a job, follow it, list, search,
//! delete; authentication, size limits and malformed requests; readiness; the knowledge folder
//! loaded at first start.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, Backends, Spawn, TestApp};

const BOUNDARY: &str = "parley-test-boundary";

/// A multipart/form-data body with `file` parts and other text fields.
pub(crate) fn multipart(files: &[(&str, &[u8])], fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn data(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

impl TestApp {
    pub(crate) async fn upload(&self, body: Vec<u8>, token: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url("/api/v1/knowledge/documents"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub(crate) async fn wait_for_job(&self, job_id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let job = self
                .admin_get(&format!("/api/v1/knowledge/jobs/{job_id}"))
                .await;
            if job["status"] != "running" {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job still running: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn knowledge_search(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/knowledge/search"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn an_upload_runs_as_a_job_and_its_documents_are_listed_searched_and_deleted() {
    let app = TestApp::embedded().await;
    let body = multipart(
        &[
            ("price-list.pdf", &data("knowledge/price-list.pdf")),
            ("faq.csv", &data("knowledge/faq.csv")),
            ("malformed.pdf", &data("knowledge/malformed.pdf")),
        ],
        &[("tags", "pricing, faq")],
    );
    let response = app.upload(body, Some(ADMIN_TOKEN)).await;
    assert_eq!(response.status(), 202);
    let job_id = response.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let job = app.wait_for_job(&job_id).await;
    assert_eq!(job["status"], "done");
    assert_eq!(job["files_total"], 3);
    assert_eq!(job["files_done"], 3);
    assert_eq!(job["chunks_done"], 4, "{job}");
    assert_eq!(job["errors"].as_array().unwrap().len(), 1);
    assert_eq!(job["errors"][0]["file"], "malformed.pdf");
    assert!(
        job["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("damaged")
    );

    let documents = app.admin_get("/api/v1/knowledge/documents").await;
    let documents = documents["documents"].as_array().unwrap();
    let price = documents
        .iter()
        .find(|d| d["name"] == "price-list.pdf")
        .unwrap();
    assert_eq!(price["version"], 1);
    assert_eq!(price["tags"], json!(["faq", "pricing"]));
    assert_eq!(price["chunks"], 2);
    assert_eq!(price["status"], "ready");
    assert!(price["error"].is_null());
    assert!(price["uploaded_at"].as_str().unwrap().ends_with('Z'));

    let response = app
        .knowledge_search(json!({"query": "covered parking slot", "tags": ["pricing"], "limit": 1}))
        .await;
    assert_eq!(response.status(), 200);
    let results = response.json::<Value>().await.unwrap()["results"].clone();
    assert_eq!(results.as_array().unwrap().len(), 1);
    let hit = &results[0];
    assert_eq!(hit["document"]["name"], "price-list.pdf");
    assert_eq!(hit["document"]["id"], price["id"]);
    assert_eq!(hit["page"], 2);
    assert!(hit["chunk_id"].as_str().is_some());
    assert!(hit["score"].as_f64().unwrap() > 0.0);
    assert!(hit["text"].as_str().unwrap().contains("parking"));

    let id = price["id"].as_str().unwrap();
    let response = app
        .http
        .delete(app.url(&format!("/api/v1/knowledge/documents/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let results = app
        .knowledge_search(json!({"query": "covered parking slot"}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert!(
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["document"]["name"] != "price-list.pdf"),
        "{results}"
    );
    let again = app
        .http
        .delete(app.url(&format!("/api/v1/knowledge/documents/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "not_found");
}

#[tokio::test]
async fn the_knowledge_api_requires_the_admin_token() {
    let app = TestApp::embedded().await;
    let response = app
        .upload(multipart(&[("a.md", b"hello")], &[]), None)
        .await;
    assert_eq!(response.status(), 401);
    let response = app
        .upload(multipart(&[("a.md", b"hello")], &[]), Some("wrong"))
        .await;
    assert_eq!(response.status(), 401);
    for path in [
        "/api/v1/knowledge/documents",
        "/api/v1/knowledge/jobs/0190b1c2-0000-7000-8000-000000000000",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
    let response = app
        .http
        .post(app.url("/api/v1/knowledge/search"))
        .json(&json!({"query": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_clear_errors() {
    let mut spawn = Spawn::new(Backends::Embedded);
    spawn
        .extra_env
        .push(("PARLEY_KNOWLEDGE_MAX_UPLOAD_BYTES".into(), "2000".into()));
    let app = TestApp::start(spawn).await;

    let big = vec![b'a'; 5000];
    let response = app
        .upload(multipart(&[("big.txt", &big)], &[]), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "payload_too_large"
    );

    let response = app
        .upload(multipart(&[], &[("tags", "faq")]), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(response.status(), 400);
    assert!(
        response.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("file")
    );

    let response = app
        .upload(
            multipart(&[("a.md", b"hi")], &[("tags", "not a tag!")]),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(response.status(), 400);

    let response = app
        .upload(
            multipart(&[("a.md", b"hi")], &[("tenant", "nobody")]),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(response.status(), 400);
    assert!(
        response.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("unknown tenant")
    );

    for body in [
        json!({"query": "  "}),
        json!({"query": "x", "colour": "red"}),
        json!({"limit": 3}),
    ] {
        let response = app.knowledge_search(body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"],
            "bad_request"
        );
    }

    let response = app
        .http
        .get(app.url("/api/v1/knowledge/jobs/not-a-uuid"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = app
        .http
        .get(app.url("/api/v1/knowledge/jobs/0190b1c2-0000-7000-8000-000000000000"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn readiness_reports_the_vector_index() {
    let app = TestApp::embedded().await;
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["checks"]["vector_index"],
        json!({"backend": "qdrant_edge", "status": "ok"})
    );
}

#[tokio::test]
async fn the_knowledge_folder_is_loaded_at_first_start_only() {
    let mut spawn = Spawn::new(Backends::Embedded);
    spawn
        .extra_env
        .push(("PARLEY_KNOWLEDGE_AUTOLOAD".into(), "true".into()));
    let app = TestApp::start(spawn).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let documents = loop {
        let body = app.admin_get("/api/v1/knowledge/documents").await;
        let documents = body["documents"].as_array().unwrap().clone();
        if documents.len() == 5 && documents.iter().all(|d| d["status"] == "ready") {
            break documents;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let faq = documents.iter().find(|d| d["name"] == "faq.csv").unwrap();
    assert_eq!(faq["tags"], json!(["faq"]));
    let results = app
        .knowledge_search(json!({"query": "Is the booking amount refundable?", "tags": ["faq"]}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(results["results"][0]["document"]["name"], "faq.csv");

    // Deleting a demo document and restarting does not bring it back.
    let id = faq["id"].as_str().unwrap();
    let response = app
        .http
        .delete(app.url(&format!("/api/v1/knowledge/documents/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let app = app.crash_and_restart(true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = app.admin_get("/api/v1/knowledge/documents").await;
    assert_eq!(body["documents"].as_array().unwrap().len(), 4);
}
