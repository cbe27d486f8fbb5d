//! Scratch directories: where a test keeps its files (users files, scenarios, process logs,
//! reports). Removed when the test passes; kept, and named on stderr, when it fails, so the
//! logs of a failed run can be read afterwards.

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under the system's temporary directory.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// `$TMPDIR/sipshard-test-LABEL-PID-N`: unique per call, not just per label (the tests of
    /// one binary run in parallel in one process, and two of them may use one label).
    pub fn new(label: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "sipshard-test-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        // Left over from an earlier process with the same id.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create scratch directory {}: {e}", path.display()));
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `contents` to `name` in the directory; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path.join(name);
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    /// [`Scratch::write`], returning the path as a command-line argument (`--users PATH`).
    pub fn file(&self, name: &str, contents: &str) -> String {
        self.write(name, contents).to_string_lossy().into_owned()
    }
}

impl Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "scratch directory kept for inspection: {}",
                self.path.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_when_the_test_passes() {
        let dir = Scratch::new("kit");
        let file = dir.write("a", "x");
        assert_eq!(fs::read_to_string(&file).unwrap(), "x");
        assert_eq!(dir.file("b", "y"), dir.join("b").to_string_lossy());
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn kept_when_the_test_fails() {
        let kept = std::sync::Mutex::new(PathBuf::new());
        let failed = std::panic::catch_unwind(|| {
            let dir = Scratch::new("kit-failing");
            *kept.lock().unwrap() = dir.path().to_path_buf();
            panic!("a failing test");
        });
        assert!(failed.is_err());
        let path = kept.into_inner().unwrap();
        assert!(path.is_dir());
        fs::remove_dir_all(path).unwrap();
    }
}
