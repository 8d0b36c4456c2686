//! The consent ledger in the record store, on SQLite and PostgreSQL: append-only (raw UPDATE,
//! DELETE and, on PostgreSQL, TRUNCATE are refused by triggers), current consent derived from it,
//! the audit export, and erasure that keeps the ledger.

use parley::consent::{ConsentAction, ConsentSource, NewConsentEvent, SubjectKey};
use parley::domain::{Channel, ContactId, TenantId};
use parley::store::Store;
use secrecy::SecretString;

use crate::store::{postgres_store, sqlite_store, store_suite};

store_suite!(
    the_ledger_refuses_update_and_delete,
    current_consent_is_the_latest_opt_in_or_opt_out,
    the_current_view_equals_a_rebuild_from_the_ledger,
    the_export_lists_events_since_a_time_with_their_contact,
    erasing_a_contact_keeps_its_ledger_under_the_hash,
    generated_secrets_are_created_once,
);

fn key() -> SubjectKey {
    SubjectKey::new(SecretString::from("ledger-test-key"))
}

fn event(contact: ContactId, action: ConsentAction, at_ms: i64) -> NewConsentEvent {
    NewConsentEvent {
        tenant: TenantId::default_tenant(),
        contact,
        channel: Channel::Whatsapp,
        action,
        source: ConsentSource::Keyword,
        proof: Some(format!("message-{at_ms}")),
        detail: Some("stop".to_owned()),
        at_ms,
    }
}

fn contact(n: u32) -> ContactId {
    ContactId::derive(
        &TenantId::default_tenant(),
        Channel::Whatsapp,
        &format!("91980000{n:04}"),
    )
}

/// Runs a statement on whichever pool the store holds and returns its error text, if any.
async fn raw(store: &Store, sql: &str) -> Result<u64, String> {
    match store {
        Store::Sqlite(pool) => sqlx::query(sql)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| e.to_string()),
        Store::Postgres(pool) => sqlx::query(sql)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| e.to_string()),
    }
}

async fn count(store: &Store, sql: &str) -> i64 {
    match store {
        Store::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        Store::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

async fn the_ledger_refuses_update_and_delete(store: Store) {
    let c = contact(1);
    let subject = key().subject(&TenantId::default_tenant(), c);
    store
        .append_consent(&subject, &event(c, ConsentAction::OptOut, 1_000))
        .await
        .unwrap();
    let update = raw(&store, "UPDATE consent_events SET action = 'opt_in'").await;
    assert!(
        update.as_ref().is_err_and(|e| e.contains("append-only")),
        "UPDATE must be refused: {update:?}"
    );
    let delete = raw(&store, "DELETE FROM consent_events").await;
    assert!(
        delete.as_ref().is_err_and(|e| e.contains("append-only")),
        "DELETE must be refused: {delete:?}"
    );
    if matches!(store, Store::Postgres(_)) {
        let truncate = raw(&store, "TRUNCATE consent_events").await;
        assert!(truncate.is_err(), "TRUNCATE must be refused: {truncate:?}");
    }
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM consent_events WHERE action = 'opt_out'"
        )
        .await,
        1
    );
    // Appending still works.
    store
        .append_consent(&subject, &event(c, ConsentAction::OptIn, 2_000))
        .await
        .unwrap();
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM consent_events").await,
        2
    );
}

async fn current_consent_is_the_latest_opt_in_or_opt_out(store: Store) {
    let tenant = TenantId::default_tenant();
    let c = contact(2);
    let subject = key().subject(&tenant, c);
    assert_eq!(
        store
            .latest_consent(&tenant, &subject, Channel::Whatsapp)
            .await
            .unwrap(),
        None
    );
    store
        .append_consent(&subject, &event(c, ConsentAction::OptOut, 1_000))
        .await
        .unwrap();
    store
        .append_consent(&subject, &event(c, ConsentAction::Help, 2_000))
        .await
        .unwrap();
    assert_eq!(
        store
            .latest_consent(&tenant, &subject, Channel::Whatsapp)
            .await
            .unwrap(),
        Some(ConsentAction::OptOut),
        "help changes nothing"
    );
    assert_eq!(
        store
            .latest_consent(&tenant, &subject, Channel::Email)
            .await
            .unwrap(),
        None,
        "per channel"
    );
    store
        .append_consent(&subject, &event(c, ConsentAction::OptIn, 3_000))
        .await
        .unwrap();
    assert_eq!(
        store
            .latest_consent(&tenant, &subject, Channel::Whatsapp)
            .await
            .unwrap(),
        Some(ConsentAction::OptIn)
    );
    let history = store.consent_history(&tenant, &subject).await.unwrap();
    let actions: Vec<&str> = history.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["opt_out", "help", "opt_in"]);
    let other_tenant = TenantId::parse("acme").unwrap();
    assert!(
        store
            .consent_history(&other_tenant, &subject)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn the_current_view_equals_a_rebuild_from_the_ledger(store: Store) {
    let tenant = TenantId::default_tenant();
    // Twenty contacts with interleaved histories on two channels.
    for n in 0..20u32 {
        let c = contact(100 + n);
        let subject = key().subject(&tenant, c);
        for step in 0..(n % 5) {
            let action = if (n + step) % 2 == 0 {
                ConsentAction::OptOut
            } else {
                ConsentAction::OptIn
            };
            let mut e = event(c, action, i64::from(n * 10 + step));
            if step % 3 == 2 {
                e.channel = Channel::Email;
            }
            store.append_consent(&subject, &e).await.unwrap();
        }
    }
    // The rebuild: replay every event in order, keeping the last opt-in/opt-out per key.
    let events: Vec<(String, String, String, String)> = match &store {
        Store::Sqlite(pool) => sqlx::query_as(
            "SELECT tenant_id, subject, channel, action FROM consent_events ORDER BY seq",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        Store::Postgres(pool) => sqlx::query_as(
            "SELECT tenant_id, subject, channel, action FROM consent_events ORDER BY seq",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
    };
    let mut rebuilt = std::collections::BTreeMap::new();
    for (tenant, subject, channel, action) in events {
        if action != "help" {
            rebuilt.insert((tenant, subject, channel), action);
        }
    }
    let view: Vec<(String, String, String, String)> = match &store {
        Store::Sqlite(pool) => {
            sqlx::query_as("SELECT tenant_id, subject, channel, state FROM consent_current")
                .fetch_all(pool)
                .await
                .unwrap()
        }
        Store::Postgres(pool) => {
            sqlx::query_as("SELECT tenant_id, subject, channel, state FROM consent_current")
                .fetch_all(pool)
                .await
                .unwrap()
        }
    };
    let view: std::collections::BTreeMap<_, _> = view
        .into_iter()
        .map(|(t, s, c, a)| ((t, s, c), a))
        .collect();
    assert!(!rebuilt.is_empty());
    assert_eq!(view, rebuilt);
}

async fn the_export_lists_events_since_a_time_with_their_contact(store: Store) {
    let tenant = TenantId::default_tenant();
    let c = contact(3);
    let subject = key().subject(&tenant, c);
    store
        .append_consent(&subject, &event(c, ConsentAction::OptOut, 1_000))
        .await
        .unwrap();
    store
        .append_consent(&subject, &event(c, ConsentAction::OptIn, 5_000))
        .await
        .unwrap();
    let all = store.consent_export(None, 0).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].contact_id.as_deref(), Some(c.to_string().as_str()));
    assert_eq!(all[0].subject, subject);
    let later = store.consent_export(Some(&tenant), 2_000).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].action, "opt_in");
    assert!(
        store
            .consent_export(Some(&TenantId::parse("acme").unwrap()), 0)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn erasing_a_contact_keeps_its_ledger_under_the_hash(store: Store) {
    let tenant = TenantId::default_tenant();
    let wa_id = "919800000004";
    let message = parley::domain::InboundMessage {
        tenant: tenant.clone(),
        channel: Channel::Whatsapp,
        provider_message_id: parley::domain::ProviderMessageId::parse("wamid.erase").unwrap(),
        sender: wa_id.to_owned(),
        thread: wa_id.to_owned(),
        sender_name: Some("Asha".to_owned()),
        sent_at_ms: 1_000,
        content: parley::domain::MessageContent::Text {
            body: "STOP".to_owned(),
        },
        context: None,
        referral: None,
    };
    store.record_inbound(&[message], &[], 1_000).await.unwrap();
    let c = ContactId::derive(&tenant, Channel::Whatsapp, wa_id);
    let subject = key().subject(&tenant, c);
    store
        .append_consent(&subject, &event(c, ConsentAction::OptOut, 1_500))
        .await
        .unwrap();

    let erased = store
        .erase_contact(c)
        .await
        .unwrap()
        .expect("the contact existed");
    assert_eq!(erased.len(), 1);
    assert!(store.contact(c).await.unwrap().is_none());
    assert_eq!(count(&store, "SELECT COUNT(*) FROM messages").await, 0);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM conversations").await, 0);
    // No personal data is left anywhere the address could be found.
    assert_eq!(count(&store, "SELECT COUNT(*) FROM contacts").await, 0);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM consent_subjects").await,
        0
    );
    // The ledger still says opted out, under the same keyed hash.
    assert_eq!(
        store
            .latest_consent(&tenant, &subject, Channel::Whatsapp)
            .await
            .unwrap(),
        Some(ConsentAction::OptOut)
    );
    let export = store.consent_export(None, 0).await.unwrap();
    assert_eq!(export.len(), 1);
    assert_eq!(
        export[0].contact_id, None,
        "the link to the contact is gone"
    );
    assert!(
        store.erase_contact(c).await.unwrap().is_none(),
        "a second erasure finds nothing"
    );
}

async fn generated_secrets_are_created_once(store: Store) {
    let first = store
        .secret_value("consent_subject_key", "aaa")
        .await
        .unwrap();
    let second = store
        .secret_value("consent_subject_key", "bbb")
        .await
        .unwrap();
    assert_eq!(first, "aaa");
    assert_eq!(second, "aaa", "a later replica reads the first value");
}
