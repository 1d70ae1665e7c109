//! Turning command-line paths into pipeline files, and reading them, by the
//! root rule of [`dsl::files`] (the one `streamd` and deployed bundles use).

pub use dsl::files::read_text as load;

/// Expands directories into their `*.stream` files (recursively, sorted);
/// files are taken as given.
pub fn expand(paths: &[String]) -> anyhow::Result<Vec<String>> {
    Ok(dsl::files::find(paths)?)
}
