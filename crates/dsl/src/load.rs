//! Reading root files and following their imports.
//!
//! The crate does no I/O itself: callers pass a [`SourceLoader`] (a closure
//! over the file system in the CLI and daemon, a map in tests and bundles).
//! Imports resolve relative to the importing file; `std:NAME` names a file of
//! the standard library compiled into this crate from `dsl/stdlib/`.

use crate::ast::{File, Item};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::span::{FileId, SourceMap, Span};
use crate::{parser, LANGUAGE_VERSION};

/// Reads the text of a file by its resolved path.
pub trait SourceLoader {
    /// The file's text, or a short reason it cannot be read.
    fn load(&self, path: &str) -> Result<String, String>;
}

impl<F: Fn(&str) -> Result<String, String>> SourceLoader for F {
    fn load(&self, path: &str) -> Result<String, String> {
        self(path)
    }
}

/// The standard library, by import name (`std:bounces` is `bounces`).
pub const STDLIB: &[(&str, &str)] = &[("bounces", include_str!("../../../dsl/stdlib/bounces.stream"))];

/// Prefix of standard library imports.
pub const STD_PREFIX: &str = "std:";

/// A parsed file and what it imports.
#[derive(Debug)]
pub struct LoadedFile {
    /// Its id in the source map.
    pub id: FileId,
    /// Its syntax tree.
    pub ast: File,
    /// Ids of the files its imports resolved to (unreadable ones left out).
    pub imports: Vec<FileId>,
    /// Whether it was named by the caller rather than reached by an import.
    pub is_root: bool,
}

/// Every file reached from the roots.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Parsed files; a file that failed to parse is absent.
    pub files: Vec<LoadedFile>,
}

impl Loaded {
    /// The parsed file with id `id`, if it parsed.
    pub fn get(&self, id: FileId) -> Option<&LoadedFile> {
        self.files.iter().find(|f| f.id == id)
    }
}

/// Loads `roots` and everything they import, reporting unreadable files,
/// syntax errors, bad version headers and import cycles.
pub fn load(
    roots: &[String],
    loader: &dyn SourceLoader,
    sources: &mut SourceMap,
    diagnostics: &mut Vec<Diagnostic>,
) -> Loaded {
    let mut state = LoadState { loader, sources, diagnostics, loaded: Loaded::default(), stack: Vec::new() };
    for root in roots {
        let path = normalize(root);
        if state.mark_root(&path) {
            continue;
        }
        let text = match read(loader, &path) {
            Ok(text) => text,
            Err(reason) => {
                let id = state.sources.add(path.clone(), "");
                state.diagnostics.push(
                    Diagnostic::error(Code::ImportNotFound, Span::new(id, 0, 0), format!("cannot read `{path}`"))
                        .with_note(reason),
                );
                continue;
            }
        };
        // A root that is a standard library file itself (`dsl/stdlib/` given
        // with the pipelines that import it) is that module, not a second
        // definition of everything in it.
        let path = match STDLIB.iter().find(|(_, std)| *std == text) {
            Some((name, _)) => format!("{STD_PREFIX}{name}"),
            None => path,
        };
        if !state.mark_root(&path) {
            let id = state.sources.add(path, text);
            state.visit(id, true);
        }
    }
    state.loaded
}

struct LoadState<'a> {
    loader: &'a dyn SourceLoader,
    sources: &'a mut SourceMap,
    diagnostics: &'a mut Vec<Diagnostic>,
    loaded: Loaded,
    stack: Vec<FileId>,
}

impl LoadState<'_> {
    /// Marks the file at `path` as a root if it is loaded already.
    fn mark_root(&mut self, path: &str) -> bool {
        let Some(id) = self.sources.find(path) else { return false };
        if let Some(f) = self.loaded.files.iter_mut().find(|f| f.id == id) {
            f.is_root = true;
        }
        true
    }

    fn visit(&mut self, id: FileId, is_root: bool) {
        let text = self.sources.get(id).text.clone();
        let ast = match parser::parse(id, &text) {
            Ok(ast) => ast,
            Err(errors) => {
                self.diagnostics.extend(errors);
                return;
            }
        };
        check_version(id, &ast, self.diagnostics);
        self.stack.push(id);
        let mut imports = Vec::new();
        let importer = self.sources.get(id).name.clone();
        for item in &ast.items {
            let Item::Import(import) = item else { continue };
            let path = resolve(&importer, &import.path);
            if let Some(existing) = self.sources.find(&path) {
                if let Some(pos) = self.stack.iter().position(|f| *f == existing) {
                    let chain: Vec<String> = self.stack[pos..]
                        .iter()
                        .map(|f| self.sources.get(*f).name.clone())
                        .chain([path.clone()])
                        .collect();
                    self.diagnostics.push(
                        Diagnostic::error(Code::ImportCycle, import.path.span, "import cycle")
                            .with_label(format!("`{path}` is already being imported"))
                            .with_note(format!("the cycle: {}", chain.join(" -> "))),
                    );
                } else {
                    imports.push(existing);
                }
                continue;
            }
            match read(self.loader, &path) {
                Ok(text) => {
                    let child = self.sources.add(path, text);
                    imports.push(child);
                    self.visit(child, false);
                }
                Err(reason) => self.diagnostics.push(
                    Diagnostic::error(
                        Code::ImportNotFound,
                        import.path.span,
                        format!("cannot import `{}`", import.path.node),
                    )
                    .with_label(format!("resolved to `{path}`"))
                    .with_note(reason)
                    .with_help(format!(
                        "paths are relative to the importing file; the standard library is {}",
                        STDLIB.iter().map(|(n, _)| format!("`{STD_PREFIX}{n}`")).collect::<Vec<_>>().join(", ")
                    )),
                ),
            }
        }
        self.stack.pop();
        self.loaded.files.push(LoadedFile { id, ast, imports, is_root });
    }
}

fn read(loader: &dyn SourceLoader, path: &str) -> Result<String, String> {
    match path.strip_prefix(STD_PREFIX) {
        Some(name) => STDLIB
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| text.to_string())
            .ok_or_else(|| format!("the standard library has no file `{name}`")),
        None => loader.load(path),
    }
}

fn check_version(id: FileId, ast: &File, diagnostics: &mut Vec<Diagnostic>) {
    match &ast.version {
        None => diagnostics.push(
            Diagnostic::error(Code::MissingVersion, Span::new(id, 0, 0), "missing `version` header")
                .with_help(format!("start the file with `version {LANGUAGE_VERSION}`")),
        ),
        Some(v) if v.node != LANGUAGE_VERSION => diagnostics.push(
            Diagnostic::error(
                Code::UnsupportedVersion,
                v.span,
                format!("language version {} is not supported", v.node),
            )
            .with_label(format!("this build understands version {LANGUAGE_VERSION}"))
            .with_help("upgrade streamctl/streamd, or write the file for the supported version"),
        ),
        Some(_) => {}
    }
}

/// Resolves `import` as written in the file called `importer`.
pub fn resolve(importer: &str, import: &str) -> String {
    if import.starts_with(STD_PREFIX) {
        return import.to_string();
    }
    if let Some(std_dir) = importer.strip_prefix(STD_PREFIX) {
        // Inside the standard library, relative imports stay inside it.
        let _ = std_dir;
        return format!("{STD_PREFIX}{}", import.trim_end_matches(".stream"));
    }
    if import.starts_with('/') {
        return normalize(import);
    }
    let dir = importer.rsplit_once('/').map_or("", |(d, _)| d);
    if dir.is_empty() {
        normalize(import)
    } else {
        normalize(&format!("{dir}/{import}"))
    }
}

/// Lexically removes `.` and `..` segments and duplicate slashes.
pub fn normalize(path: &str) -> String {
    let is_absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if is_absolute => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if is_absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_to_the_importer() {
        assert_eq!(resolve("pipelines/a.stream", "b.stream"), "pipelines/b.stream");
        assert_eq!(resolve("pipelines/a.stream", "../shared/b.stream"), "shared/b.stream");
        assert_eq!(resolve("a.stream", "./b.stream"), "b.stream");
        assert_eq!(resolve("/x/a.stream", "../../b.stream"), "/b.stream");
        assert_eq!(resolve("pipelines/a.stream", "std:bounces"), "std:bounces");
        assert_eq!(normalize("../../x/./y//z"), "../../x/y/z");
    }

    #[test]
    fn a_root_that_is_a_standard_library_file_is_that_module() {
        let pipeline = "version 1\nimport \"std:bounces\"\n";
        let edited = format!("{}\n# edited\n", STDLIB[0].1);
        let loader = |path: &str| match path {
            "pipelines/a.stream" => Ok(pipeline.to_string()),
            "dsl/stdlib/bounces.stream" => Ok(STDLIB[0].1.to_string()),
            "elsewhere/bounces.stream" => Ok(edited.clone()),
            other => Err(format!("no file {other}")),
        };
        let roots = |paths: &[&str]| paths.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let same = crate::compile(&roots(&["pipelines/a.stream", "dsl/stdlib/bounces.stream"]), &loader);
        assert!(same.diagnostics.is_empty(), "{}", same.render_diagnostics());
        assert_eq!(same.plan.map(|p| p.classifiers.len()), Some(1));
        let reversed = crate::compile(&roots(&["dsl/stdlib/bounces.stream", "pipelines/a.stream"]), &loader);
        assert!(reversed.diagnostics.is_empty(), "{}", reversed.render_diagnostics());
        // A different file that defines the same classifier is still a second definition.
        let other = crate::compile(&roots(&["pipelines/a.stream", "elsewhere/bounces.stream"]), &loader);
        assert!(other.diagnostics.iter().any(crate::Diagnostic::is_error));
    }
}
