//! Operations: `/healthz` (the process answers), `/readyz` (every backend answers) and
//! `/metrics` (Prometheus text format).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::app::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let (database, queue, memory, vectors) = tokio::join!(
        state.store.ping(),
        state.queue.ping(),
        state.memory.ping(),
        state.knowledge.ping()
    );
    let label = |ok: bool| if ok { "ok" } else { "unavailable" };
    let ready = database.is_ok() && queue.is_ok() && memory.is_ok() && vectors.is_ok();
    if let Err(err) = &vectors {
        tracing::warn!(error = %err, "readiness: vector index unavailable");
    }
    if let Err(err) = &database {
        tracing::warn!(error = %err, "readiness: database unavailable");
    }
    if let Err(err) = &queue {
        tracing::warn!(error = %err, "readiness: work queue unavailable");
    }
    if let Err(err) = &memory {
        tracing::warn!(error = %err, "readiness: memory unavailable");
    }
    let mut body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {
            "database": { "backend": state.store.backend_name(), "status": label(database.is_ok()) },
            "queue": { "backend": backend(&state), "status": label(queue.is_ok()) },
            "memory": { "backend": backend(&state), "status": label(memory.is_ok()) },
            "vector_index": { "backend": state.knowledge.backend_name(), "status": label(vectors.is_ok()) },
        }
    });
    if let Some(waha) = super::waha::readiness(&state).await {
        body["checks"]["waha"] = waha;
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

fn backend(state: &AppState) -> &'static str {
    if state.config.redis_url.is_some() {
        "redis"
    } else {
        "in_process"
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if let Ok(depth) = state.queue.depth().await {
        state.metrics.queue_depth.set(depth as i64);
    }
    if let Ok(depth) = state.store.outbox_depth().await {
        state.metrics.outbox_depth.set(depth);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
