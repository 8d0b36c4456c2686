//! HTTP routers.
