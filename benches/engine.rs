//! Engine benchmarks: no-op reruns (in process and as a whole process), a
//! synthetic 200-stage chain, generate + label of 4096 triangles, the
//! overhead of a 100-instance sweep (check, status, no-op run, compare), and
//! command stages: a no-op rerun of 20, and one stage's fixed cost beside its
//! command run bare.
//!
//! Run with `cargo bench --bench engine`.

use std::path::Path;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use scoreflow::engine::cache::Cache;
use scoreflow::engine::executor::{RunOptions, run};
use scoreflow::engine::progress::Silent;
use scoreflow::engine::spec;

fn smeme_spec() -> String {
    // This checkout's pipeline, even when the binary was built from another one.
    std::fs::read_to_string(scoreflow::checkout("pipelines/smeme.yaml")).unwrap()
}

/// The flagship's data stages only (generate, label).
fn data_stages() -> String {
    let full = smeme_spec();
    full[..full.find("  pretrain:").expect("pretrain stage")].to_string()
}

/// generate → label → label → … (199 labels), each with its own `tol` so every key differs.
fn chain_spec(stages: usize) -> String {
    let mut s = String::from(
        "name: chain200\nseed: 1\nstages:\n  s0:\n    kind: generate\n    params: { dataset: triangles, n_samples: 64 }\n",
    );
    for i in 1..stages {
        let input = if i == 1 { "s0".to_string() } else { format!("s{}.labels", i - 1) };
        s.push_str(&format!(
            "  s{i}:\n    kind: label\n    inputs: {{ data: {input} }}\n    params: {{ scheme: triangle_types, tol: {} }}\n",
            0.01 + i as f64 * 1e-5
        ));
    }
    s
}

fn prepared(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let spec = spec::load(&path, scoreflow::registry()).unwrap();
    let report = run(&spec, &Cache::new(dir.join("artifacts")), &RunOptions::default(), &Silent).unwrap();
    assert!(report.ok());
    path
}

fn noop_reruns(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let smeme = prepared(dir.path(), "smeme.yaml", &smeme_spec());
    let chain = prepared(dir.path(), "chain.yaml", &chain_spec(200));
    let cache = Cache::new(dir.path().join("artifacts"));
    let mut g = c.benchmark_group("noop");
    g.bench_function("smeme_in_process", |b| {
        b.iter(|| {
            let spec = spec::load(&smeme, scoreflow::registry()).unwrap();
            run(&spec, &cache, &RunOptions::default(), &Silent).unwrap()
        })
    });
    g.bench_function("chain200_in_process", |b| {
        b.iter(|| {
            let spec = spec::load(&chain, scoreflow::registry()).unwrap();
            run(&spec, &cache, &RunOptions::default(), &Silent).unwrap()
        })
    });
    let bin = env!("CARGO_BIN_EXE_scoreflow");
    for (name, path) in [("smeme_process", &smeme), ("chain200_process", &chain)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = Command::new(bin)
                    .args([
                        "run",
                        path.to_str().unwrap(),
                        "--artifacts",
                        dir.path().join("artifacts").to_str().unwrap(),
                    ])
                    .output()
                    .unwrap();
                assert!(out.status.success());
            })
        });
    }
    g.bench_function("smeme_status_process", |b| {
        b.iter(|| {
            let out = Command::new(bin)
                .args([
                    "status",
                    smeme.to_str().unwrap(),
                    "--artifacts",
                    dir.path().join("artifacts").to_str().unwrap(),
                ])
                .output()
                .unwrap();
            assert!(out.status.success());
        })
    });
    g.finish();
}

fn generate_and_label(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smeme.yaml");
    std::fs::write(&path, data_stages()).unwrap();
    let spec = spec::load(&path, scoreflow::registry()).unwrap();
    c.bench_function("stages/generate_label_4096_cold", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |cache_dir| run(&spec, &Cache::new(cache_dir.path()), &RunOptions::default(), &Silent).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
}

/// pipelines/smeme.yaml at small training and sampling settings, swept over
/// 100 pipeline seeds: 900 stages, none shared.
fn matrix100_spec() -> String {
    let mut s = smeme_spec();
    for (from, to) in [
        ("epochs: 16", "epochs: 2"),
        ("batches_per_epoch: 100", "batches_per_epoch: 20"),
        ("n_samples: 4096, steps: 1000", "n_samples: 300, steps: 40"),
        ("outer_epochs: 5", "outer_epochs: 2"),
        ("inner_epochs: 10", "inner_epochs: 2"),
        ("dataset_size: 1024", "dataset_size: 256"),
        ("steps: 1000\n", "steps: 40\n"),
    ] {
        s = s.replace(from, to);
    }
    let seeds: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    s.replacen("stages:", &format!("matrix:\n  seed: [{}]\nstages:", seeds.join(", ")), 1)
}

/// The overhead of a sweep, as whole processes: expanding and checking the
/// 100-instance matrix, planning it (`status`), its no-op rerun (every record
/// read, every object's bytes checked, 100 report pages republished) and
/// `compare`. The setup computes the sweep once (about 20 s on 2 cores).
fn matrix100(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("pipelines");
    std::fs::create_dir_all(&spec).unwrap();
    let spec = spec.join("smeme100.yaml");
    std::fs::write(&spec, matrix100_spec()).unwrap();
    let bin = env!("CARGO_BIN_EXE_scoreflow");
    let scoreflow = |cmd: &str| {
        let out = Command::new(bin).args([cmd, spec.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    scoreflow("run");
    let mut g = c.benchmark_group("matrix100");
    g.sample_size(10);
    for cmd in ["check", "status", "run", "compare"] {
        g.bench_function(format!("{cmd}_process"), |b| b.iter(|| scoreflow(cmd)));
    }
    g.finish();
}

/// 20 command stages in a chain, each `sh` copying its input table (the
/// first writing one); `code:` holds a script file per stage.
fn command_chain_spec(dir: &Path, stages: usize) -> String {
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    let mut s = String::from("name: commands20\nseed: 1\nstages:\n");
    for i in 0..stages {
        let script = format!("scripts/s{i}.sh");
        let body = if i == 0 {
            "printf 'i,v\\n1,2\\n' > \"$SCOREFLOW_OUTPUT_DIR/t.csv\"\n".to_string()
        } else {
            "cp \"$SCOREFLOW_INPUT_DATA\" \"$SCOREFLOW_OUTPUT_DIR/t.parquet\"\n".to_string()
        };
        std::fs::write(dir.join(&script), body).unwrap();
        s.push_str(&format!(
            "  s{i}:\n    kind: generate\n    run: [sh, {script}]\n    code: [{script}]\n    outputs: {{ t: table }}\n"
        ));
        if i > 0 {
            s.push_str(&format!("    inputs: {{ data: s{} }}\n", i - 1));
        }
    }
    s
}

fn command_stages(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let text = command_chain_spec(dir.path(), 20);
    let chain = prepared(dir.path(), "commands.yaml", &text);
    let cache = Cache::new(dir.path().join("artifacts"));
    let mut g = c.benchmark_group("command");
    g.bench_function("noop20_in_process", |b| {
        b.iter(|| {
            let spec = spec::load(&chain, scoreflow::registry()).unwrap();
            run(&spec, &cache, &RunOptions::default(), &Silent).unwrap()
        })
    });
    // One stage forced: spec, key, sandbox, stage file, spawn, wait, read and
    // store the table, record — against the same `sh` command run bare.
    let one = prepared(dir.path(), "one.yaml", &command_chain_spec(dir.path(), 1).replace("commands20", "one"));
    let forced = RunOptions { force: vec!["s0".into()], ..RunOptions::default() };
    g.bench_function("one_stage_forced", |b| {
        b.iter(|| {
            let spec = spec::load(&one, scoreflow::registry()).unwrap();
            let r = run(&spec, &cache, &forced, &Silent).unwrap();
            assert!(r.ok());
        })
    });
    let out = dir.path().join("bare");
    std::fs::create_dir_all(&out).unwrap();
    g.bench_function("one_command_bare", |b| {
        b.iter(|| {
            let status = Command::new("sh")
                .arg(dir.path().join("scripts/s0.sh"))
                .env("SCOREFLOW_OUTPUT_DIR", &out)
                .status()
                .unwrap();
            assert!(status.success());
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = noop_reruns, generate_and_label, matrix100, command_stages
}
criterion_main!(benches);
