//! The programs the suites run: the `herald` binary (crate herald-server) and this
//! crate's `herald-testkit` (fault proxy, load generator, probe). Both are built once
//! per test process, into the target directory the test itself was built in (so
//! `CARGO_TARGET_DIR` and the default `target/` both work).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where the programs are, once built.
#[derive(Debug)]
pub struct Programs {
    /// The `herald` binary.
    pub herald: PathBuf,
    /// The `herald-testkit` binary.
    pub testkit: PathBuf,
}

static PROGRAMS: OnceLock<Result<Programs, String>> = OnceLock::new();

/// The built programs; the first call runs `cargo build` (panics with cargo's output
/// when the build fails).
pub fn programs() -> &'static Programs {
    match PROGRAMS.get_or_init(build) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// The `herald` binary.
pub fn herald() -> &'static Path {
    &programs().herald
}

/// The `herald-testkit` binary.
pub fn testkit() -> &'static Path {
    &programs().testkit
}

/// `(target dir, profile dir)` of the running test executable:
/// `<target>/<profile>/deps/<test>`.
fn target_of_current_exe() -> Result<(PathBuf, PathBuf), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let deps = exe.parent().ok_or("test executable has no directory")?;
    let profile_dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().ok_or("deps has no parent")?
    } else {
        deps
    };
    let target = profile_dir.parent().ok_or("profile dir has no parent")?;
    Ok((target.to_owned(), profile_dir.to_owned()))
}

fn build() -> Result<Programs, String> {
    let (target, profile_dir) = target_of_current_exe()?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("tests/ has no parent")?
        .join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(&workspace)
        .arg("--target-dir")
        .arg(&target)
        .args(["-p", "herald-server", "--bin", "herald"])
        .args(["-p", "herald-tests", "--bin", "herald-testkit"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let started = std::time::Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build of herald and herald-testkit failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    eprintln!(
        "[harness] built herald and herald-testkit in {}",
        super::wait::secs(started.elapsed())
    );
    let programs = Programs {
        herald: profile_dir.join("herald"),
        testkit: profile_dir.join("herald-testkit"),
    };
    for p in [&programs.herald, &programs.testkit] {
        if !p.is_file() {
            return Err(format!("{} is missing after the build", p.display()));
        }
    }
    Ok(programs)
}
