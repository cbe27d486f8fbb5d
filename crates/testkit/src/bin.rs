//! Where the workspace's binaries are.
//!
//! `env!("CARGO_BIN_EXE_sipshard")` exists only inside the test crates of the package that owns
//! the binary, not in a library such as this kit, and never in `loadtest`'s tests, which drive
//! the proxy of another package. So every test finds binaries the same way: in
//! `target/<profile>/`, the directory above the `deps/` that holds the running test executable.
//! `cargo test` builds a package's binaries before its integration tests, and
//! `cargo test --workspace` builds every binary of the workspace.

use std::path::{Path, PathBuf};

/// The workspace binary `name` (`sipshard`, `sipshard-load`) built with the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps/", exe.display()));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo test --workspace` builds every binary)",
        path.display()
    );
    path
}

/// The proxy under test.
pub fn sipshard() -> PathBuf {
    bin("sipshard")
}
