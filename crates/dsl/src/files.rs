//! Pipeline files on disk: which files one compilation starts from.
//!
//! The only module of this crate that touches the file system, so that every
//! command and the daemon agree on what a directory means. The root rule:
//!
//! * every `*.stream` file named, or found under a named directory (at any
//!   depth), is a **root**: whatever it defines is compiled;
//! * imports resolve relative to the importing file (see [`crate::load`]);
//!   a file that is both found and imported is loaded once, so a library
//!   file beside the pipelines that import it defines nothing twice;
//! * when only directories are named (as a deploy names one), an import
//!   reads only inside them: a deployed directory carries nothing else, so
//!   [`compile`] refuses what a deploy would. A named file (which is never
//!   deployed as such) may import from anywhere;
//! * a bundle of a directory ([`bundle_files`]) holds exactly the files
//!   [`find`] finds there, named relative to it, and
//!   [`crate::bundle::Bundle::compile`] takes every one of them as a root:
//!   a deployed directory compiles to the plan `check` reports for it.

use crate::load::normalize;
use crate::{Compiled, Error, Result};
use std::path::Path;

/// Extension of pipeline files.
pub const EXTENSION: &str = "stream";

/// The roots `paths` name: files as given, directories expanded into
/// every `*.stream` file under them (recursively; each directory's files
/// sorted by path, so the order, and with it the order of the plan's
/// metrics, does not depend on the file system).
///
/// # Errors
/// A path that does not exist or a directory that cannot be listed.
pub fn find<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for path in paths {
        let path = path.as_ref();
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, path, &mut found)?;
            found.sort();
            out.extend(found.into_iter().map(|(_, full)| full));
        } else if path.exists() {
            out.push(path.to_string_lossy().into_owned());
        } else {
            return Err(Error::NotFound { path: path.display().to_string() });
        }
    }
    Ok(out)
}

/// Collects `(path relative to base, /-separated; full path)` of every pipeline file under `dir`.
fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
    let list = |source| Error::List { path: dir.display().to_string(), source };
    for entry in std::fs::read_dir(dir).map_err(list)? {
        let path = entry.map_err(list)?.path();
        if path.is_dir() {
            walk(base, &path, out)?;
        } else if path.extension().is_some_and(|e| e == EXTENSION) {
            let relative = path.strip_prefix(base).unwrap_or(&path);
            // `/`-separated on every platform: it is a bundle's file name.
            let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            out.push((name, path.to_string_lossy().into_owned()));
        }
    }
    Ok(())
}

/// Compiles what `paths` name by the root rule: the roots [`find`] finds,
/// and what they import (only from inside the named directories when no
/// file is named).
/// Returns the roots with the compilation.
///
/// # Errors
/// As [`find`]; problems in the files are diagnostics of the compilation.
pub fn compile<P: AsRef<Path>>(paths: &[P]) -> Result<(Vec<String>, Compiled)> {
    let roots = find(paths)?;
    let within = Within::new(paths);
    let compiled = crate::compile(&roots, &|path: &str| within.read(path));
    Ok((roots, compiled))
}

/// Where an import may read from: anywhere once a file is named, else
/// only inside the named directories (normalised as the loader sees paths).
struct Within {
    dirs: Vec<String>,
    is_open: bool,
}

impl Within {
    fn new<P: AsRef<Path>>(paths: &[P]) -> Self {
        let is_open = paths.iter().any(|p| !p.as_ref().is_dir());
        let dirs = paths.iter().map(|p| normalize(&p.as_ref().to_string_lossy())).collect();
        Within { dirs, is_open }
    }

    fn contains(&self, path: &str) -> bool {
        self.is_open
            || self.dirs.iter().any(|dir| match dir.as_str() {
                // The working directory: anything below it, nothing above.
                "" => !path.starts_with('/') && !path.starts_with("../"),
                "/" => path.starts_with('/'),
                dir => path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/')),
            })
    }

    fn read(&self, path: &str) -> std::result::Result<String, String> {
        if !self.contains(path) {
            return Err(format!(
                "it is outside the directories compiled ({}); a deployed directory holds only its own files",
                self.dirs.iter().map(|d| if d.is_empty() { "." } else { d }).collect::<Vec<_>>().join(", ")
            ));
        }
        read_text(path)
    }
}

/// Reads a pipeline file for the compiler (a [`crate::SourceLoader`]);
/// invalid UTF-8 is reported, not replaced.
///
/// # Errors
/// A short reason, which the compiler turns into a diagnostic.
pub fn read_text(path: &str) -> std::result::Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| format!("not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()))
}

/// The files of a bundle of `dir`: what [`find`] finds there, as
/// `(path relative to dir, /-separated; text)`, sorted by path.
///
/// # Errors
/// If the directory cannot be listed or a file cannot be read as UTF-8.
pub fn bundle_files(dir: &Path) -> Result<Vec<(String, String)>> {
    if !dir.is_dir() {
        return Err(Error::NotADirectory { path: dir.display().to_string() });
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found)?;
    found.sort();
    found
        .into_iter()
        .map(|(name, full)| match read_text(&full) {
            Ok(text) => Ok((name, text)),
            Err(reason) => Err(Error::Read { path: full, reason }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dsl-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("team")).expect("temp dir");
        dir
    }

    #[test]
    fn directories_are_searched_recursively_and_named_relative_to_themselves() {
        let dir = temp_dir("find");
        for (path, text) in [("b.stream", "b"), ("a.stream", "a"), ("team/c.stream", "c"), ("notes.txt", "x")] {
            std::fs::write(dir.join(path), text).expect("write");
        }
        let found = find(&[&dir]).expect("found");
        let shown = |p: &str| dir.join(p).to_string_lossy().into_owned();
        assert_eq!(found, [shown("a.stream"), shown("b.stream"), shown("team/c.stream")]);
        let files = bundle_files(&dir).expect("files");
        let expected = [("a.stream", "a"), ("b.stream", "b"), ("team/c.stream", "c")];
        assert_eq!(files, expected.map(|(p, t)| (p.to_string(), t.to_string())));
        assert!(matches!(find(&[dir.join("missing")]), Err(Error::NotFound { .. })));
        assert!(matches!(bundle_files(&dir.join("a.stream")), Err(Error::NotADirectory { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn imports_read_only_inside_the_named_directories_unless_a_file_is_named() {
        let dir = temp_dir("named");
        let shown = |p: &str| normalize(&dir.join(p).to_string_lossy());
        let within = Within::new(&[dir.join("team")]);
        assert!(within.contains(&shown("team/a/b.stream")));
        assert!(!within.contains(&shown("team2/a.stream")));
        assert!(!within.contains(&shown("a.stream")));
        assert!(within.read(&shown("a.stream")).is_err_and(|e| e.contains("outside")));
        let with_a_file = Within::new(&[dir.join("team"), dir.join("x.stream")]);
        assert!(with_a_file.contains(&shown("a.stream")));
        let here = Within { dirs: vec![String::new()], is_open: false };
        assert!(here.contains("lib/b.stream") && !here.contains("../b.stream") && !here.contains("/b.stream"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A directory compiles locally exactly as its bundle does: an import
    /// that leaves it is an error in both.
    #[test]
    fn a_directory_compiles_as_its_bundle_does() {
        let dir = temp_dir("within");
        let source = "version 1\nsource s from kafka \"t\" format json { ts: timestamp event_time }\n";
        let metric = |import: &str| {
            format!("version 1\nimport \"{import}\"\nmetric m from s\n  compute count() as n\n  window 1m\n")
        };
        std::fs::write(dir.join("s.stream"), source).expect("write");
        std::fs::write(dir.join("team/m.stream"), metric("../s.stream")).expect("write");
        let (roots, local) = compile(&[&dir]).expect("compiled");
        assert_eq!(roots.len(), 2);
        let bundle = crate::bundle::Bundle::build(bundle_files(&dir).expect("files"), 1, Default::default());
        let deployed = bundle.map(|(b, _)| b.compile().plan).ok().flatten();
        assert_eq!(local.plan.map(|p| p.hash), deployed.map(|p| p.hash));

        let team = dir.join("team");
        let (_, local) = compile(&[&team]).expect("compiled");
        assert!(local.render_diagnostics().contains("outside the directories compiled"));
        assert!(crate::bundle::Bundle::build(bundle_files(&team).expect("files"), 1, Default::default()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
