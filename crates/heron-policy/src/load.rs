//! Reading `.rego` files from disk into a regorus engine.

use std::path::{Path, PathBuf};

/// Rego syntax version for a policy folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegoVersion {
    #[default]
    V1,
    V0,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub version: RegoVersion,
    /// Wall-clock limit for one evaluation; a runaway policy fails the event instead of
    /// stalling a worker.
    pub eval_timeout: std::time::Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            version: RegoVersion::V1,
            eval_timeout: std::time::Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    #[error("cannot read policies from {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// regorus's message starts with `file:line:column`.
    #[error("{message}")]
    Compile { path: PathBuf, message: String },
    #[error("no .rego files found under {0}")]
    Empty(PathBuf),
}

/// All `.rego` files under each root (a file or a folder, walked recursively), sorted so
/// that loading is deterministic.
pub(crate) fn rego_files(roots: &[PathBuf]) -> Result<Vec<PathBuf>, PolicyLoadError> {
    let mut files = Vec::new();
    for root in roots {
        collect(root, &mut files)?;
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), PolicyLoadError> {
    let io = |source| PolicyLoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        if path.extension().is_some_and(|e| e == "rego") {
            out.push(path.to_path_buf());
        }
        return Ok(());
    }
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let child = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden {
            collect(&child, out)?;
        }
    }
    Ok(())
}
