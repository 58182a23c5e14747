//! herald-embedded (being built).
