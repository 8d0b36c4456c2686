//! WhatsApp Cloud API: webhook verification, signature, payload parsing and the send client.
