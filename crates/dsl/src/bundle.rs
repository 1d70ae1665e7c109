//! Deployment bundles: every pipeline file of a directory, with content
//! hashes and provenance, as one serialisable unit that a daemon compiles
//! and applies.
//!
//! A bundle carries source text, not a compiled plan, so that a daemon
//! compiles it with its own language version and rejects what it cannot
//! run. Files are named by their path relative to the deployed directory;
//! imports between them resolve inside the bundle (and to the standard
//! library), never to the file system of whoever applies it.

use crate::plan::Plan;
use crate::{compile, Compiled, Error};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the bundle format itself; a daemon rejects newer ones.
pub const BUNDLE_FORMAT_VERSION: u32 = 1;

/// A versioned set of pipeline files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// [`BUNDLE_FORMAT_VERSION`] of whoever built it.
    pub format: u32,
    /// Deployment number: each publication gets the next one.
    pub version: u64,
    /// The language version of the `streamctl` that checked it.
    pub language_version: u64,
    /// Hex SHA-256 over every file's path and text: equal content, equal hash.
    pub hash: String,
    /// The plan hash `streamctl` compiled it to.
    pub plan_hash: String,
    /// The files, ordered by path.
    pub files: Vec<BundleFile>,
    /// Git commit of the directory, if it is in a repository.
    pub git_commit: Option<String>,
    /// Who published it.
    pub author: String,
    /// When, ms since the epoch.
    pub created_at_ms: i64,
    /// Why, e.g. `rollback to 3`.
    #[serde(default)]
    pub note: Option<String>,
}

/// One pipeline file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    /// Path relative to the deployed directory, `/`-separated.
    pub path: String,
    /// Hex SHA-256 of `text`.
    pub sha256: String,
    /// The file's text.
    pub text: String,
}

/// Who, when and why, for [`Bundle::build`].
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// Git commit.
    pub git_commit: Option<String>,
    /// Author.
    pub author: String,
    /// Time, ms since the epoch.
    pub created_at_ms: i64,
    /// Why.
    pub note: Option<String>,
}

/// What a change does to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    /// Only in the new bundle.
    Added(String),
    /// Only in the old bundle.
    Removed(String),
    /// In both with different text: the path and a unified diff.
    Changed(String, String),
    /// Identical in both.
    Unchanged(String),
}

/// What a change does to the running metrics, by identity (hash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricChanges {
    /// Same hash in both: keeps its state.
    pub kept: Vec<String>,
    /// New name: starts at the switch.
    pub added: Vec<String>,
    /// Same name, different definition: the old one flushes, the new one starts.
    pub changed: Vec<String>,
    /// Gone: flushes its open windows and stops.
    pub removed: Vec<String>,
}

impl MetricChanges {
    /// Compares the metrics of two plans.
    pub fn between(old: Option<&Plan>, new: &Plan) -> Self {
        let mut changes = MetricChanges::default();
        let old_metrics = old.map(|p| p.metrics.as_slice()).unwrap_or_default();
        for metric in &new.metrics {
            match old_metrics.iter().find(|m| m.name == metric.name) {
                Some(m) if m.hash == metric.hash => changes.kept.push(metric.name.clone()),
                Some(_) => changes.changed.push(metric.name.clone()),
                None => changes.added.push(metric.name.clone()),
            }
        }
        for metric in old_metrics {
            if !new.metrics.iter().any(|m| m.name == metric.name) {
                changes.removed.push(metric.name.clone());
            }
        }
        changes
    }

    /// Whether applying the new plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl Bundle {
    /// Builds a bundle from `(path, text)` pairs and compiles it; the bundle
    /// is returned only if it compiles without errors.
    ///
    /// # Errors
    /// The compilation, with its diagnostics, when there are errors.
    pub fn build(
        files: Vec<(String, String)>,
        version: u64,
        provenance: Provenance,
    ) -> Result<(Bundle, Compiled), Box<Compiled>> {
        let mut files: Vec<BundleFile> = files
            .into_iter()
            .map(|(path, text)| BundleFile { path: crate::load::normalize(&path), sha256: sha256_hex(&text), text })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut bundle = Bundle {
            format: BUNDLE_FORMAT_VERSION,
            version,
            language_version: crate::LANGUAGE_VERSION,
            hash: content_hash(&files),
            plan_hash: String::new(),
            files,
            git_commit: provenance.git_commit,
            author: provenance.author,
            created_at_ms: provenance.created_at_ms,
            note: provenance.note,
        };
        let compiled = bundle.compile();
        match &compiled.plan {
            Some(plan) if !compiled.has_errors() => {
                bundle.plan_hash = plan.hash.clone();
                Ok((bundle, compiled))
            }
            _ => Err(Box::new(compiled)),
        }
    }

    /// Compiles the bundle from the bundle alone. Every file is a root and
    /// imports resolve inside the bundle (the root rule of [`crate::files`]),
    /// so a file in a subdirectory runs once deployed exactly as `check` of
    /// the directory reports it.
    pub fn compile(&self) -> Compiled {
        let roots: Vec<String> = self.files.iter().map(|f| f.path.clone()).collect();
        let loader = |path: &str| {
            self.files
                .iter()
                .find(|f| f.path == path)
                .map(|f| f.text.clone())
                .ok_or_else(|| format!("`{path}` is not part of the bundle"))
        };
        compile(&roots, &loader)
    }

    /// Checks what the bundle says about itself: format, hashes, file paths.
    ///
    /// # Errors
    /// What is inconsistent, for the rejection report.
    pub fn validate(&self) -> Result<(), Error> {
        if self.format > BUNDLE_FORMAT_VERSION {
            return Err(Error::NewerBundleFormat { format: self.format, supported: BUNDLE_FORMAT_VERSION });
        }
        for file in &self.files {
            if file.sha256 != sha256_hex(&file.text) {
                return Err(Error::FileHash { path: file.path.clone() });
            }
            if file.path.starts_with('/') || file.path.split('/').any(|p| p == "..") {
                return Err(Error::PathLeavesBundle { path: file.path.clone() });
            }
        }
        if self.hash != content_hash(&self.files) {
            return Err(Error::BundleHash);
        }
        Ok(())
    }

    /// The same files republished as `version`, e.g. for a rollback.
    pub fn republished(&self, version: u64, provenance: Provenance) -> Bundle {
        Bundle {
            version,
            author: provenance.author,
            created_at_ms: provenance.created_at_ms,
            note: provenance.note,
            git_commit: provenance.git_commit.or_else(|| self.git_commit.clone()),
            ..self.clone()
        }
    }

    /// File by file, what going from `old` to `self` changes.
    pub fn file_changes(&self, old: Option<&Bundle>) -> Vec<FileChange> {
        let old_files = old.map(|b| b.files.as_slice()).unwrap_or_default();
        let mut changes = Vec::new();
        for file in &self.files {
            changes.push(match old_files.iter().find(|f| f.path == file.path) {
                None => FileChange::Added(file.path.clone()),
                Some(f) if f.sha256 == file.sha256 => FileChange::Unchanged(file.path.clone()),
                Some(f) => FileChange::Changed(file.path.clone(), unified_diff(&file.path, &f.text, &file.text)),
            });
        }
        for file in old_files {
            if !self.files.iter().any(|f| f.path == file.path) {
                changes.push(FileChange::Removed(file.path.clone()));
            }
        }
        changes
    }
}

fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn content_hash(files: &[BundleFile]) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        // Length-prefixed, so no two different file sets hash the same text.
        hasher.update(format!("{} {}\n{} ", file.path.len(), file.path, file.text.len()));
        hasher.update(file.text.as_bytes());
    }
    hex(&hasher.finalize())
}

/// Lines of context around each change.
const CONTEXT: usize = 3;
/// Above this many line pairs the diff is not minimised: old and new are
/// shown whole (pipeline files are far smaller).
const MAX_DIFF_CELLS: usize = 4_000_000;

/// A unified diff of two texts (`--- a/PATH`, `+++ b/PATH`, hunks).
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = diff_lines(&a, &b);
    let mut out = format!("--- a/{path}\n+++ b/{path}\n");
    // Group edits that are at most 2×CONTEXT equal lines apart into hunks.
    let mut i = 0;
    while i < ops.len() {
        if matches!(ops[i], Op::Equal(..)) {
            i += 1;
            continue;
        }
        let start = i.saturating_sub(CONTEXT);
        // Extend while the equal lines in between could be shared context.
        let (mut end, mut trailing_equal) = (i, 0);
        while end < ops.len() {
            if matches!(ops[end], Op::Equal(..)) {
                if trailing_equal == 2 * CONTEXT {
                    break;
                }
                trailing_equal += 1;
            } else {
                trailing_equal = 0;
            }
            end += 1;
        }
        let end = end - trailing_equal + CONTEXT.min(trailing_equal);
        let (old_start, new_start) = ops[start..].first().map_or((0, 0), Op::positions);
        let old_len = ops[start..end].iter().filter(|o| !matches!(o, Op::Insert(..))).count();
        let new_len = ops[start..end].iter().filter(|o| !matches!(o, Op::Delete(..))).count();
        out.push_str(&format!("@@ -{},{old_len} +{},{new_len} @@\n", old_start + 1, new_start + 1));
        for op in &ops[start..end] {
            match op {
                Op::Equal(i, _) => out.push_str(&format!(" {}\n", a[*i])),
                Op::Delete(i, _) => out.push_str(&format!("-{}\n", a[*i])),
                Op::Insert(_, j) => out.push_str(&format!("+{}\n", b[*j])),
            }
        }
        i = end;
    }
    out
}

/// One line of an edit script, with its position in the old and new text.
#[derive(Debug, Clone, Copy)]
enum Op {
    Equal(usize, usize),
    Delete(usize, usize),
    Insert(usize, usize),
}

impl Op {
    fn positions(&self) -> (usize, usize) {
        match *self {
            Op::Equal(i, j) | Op::Delete(i, j) | Op::Insert(i, j) => (i, j),
        }
    }
}

/// A shortest edit script by longest common subsequence over lines.
fn diff_lines(a: &[&str], b: &[&str]) -> Vec<Op> {
    // Common prefix and suffix are cheap and usually most of a file.
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (a_mid, b_mid) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<Op> = (0..prefix).map(|i| Op::Equal(i, i)).collect();
    let (n, m) = (a_mid.len(), b_mid.len());
    if n.saturating_mul(m) > MAX_DIFF_CELLS {
        ops.extend((0..n).map(|i| Op::Delete(prefix + i, prefix)));
        ops.extend((0..m).map(|j| Op::Insert(prefix + n, prefix + j)));
    } else {
        // lcs[i][j]: length of the LCS of a_mid[i..] and b_mid[j..].
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * (m + 1) + j] = if a_mid[i] == b_mid[j] {
                    lcs[(i + 1) * (m + 1) + j + 1] + 1
                } else {
                    lcs[(i + 1) * (m + 1) + j].max(lcs[i * (m + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && a_mid[i] == b_mid[j] {
                ops.push(Op::Equal(prefix + i, prefix + j));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1]) {
                ops.push(Op::Delete(prefix + i, prefix + j));
                i += 1;
            } else {
                ops.push(Op::Insert(prefix + i, prefix + j));
                j += 1;
            }
        }
    }
    let (a_end, b_end) = (a.len() - suffix, b.len() - suffix);
    ops.extend((0..suffix).map(|k| Op::Equal(a_end + k, b_end + k)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "version 1\n\nsource s from kafka \"t\" format json { ts: timestamp event_time, k: string }\n";

    fn metric(name: &str, filter: &str) -> String {
        format!("version 1\n\nimport \"common.stream\"\n\nmetric {name} from s\n  where {filter}\n  group by k\n  compute count() as c\n  window 1m\n")
    }

    fn bundle(files: &[(&str, String)]) -> Bundle {
        let files = files.iter().map(|(p, t)| (p.to_string(), t.clone())).collect();
        match Bundle::build(files, 1, Provenance::default()) {
            Ok((bundle, _)) => bundle,
            Err(compiled) => panic!("{}", compiled.render_diagnostics()),
        }
    }

    #[test]
    fn a_bundle_compiles_from_its_own_files_and_validates() {
        let b = bundle(&[("common.stream", SOURCE.into()), ("a.stream", metric("a", "k == \"x\""))]);
        assert_eq!(b.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["a.stream", "common.stream"]);
        assert_eq!(b.compile().plan.map(|p| p.hash), Some(b.plan_hash.clone()));
        assert!(b.validate().is_ok());
    }

    #[test]
    fn tampering_and_newer_formats_are_rejected() {
        let b = bundle(&[("common.stream", SOURCE.into()), ("a.stream", metric("a", "k == \"x\""))]);
        let mut tampered = b.clone();
        tampered.files[0].text.push_str("\n# edited\n");
        assert!(matches!(tampered.validate(), Err(Error::FileHash { path }) if path == "a.stream"));
        let newer = Bundle { format: BUNDLE_FORMAT_VERSION + 1, ..b.clone() };
        assert!(matches!(newer.validate(), Err(Error::NewerBundleFormat { .. })));
        let escaping = Bundle { files: vec![BundleFile { path: "../x.stream".into(), ..b.files[0].clone() }], ..b };
        assert!(matches!(escaping.validate(), Err(Error::PathLeavesBundle { .. })));
    }

    /// Issue 26: a metric in a subdirectory was left out of a deployed bundle.
    #[test]
    fn every_file_is_a_root_and_imported_files_load_once() {
        let nested = metric("nested", "k == \"n\"").replace("\"common.stream\"", "\"../common.stream\"");
        let b = bundle(&[
            ("common.stream", SOURCE.into()),
            ("top.stream", metric("top_level", "k == \"t\"")),
            ("team/nested.stream", nested),
        ]);
        let plan = b.compile().plan.expect("plan");
        let names: Vec<&str> = plan.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["nested", "top_level"]);
        assert_eq!(plan.sources.len(), 1, "the imported source is loaded once");
        // A library only in a subdirectory, reached only by import, is compiled once too.
        let library = metric("m", "k == \"m\"").replace("\"common.stream\"", "\"lib/common.stream\"");
        let b = bundle(&[("lib/common.stream", SOURCE.into()), ("m.stream", library)]);
        assert_eq!(b.compile().plan.map(|p| (p.sources.len(), p.metrics.len())), Some((1, 1)));
    }

    #[test]
    fn imports_outside_the_bundle_do_not_compile() {
        let files = vec![("a.stream".to_string(), metric("a", "k == \"x\""))];
        let error = Bundle::build(files, 1, Provenance::default()).expect_err("an error");
        assert!(error.render_diagnostics().contains("not part of the bundle"), "{}", error.render_diagnostics());
    }

    #[test]
    fn changes_are_reported_per_file_and_per_metric() {
        let old = bundle(&[
            ("common.stream", SOURCE.into()),
            ("a.stream", metric("a", "k == \"x\"")),
            ("b.stream", metric("b", "k == \"y\"")),
            ("c.stream", metric("c", "k == \"z\"")),
        ]);
        let new = bundle(&[
            ("common.stream", SOURCE.into()),
            ("a.stream", metric("a", "k == \"x\"")),
            ("b.stream", metric("b", "k != \"y\"")),
            ("d.stream", metric("d", "k == \"w\"")),
        ]);
        let changes = new.file_changes(Some(&old));
        assert!(changes.contains(&FileChange::Unchanged("a.stream".into())));
        assert!(changes.contains(&FileChange::Added("d.stream".into())));
        assert!(changes.contains(&FileChange::Removed("c.stream".into())));
        let diff = changes.iter().find_map(|c| match c {
            FileChange::Changed(path, diff) if path == "b.stream" => Some(diff.clone()),
            _ => None,
        });
        let diff = diff.expect("b.stream changed");
        assert!(diff.contains("-  where k == \"y\"\n+  where k != \"y\"\n"), "{diff}");
        let plans = (old.compile().plan.expect("old"), new.compile().plan.expect("new"));
        let metrics = MetricChanges::between(Some(&plans.0), &plans.1);
        assert_eq!(metrics.kept, ["a"]);
        assert_eq!(metrics.changed, ["b"]);
        assert_eq!(metrics.added, ["d"]);
        assert_eq!(metrics.removed, ["c"]);
    }

    #[test]
    fn unified_diffs_have_context_and_hunk_headers() {
        let old: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        let new = old.replace("line 3\n", "line three\n").replace("line 18\n", "");
        let diff = unified_diff("f", &old, &new);
        assert_eq!(
            diff,
            "--- a/f\n+++ b/f\n@@ -1,6 +1,6 @@\n line 1\n line 2\n-line 3\n+line three\n line 4\n line 5\n line 6\n\
             @@ -15,6 +15,5 @@\n line 15\n line 16\n line 17\n-line 18\n line 19\n line 20\n"
        );
        assert_eq!(unified_diff("f", &old, &old), "--- a/f\n+++ b/f\n");
    }
}
