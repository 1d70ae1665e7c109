//! The parse-only baseline of `benches/batch.sh`: reads a JSON-lines file
//! and parses every line with `serde_json` into a struct that borrows all
//! sixteen fields of a delivery event, on one thread, and prints how many
//! lines parsed and how fast, for the whole process.
//!
//! `cargo run --release -p benches --bin parse_only -- FILE`

use std::io::{BufRead, BufReader};
use std::time::Instant;

fn main() {
    let started = Instant::now();
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: parse_only FILE");
        std::process::exit(2);
    };
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("cannot open {path}: {e}");
            std::process::exit(1);
        }
    };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut lines, mut parsed) = (0u64, 0u64);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("cannot read {path}: {e}");
                std::process::exit(1);
            }
        }
        lines += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        parsed += u64::from(serde_json::from_slice::<benches::Event<'_>>(text).is_ok());
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("{lines} lines, {parsed} parsed in {elapsed:.3}s: {:.0} events/s", lines as f64 / elapsed);
}
