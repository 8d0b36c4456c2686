//! The steps a message goes through, from record to reply.
