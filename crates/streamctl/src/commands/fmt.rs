//! `streamctl fmt`: canonical formatting.

use crate::cli::GlobalArgs;
use anyhow::Context;
use std::io::{Read, Write};
use std::process::ExitCode;

/// Rewrite pipeline files in the canonical format.
///
/// Formatting keeps every comment, is idempotent, and never changes what a
/// pipeline computes (its plan hash stays the same).
#[derive(clap::Args)]
pub struct Args {
    /// Pipeline files or directories; `-` formats standard input to standard output.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// Do not write; list files that are not formatted and exit 1 if any.
    #[arg(long)]
    check: bool,
}

pub fn run(_global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    if args.paths == ["-"] {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
        return Ok(match format(&text, "<stdin>") {
            Some(formatted) => {
                std::io::stdout().write_all(formatted.as_bytes())?;
                ExitCode::SUCCESS
            }
            None => super::bad_pipelines(),
        });
    }
    let paths = dsl::files::find(&args.paths)?;
    let mut unformatted = 0;
    let mut failed = 0;
    for path in &paths {
        let text = dsl::files::read_text(path).map_err(|reason| anyhow::anyhow!("cannot read `{path}`: {reason}"))?;
        let Some(formatted) = format(&text, path) else {
            failed += 1;
            continue;
        };
        if formatted == text {
            continue;
        }
        if args.check {
            println!("{path}");
            unformatted += 1;
        } else {
            std::fs::write(path, formatted).with_context(|| format!("cannot write `{path}`"))?;
        }
    }
    if failed > 0 {
        eprintln!("{failed} file(s) could not be parsed and were left as they are");
        return Ok(super::bad_pipelines());
    }
    if args.check && unformatted > 0 {
        eprintln!("{unformatted} file(s) need formatting; run `streamctl fmt` on them");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The canonical form of `text`, or `None` (with diagnostics printed) if it does not parse.
fn format(text: &str, name: &str) -> Option<String> {
    let mut sources = dsl::SourceMap::new();
    let file = sources.add(name, text);
    match dsl::parser::parse(file, text) {
        Ok(ast) => Some(dsl::fmt::format_file(&ast, text)),
        Err(diagnostics) => {
            eprintln!("{}", dsl::render_all(&diagnostics, &sources));
            None
        }
    }
}
