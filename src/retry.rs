//! The one retry schedule shared by every outbound API.
