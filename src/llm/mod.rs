//! Language understanding: the offline intent classifier and the OpenAI-compatible client.
