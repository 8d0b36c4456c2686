//! The completer: group commit for workers' completions. A worker that has decided how to answer
//! a message hands the completion (the message's new state and its replies for the outbox) to a
//! single task, which writes whatever completions have accumulated, from any number of
//! conversations, in one statement and one commit, and answers each worker once its completion is
//! in. On PostgreSQL this turns one statement per answered message into one per batch under load;
//! when idle, a lone completion is written at once (nothing waits for a batch to fill).
//!
//! Only plain completions (replies, no consent event, no handoff) on PostgreSQL are batched;
//! the rest, and everything on SQLite (one writer, nothing to overlap), are written by the worker
//! directly. A batch succeeds or fails as a whole, so when one fails its completions are written
//! again one by one: a message whose completion cannot be written fails alone.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::domain::MessageId;
use crate::store::{BatchedCompletion, Completion, ConversationRecord, Store, StoreError};

/// Completions written in one statement at most.
const MAX_BATCH: usize = 64;
/// Batches being written at once, each on its own connection.
const BATCHES_IN_FLIGHT: usize = 1;

/// Writing a completion failed; the worker retries the conversation later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CompleteError {
    #[error("the store could not complete the message: {0}")]
    Store(Arc<StoreError>),
    #[error("Parley is shutting down")]
    ShuttingDown,
}

impl From<StoreError> for CompleteError {
    fn from(err: StoreError) -> Self {
        CompleteError::Store(Arc::new(err))
    }
}

struct CompleteRequest {
    message: MessageId,
    conversation: ConversationRecord,
    completion: Completion,
    now: i64,
    /// Whether the message was completed now, with the completion handed back.
    done: oneshot::Sender<Result<(bool, Completion), CompleteError>>,
}

/// A handle for completing messages. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Completer {
    store: Store,
    requests: mpsc::Sender<CompleteRequest>,
}

impl Completer {
    /// A handle and the task that writes batches, for the caller to spawn. The task ends when
    /// every `Completer` clone is dropped, after writing what it already took.
    pub fn new(store: Store) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(1024);
        (
            Self {
                store: store.clone(),
                requests: tx,
            },
            run(rx, store),
        )
    }

    /// Marks `message` handled and queues its replies, atomically, exactly as
    /// [`Store::complete_inbound`] does (`false`: it had already been handled, nothing was
    /// written). The completion is handed back for what the worker does next.
    pub async fn complete(
        &self,
        message: MessageId,
        conversation: &ConversationRecord,
        completion: Completion,
        now: i64,
    ) -> Result<(bool, Completion), CompleteError> {
        if !(matches!(self.store, Store::Postgres(_)) && completion.is_plain()) {
            let completed = self
                .store
                .complete_inbound(message, conversation, &completion, now)
                .await?;
            return Ok((completed, completion));
        }
        let (done, answer) = oneshot::channel();
        let request = CompleteRequest {
            message,
            conversation: conversation.clone(),
            completion,
            now,
            done,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| CompleteError::ShuttingDown)?;
        // A dropped answer: the task was stopped with the completion in hand. Whether it was
        // written is unknown; the message is retried, and a second completion writes nothing.
        answer.await.map_err(|_| CompleteError::ShuttingDown)?
    }
}

async fn run(requests: mpsc::Receiver<CompleteRequest>, store: Store) {
    super::group_commit::run(requests, BATCHES_IN_FLIGHT, MAX_BATCH, move |batch| {
        let store = store.clone();
        async move { write_batch(batch, &store).await }
    })
    .await;
}

/// Writes one batch and answers its workers.
async fn write_batch(batch: Vec<CompleteRequest>, store: &Store) {
    let items: Vec<BatchedCompletion> = batch
        .iter()
        .map(|request| BatchedCompletion {
            message: request.message,
            conversation: &request.conversation,
            completion: &request.completion,
            now: request.now,
        })
        .collect();
    let results: Vec<Result<bool, CompleteError>> = match store.complete_inbound_batch(&items).await
    {
        Ok(completed) => completed.into_iter().map(Ok).collect(),
        Err(err) if items.len() == 1 => vec![Err(err.into())],
        Err(err) => {
            // Nothing of the batch was written: each completion again on its own, so only the
            // one that cannot be written fails.
            tracing::warn!(error = %err, messages = items.len(), "a batch of completions failed; writing them one by one");
            let mut results = Vec::with_capacity(items.len());
            for item in &items {
                results.push(
                    store
                        .complete_inbound(
                            item.message,
                            item.conversation,
                            item.completion,
                            item.now,
                        )
                        .await
                        .map_err(CompleteError::from),
                );
            }
            results
        }
    };
    drop(items);
    for (request, result) in batch.into_iter().zip(results) {
        let _ = request
            .done
            .send(result.map(|completed| (completed, request.completion)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::Purpose;
    use crate::domain::{
        Channel, ConversationId, InboundMessage, MessageContent, ProviderMessageId, TenantId,
    };
    use crate::store::NewReply;

    fn text_from(sender: &str) -> InboundMessage {
        InboundMessage {
            tenant: TenantId::default_tenant(),
            channel: Channel::Whatsapp,
            provider_message_id: ProviderMessageId::parse(&format!("wamid.{sender}")).unwrap(),
            sender: sender.to_owned(),
            thread: sender.to_owned(),
            sender_name: None,
            sent_at_ms: 1,
            content: MessageContent::Text {
                body: "price?".to_owned(),
            },
            context: None,
            referral: None,
        }
    }

    fn reply(text: &str) -> Completion {
        Completion {
            answered: true,
            intent: Some("pricing".to_owned()),
            confidence: Some(0.9),
            replies: vec![NewReply {
                id: MessageId::new(),
                text: text.to_owned(),
                purpose: Purpose::Reply,
                blocked: None,
            }],
            consent: None,
            handoff: None,
            agent: None,
        }
    }

    /// One completion PostgreSQL refuses (a NUL character, which `text` cannot hold) fails its
    /// batch as a whole; written again one by one, the others go in and only it fails.
    #[tokio::test]
    async fn a_completion_the_database_refuses_fails_alone() {
        let Some(url) = crate::store::test_database_url() else {
            return;
        };
        let schema = format!("store_{}", uuid::Uuid::new_v4().simple());
        let store = Store::open_postgres(&url, Some(&schema)).await.unwrap();
        let senders = ["15550041", "15550042", "15550043"];
        let inbound: Vec<_> = senders.iter().map(|s| text_from(s)).collect();
        store.record_inbound(&inbound, &[], 1).await.unwrap();
        let mut batch = Vec::new();
        let mut answers = Vec::new();
        for (sender, text) in senders.iter().zip(["Fine", "Bad \0 byte", "Also fine"]) {
            let id = ConversationId::derive(&TenantId::default_tenant(), Channel::Whatsapp, sender);
            let conversation = store.conversation(id).await.unwrap().unwrap();
            let pending = store.pending_inbound(id, 10).await.unwrap();
            let (done, answer) = oneshot::channel();
            batch.push(CompleteRequest {
                message: pending[0].id,
                conversation,
                completion: reply(text),
                now: 2,
                done,
            });
            answers.push(answer);
        }
        write_batch(batch, &store).await;

        let mut outcomes = Vec::new();
        for answer in answers {
            outcomes.push(answer.await.unwrap().map(|(completed, _)| completed));
        }
        assert!(matches!(outcomes[0], Ok(true)), "{:?}", outcomes[0]);
        assert!(
            matches!(outcomes[1], Err(CompleteError::Store(_))),
            "{:?}",
            outcomes[1]
        );
        assert!(matches!(outcomes[2], Ok(true)), "{:?}", outcomes[2]);
        let refused =
            ConversationId::derive(&TenantId::default_tenant(), Channel::Whatsapp, senders[1]);
        assert_eq!(store.pending_inbound(refused, 10).await.unwrap().len(), 1);

        let Store::Postgres(pool) = &store else {
            unreachable!("opened PostgreSQL")
        };
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(pool)
            .await
            .unwrap();
    }

    /// On SQLite the worker writes its own completion (nothing goes through the batch task).
    #[tokio::test]
    async fn on_sqlite_a_completion_is_written_directly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("test.db"))
            .await
            .unwrap();
        // No task runs: a completion sent to it would never be answered.
        let (completer, _task) = Completer::new(store.clone());
        store
            .record_inbound(&[text_from("15550051")], &[], 1)
            .await
            .unwrap();
        let id = ConversationId::derive(&TenantId::default_tenant(), Channel::Whatsapp, "15550051");
        let conversation = store.conversation(id).await.unwrap().unwrap();
        let pending = store.pending_inbound(id, 10).await.unwrap();
        let (completed, completion) = completer
            .complete(pending[0].id, &conversation, reply("Hello"), 2)
            .await
            .unwrap();
        assert!(completed);
        assert_eq!(completion.replies[0].text, "Hello");
        let (again, _) = completer
            .complete(pending[0].id, &conversation, reply("Again"), 3)
            .await
            .unwrap();
        assert!(!again);
    }
}
