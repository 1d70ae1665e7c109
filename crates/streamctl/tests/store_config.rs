//! `--config streamd.toml`: the `[store.scylla]` settings of streamd's file
//! are checked before a command touches its store.

mod common;
use common::{stderr, streamctl, temp_dir};

/// A bad setting fails the command with its key and the file named, before
/// any connection is tried (nothing listens on the store's port).
#[test]
fn bad_scylla_settings_fail_before_connecting() {
    let dir = temp_dir("store-config");
    let file = dir.join("streamd.toml");
    std::fs::write(&file, "[store.scylla]\nread_consistency = \"ANY\"\n").expect("write");
    let file = file.to_string_lossy().into_owned();
    for args in [
        vec!["query", "delivery_by_provider", "--store", "scylla:127.0.0.1:9/ks", "--config", &file],
        vec!["--config", &file, "episodes", "--store", "scylla:127.0.0.1:9/ks"],
    ] {
        let out = streamctl(&args);
        assert!(!out.status.success(), "{args:?}");
        let error = stderr(&out);
        assert!(error.contains("read consistency ANY") && error.contains(&file), "{args:?}: {error}");
        assert!(!error.contains("cannot connect"), "{args:?}: {error}");
    }
    let missing = dir.join("missing.toml").to_string_lossy().into_owned();
    let out = streamctl(&["query", "delivery_by_provider", "--config", &missing]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

/// A valid file changes nothing for a SQLite store.
#[test]
fn a_valid_file_leaves_sqlite_stores_alone() {
    let dir = temp_dir("store-config-sqlite");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../streamd/streamd.example.toml");
    let db = format!("sqlite:{}", dir.join("absent.db").display());
    let out = streamctl(&["episodes", "--store", &db, "--config", example]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}
