//! Runs a fake's router on `127.0.0.1:0` until the returned guard is dropped.

use std::net::SocketAddr;

use axum::Router;
use tokio_util::sync::{CancellationToken, DropGuard};

pub(crate) async fn serve_local(app: Router) -> std::io::Result<(SocketAddr, DropGuard)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await;
    });
    Ok((addr, stop.drop_guard()))
}
