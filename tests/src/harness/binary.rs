//! The programs the suites run: the `herald` binary (crate herald-server) and this
//! crate's `herald-testkit` (fault proxy, load generator, probe). Both are built once
//! per test process, into the target directory the test itself was built in (so
//! `CARGO_TARGET_DIR` and the default `target/` both work).
//!
//! `herald` is built with its `etcd` feature (the etcd store) when herald-server has
//! that feature and `protoc` is available (the `PROTOC` variable, else `protoc` on the
//! `PATH`), since etcd's client needs it to build; otherwise without, and
//! [`etcd_support`] says why (the etcd scenarios then skip with that reason).

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
    /// `Ok` when `herald` was built with etcd support, else why not.
    pub etcd: Result<(), String>,
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

/// `Ok` when `herald` was built with etcd support (`herald serve --store etcd://…`),
/// else why not (builds the programs first, like [`programs`]).
pub fn etcd_support() -> Result<(), &'static str> {
    programs().etcd.as_ref().map_err(String::as_str).copied()
}

/// `protoc`: the `PROTOC` variable if set (it must name a file), else the first
/// `protoc` on the `PATH`; `Err` says why there is none.
pub fn protoc() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PROTOC") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("PROTOC={} is not a file", p.display()))
        };
    }
    find_on_path("protoc").ok_or_else(|| {
        "protoc is not installed (put it on the PATH or set PROTOC; Debian package \
         protobuf-compiler)"
            .into()
    })
}

/// The first file named `program` in a directory of the `PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Whether herald-server declares cargo feature `feature` (from `cargo metadata`).
fn server_has_feature(
    cargo: &std::ffi::OsStr,
    workspace: &Path,
    feature: &str,
) -> Result<bool, String> {
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(workspace)
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let server = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "herald-server"))
        .ok_or("cargo metadata lists no herald-server")?;
    Ok(server["features"].get(feature).is_some())
}

/// Whether to build the etcd feature: `Ok` if so, else why not.
fn etcd_feature(cargo: &std::ffi::OsStr, workspace: &Path) -> Result<(), String> {
    if !server_has_feature(cargo, workspace, "etcd")? {
        return Err("herald-server has no `etcd` cargo feature".into());
    }
    if let Err(why) = protoc() {
        return Err(format!("{why}, and the etcd client needs it to build"));
    }
    Ok(())
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
    let etcd = etcd_feature(&cargo, &workspace);
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(&workspace)
        .arg("--target-dir")
        .arg(&target)
        .args(["-p", "herald-server", "--bin", "herald"])
        .args(["-p", "herald-tests", "--bin", "herald-testkit"]);
    if etcd.is_ok() {
        cmd.args(["--features", "herald-server/etcd"]);
    }
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
        "[harness] built herald ({}) and herald-testkit in {}",
        match &etcd {
            Ok(()) => "with etcd support".to_owned(),
            Err(why) => format!("without etcd support: {why}"),
        },
        super::wait::secs(started.elapsed())
    );
    let programs = Programs {
        herald: profile_dir.join("herald"),
        testkit: profile_dir.join("herald-testkit"),
        etcd,
    };
    for p in [&programs.herald, &programs.testkit] {
        if !p.is_file() {
            return Err(format!("{} is missing after the build", p.display()));
        }
    }
    Ok(programs)
}
