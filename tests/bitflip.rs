//! The bit-flip sweep: for one small object of each kind — a table, a model
//! blob, a report page — flip one bit at a time (every byte of a small
//! object with a rotating bit, every bit of its last 256 bytes where Parquet
//! keeps its footer; a dense stride through a larger one) and check, through
//! the cache's own entry points, that
//!
//! * nothing panics (a panic hook counts every panic, caught or not);
//! * the flipped object is never served fresh (`bad_output` names it, and
//!   reading it through its record fails before any decoder sees it);
//! * `store`, as the rerun does, puts the original bytes back;
//! * `verify` (on a sample of the flips) reports and removes it.
//!
//! A few flips per object then go through the real binary: the next `run`
//! reruns the stage and the original bytes are back.

mod common;

use std::sync::atomic::Ordering;

use common::{Workspace, small_moons};
use scoreflow::engine::cache::{Cache, Record};
use scoreflow::engine::frame::Table;
use scoreflow::engine::stage::Artifact;

/// A tiny two-moons pipeline: a table of 64 rows, a model of width 8, a page.
fn tiny_moons() -> String {
    small_moons()
        .replace("n_samples: 2000", "n_samples: 64")
        .replace("train_steps: 60", "train_steps: 2\n      hidden: 8")
        .replace("batch_size: 256", "batch_size: 32")
        .replace("n_samples: 300, steps: 20", "n_samples: 32, steps: 4")
        .replace("n_samples: 300, noise", "n_samples: 32, noise")
}

struct Target {
    label: &'static str,
    record_path: std::path::PathBuf,
    record: Record,
    output: &'static str,
}

fn target(ws: &Workspace, label: &'static str, stage: &str, output: &'static str) -> Target {
    let m = ws.latest_manifest("two_moons");
    let line = m["stages"].as_array().unwrap().iter().find(|s| s["name"] == stage).unwrap();
    let key = line["key"].as_str().unwrap();
    let record_path = ws.artifacts().join("records").join(&key[..2]).join(format!("{key}.json"));
    let record: Record = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    Target { label, record_path, record, output }
}

/// The offsets (byte, bit) to flip in an object of `len` bytes.
fn flips(len: usize) -> Vec<(usize, u8)> {
    let stride = (len / 4000).max(1);
    let mut v: Vec<(usize, u8)> = (0..len).step_by(stride).map(|i| (i, (i % 8) as u8)).collect();
    for i in len.saturating_sub(256)..len {
        v.extend((0..8).map(|b| (i, b)));
    }
    v.extend((0..len.min(64)).map(|i| (i, 7 - (i % 8) as u8)));
    v.sort();
    v.dedup();
    v
}

#[test]
fn every_swept_bit_flip_is_caught_never_served_and_healed() {
    let panics = common::panics();

    let ws = Workspace::new();
    ws.write("p.yaml", &tiny_moons());
    ws.cmd(&["run", "p.yaml"]).assert().success();
    let cache = Cache::new(ws.artifacts());
    let targets = [
        target(&ws, "table", "moons", "samples"),
        target(&ws, "model blob", "ddpm", "model"),
        target(&ws, "page", "report", "html"),
    ];
    let mut swept = 0;
    for t in &targets {
        let entry = &t.record.outputs[t.output];
        let path = ws.artifacts().join(&entry.file);
        let clean = std::fs::read(&path).unwrap();
        let record_bytes = std::fs::read(&t.record_path).unwrap();
        // What the rerun stores: the same content with the same metadata.
        let (artifact, metadata) = if t.label == "table" {
            let (table, meta) = Table::from_parquet(clean.clone()).unwrap();
            let meta: Vec<(String, String)> = meta.into_iter().filter(|(k, _)| k != "scoreflow.content_hash").collect();
            (Artifact::Table(table), meta)
        } else {
            (Artifact::Blob(clean.clone()), Vec::new())
        };
        let healed = cache.store(&artifact, &metadata).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), clean, "{}: storing again changes nothing", t.label);
        assert_eq!(healed.file_hash, entry.file_hash);

        let offsets = flips(clean.len());
        eprintln!("{}: {} bytes, {} flips", t.label, clean.len(), offsets.len());
        for (n, &(at, bit)) in offsets.iter().enumerate() {
            let mut bytes = clean.clone();
            bytes[at] ^= 1 << bit;
            std::fs::write(&path, &bytes).unwrap();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let bad = cache.bad_output(&t.record).unwrap();
                assert!(bad.is_some(), "{}: flip of bit {bit} at {at} served fresh", t.label);
                assert!(cache.read_entry(entry).is_err(), "{}: flip at {at} read as good", t.label);
                if n % 97 == 0 {
                    let report = cache.verify().unwrap();
                    assert!(
                        report.problems.iter().any(|p| p.path == entry.file && p.removed),
                        "{}: verify missed the flip at {at}: {:?}",
                        t.label,
                        report.problems
                    );
                    std::fs::write(&t.record_path, &record_bytes).unwrap();
                    std::fs::write(&path, &bytes).unwrap();
                }
                let stored = cache.store(&artifact, &metadata).unwrap();
                assert_eq!(stored.file_hash, entry.file_hash, "{}: flip at {at} not healed", t.label);
            }));
            assert!(outcome.is_ok(), "{}: flip of bit {bit} at {at} panicked", t.label);
            assert_eq!(std::fs::read(&path).unwrap(), clean, "{}: flip at {at}: the original bytes are back", t.label);
            swept += 1;
        }
        assert!(cache.bad_output(&t.record).unwrap().is_none());
    }
    assert!(swept > 3000, "{swept} flips");
    assert_eq!(panics.load(Ordering::SeqCst), 0, "panics (caught or not) over {swept} flips");

    // A few through the binary: the run heals each with the original bytes.
    for t in &targets {
        let entry = &t.record.outputs[t.output];
        let path = ws.artifacts().join(&entry.file);
        let clean = std::fs::read(&path).unwrap();
        for at in [0, clean.len() / 3, clean.len() - 9] {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x04;
            std::fs::write(&path, &bytes).unwrap();
            let (out, ev) = ws.run_json("p.yaml", &[]);
            assert!(out.status.success(), "{}: {}", t.label, String::from_utf8_lossy(&out.stderr));
            assert!(!Workspace::ran(&ev).is_empty(), "{}: flip at {at} served fresh", t.label);
            assert_eq!(std::fs::read(&path).unwrap(), clean, "{}: flip at {at} not healed by run", t.label);
        }
    }
}
