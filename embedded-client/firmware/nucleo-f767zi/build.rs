//! Adds defmt's linker script when defmt is on (link.x comes from .cargo/config.toml).
fn main() {
    if std::env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
}
