//! Turning command-line paths into pipeline files, and reading them.

use anyhow::{bail, Context};
use std::path::Path;

/// Extension of pipeline files.
pub const EXTENSION: &str = "stream";

/// Expands directories into their `*.stream` files (recursively, sorted);
/// files are taken as given.
pub fn expand(paths: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for path in paths {
        let p = Path::new(path);
        if p.is_dir() {
            let before = out.len();
            walk(p, &mut out).with_context(|| format!("cannot list `{path}`"))?;
            out[before..].sort();
        } else if p.exists() {
            out.push(path.clone());
        } else {
            bail!("`{path}` does not exist");
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == EXTENSION) {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// Reads a pipeline file for the compiler; invalid UTF-8 is reported, not replaced.
pub fn load(path: &str) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| format!("not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()))
}
