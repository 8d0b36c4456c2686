//! Which conversation an email belongs to. The thread key is the thread's root Message-ID: the
//! first id in References, else In-Reply-To, else the message's own id. Before that rule, ids
//! Parley already knows win (a client that dropped References but kept In-Reply-To pointing at
//! one of Parley's replies stays in its thread), and a fresh message sent to a plus-address
//! (`hello+<conversation id>@domain`, the Reply-To of Parley's replies) joins that conversation.

use uuid::Uuid;

use super::inbound::InboundEmail;
use crate::domain::{Channel, ConversationId, TenantId};
use crate::store::{Store, StoreError};

/// The thread key of `email` for `tenant`.
pub async fn thread_key(
    store: &Store,
    tenant: &TenantId,
    email: &InboundEmail,
    own_id: &str,
) -> Result<String, StoreError> {
    let mut known: Vec<String> = email.in_reply_to.iter().cloned().collect();
    known.extend(email.references.iter().rev().cloned());
    if !known.is_empty()
        && let Some(thread) = store.email_thread_of(tenant, &known).await?
    {
        return Ok(thread);
    }
    if let Some(first) = email.references.first() {
        return Ok(first.clone());
    }
    if let Some(parent) = &email.in_reply_to {
        return Ok(parent.clone());
    }
    for recipient in &email.recipients {
        if let Some(conversation) = plus_conversation(recipient)
            && let Some(thread) = store
                .conversation_thread(tenant, Channel::Email, conversation)
                .await?
        {
            return Ok(thread);
        }
    }
    Ok(own_id.to_owned())
}

/// The conversation id in a plus-address (`local+<uuid>@domain`), if it carries one.
pub fn plus_conversation(address: &str) -> Option<ConversationId> {
    let (local, _) = address.split_once('@')?;
    let (_, tag) = local.split_once('+')?;
    Uuid::parse_str(tag).ok().map(ConversationId)
}

/// `local+<conversation>@domain` for the tenant's address `local@domain`.
pub fn plus_address(address: &str, conversation: ConversationId) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let local = local.split('+').next().unwrap_or(local);
            format!("{local}+{}@{domain}", conversation.0.simple())
        }
        None => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plus_address_round_trips_its_conversation() {
        let conversation = ConversationId(Uuid::new_v4());
        let address = plus_address("hello@skyline.example", conversation);
        assert!(address.starts_with("hello+") && address.ends_with("@skyline.example"));
        assert_eq!(plus_conversation(&address), Some(conversation));
        assert_eq!(plus_conversation("foo+bar@multimail.mailgun.org"), None);
        assert_eq!(plus_conversation("hello@skyline.example"), None);
    }
}
