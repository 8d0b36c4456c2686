//! The one error type at the HTTP boundary.
