//! Builds the application state and its background tasks; binds on an injected listener.
