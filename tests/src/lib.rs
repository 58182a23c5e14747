//! herald-tests (being built).
