//! herald-server (being built).
