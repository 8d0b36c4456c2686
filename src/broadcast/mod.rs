//! Live-update fan-out to server-sent-event listeners: in-process or Redis pub/sub.
