//! The pipeline language: text → syntax tree → checked, typed [`plan::Plan`].
//!
//! This crate owns every user-facing diagnostic and knows nothing of
//! execution: it produces a serialisable plan that the engine runs. The
//! compiler does no I/O: files come through a [`load::SourceLoader`]. Only
//! [`files`] reads the file system, to decide which files a directory
//! compiles (the root rule every command and the daemon share).
//!
//! ```text
//! parser   pest grammar (dsl/stream.pest) → ast, with byte spans
//! files    which files a directory compiles: the root rule
//! load     roots + imports, version headers, cycles
//! check    names, types, windows: every problem, not just the first
//! compile  plan: one text matcher per classifier parameter, identity hashes
//! fmt      canonical printing; also the normalised form hashes are taken of
//! explain  the plan as readable text
//! ```
//!
//! The design choice a reader must know: the checker builds plan expressions
//! while it types them, so there is a single pass from syntax to plan, and a
//! metric's identity (its hash) is the hash of the *canonical text* of the
//! metric, its source and its classifiers. Formatting, comments and unrelated
//! edits to the same files therefore never change a metric's identity.

#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod ast;
pub mod bundle;
mod check;
pub mod codes;
mod compile;
pub mod diagnostic;
pub mod dnsbl;
mod explain;
pub mod files;
pub mod fmt;
pub mod load;
pub mod parser;
pub mod plan;
pub mod providers;
pub mod span;

pub use check::{RESERVED, RESERVED_COLUMNS};
pub use codes::Code;
pub use diagnostic::{render, render_all, Diagnostic, Severity};
pub use explain::{classifier_condition, explain};
pub use load::SourceLoader;
pub use plan::Plan;
pub use span::SourceMap;

/// Errors reading pipeline files and validating bundles.
#[derive(Debug, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Error {
    /// A path named on the command line or in the configuration is missing.
    #[error("`{path}` does not exist")]
    NotFound {
        /// The path.
        path: String,
    },
    /// A bundle is built from one directory.
    #[error("`{path}` is not a directory")]
    NotADirectory {
        /// The path.
        path: String,
    },
    /// A directory cannot be listed.
    #[error("cannot list `{path}`")]
    List {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        #[serde(serialize_with = "serialize_display")]
        source: std::io::Error,
    },
    /// A pipeline file cannot be read as UTF-8 text.
    #[error("cannot read `{path}`: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why (an I/O error or the first invalid byte).
        reason: String,
    },
    /// A bundle of a newer format than this build understands.
    #[error("bundle format {format} is newer than this build understands ({supported})")]
    NewerBundleFormat {
        /// The bundle's format.
        format: u32,
        /// [`bundle::BUNDLE_FORMAT_VERSION`].
        supported: u32,
    },
    /// A bundle file whose text does not match its hash.
    #[error("file `{path}` does not match its hash")]
    FileHash {
        /// The file's path in the bundle.
        path: String,
    },
    /// A bundle file whose path is absolute or climbs out with `..`.
    #[error("file path `{path}` leaves the bundle")]
    PathLeavesBundle {
        /// The file's path in the bundle.
        path: String,
    },
    /// The files do not hash to the bundle's hash.
    #[error("the files do not match the bundle hash")]
    BundleHash,
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Serialises a value by its `Display` text: for error sources (I/O,
/// regex) that are not data themselves, inside serialisable errors.
///
/// # Errors
/// Whatever the serializer returns.
pub fn serialize_display<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// The language version this build reads and writes.
pub const LANGUAGE_VERSION: u64 = 1;

/// The outcome of compiling a set of files.
#[derive(Debug)]
pub struct Compiled {
    /// Every file read, for rendering diagnostics.
    pub sources: SourceMap,
    /// The plan, if there were no errors.
    pub plan: Option<Plan>,
    /// Errors and warnings, ordered by file and position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// All diagnostics rendered as text.
    pub fn render_diagnostics(&self) -> String {
        render_all(&self.diagnostics, &self.sources)
    }
}

/// Loads `roots` and their imports through `loader`, checks everything and,
/// if there are no errors, compiles the plan.
pub fn compile(roots: &[String], loader: &dyn SourceLoader) -> Compiled {
    let mut sources = SourceMap::new();
    let mut diagnostics = Vec::new();
    let loaded = load::load(roots, loader, &mut sources, &mut diagnostics);
    let (checked, check_diagnostics) = check::check(&loaded, &sources);
    diagnostics.extend(check_diagnostics);
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    let plan = (!has_errors).then(|| compile::build(checked));
    diagnostics.sort_by_key(|d| {
        let span = d.span();
        (span.file, span.start)
    });
    Compiled { sources, plan, diagnostics }
}

/// Compiles one in-memory file (plus the standard library), e.g. for tests and benchmarks.
pub fn compile_str(name: &str, text: &str) -> Compiled {
    let path = load::normalize(name);
    let (expected, text) = (path.clone(), text.to_string());
    let loader = move |p: &str| {
        if p == expected {
            Ok(text.clone())
        } else {
            Err(format!("`{p}` is not available in memory"))
        }
    };
    compile(&[path], &loader)
}
