//! Group commit, shared by the recorder and the completer: one task takes whatever requests have
//! accumulated in its channel as a batch and hands it to a writer, with at most a given number of
//! batches being written at once. While every slot writes, requests pile up into the next batch;
//! when idle, a lone request is written at once (nothing waits for a batch to fill).

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

/// Runs until every sender of `requests` is dropped, then finishes the batches already taken.
pub async fn run<R, W, F>(
    mut requests: mpsc::Receiver<R>,
    in_flight: usize,
    max_batch: usize,
    write: W,
) where
    R: Send + 'static,
    W: Fn(Vec<R>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(in_flight));
    let mut writes = JoinSet::new();
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        // A free slot first: while every slot writes, requests pile up into the next batch.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        if requests.recv_many(&mut batch, max_batch).await == 0 {
            break;
        }
        let taken = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
        let written = write(taken);
        writes.spawn(async move {
            written.await;
            drop(permit);
        });
        while writes.try_join_next().is_some() {}
    }
    while writes.join_next().await.is_some() {}
}
