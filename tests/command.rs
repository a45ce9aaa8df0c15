//! Command stages: a researcher's own program as a stage, through the real
//! binary on temp dirs — keys by code content, reasons, early cutoff, every
//! way a command can fail leaving nothing cached, values that never reach a
//! shell, and tables from files of any format scored by a built-in stage.

mod common;

use common::Workspace;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Records in the cache (one per completed key).
fn records(ws: &Workspace) -> usize {
    ws.files_under("artifacts/records").len()
}

fn python() -> bool {
    std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success())
}

const GEN: &str = r#"
import os, random
s = os.environ
seed = int(s["SCOREFLOW_SEED"])
n = int(s["SCOREFLOW_PARAM_N"])
rng = random.Random(seed)
with open(os.path.join(s["SCOREFLOW_OUTPUT_DIR"], "points.csv"), "w") as f:
    f.write("x,y\n")
    for _ in range(n):
        f.write("%r,%r\n" % (rng.gauss(0, 1), rng.gauss(0, 1)))
print("scoreflow:progress 1.0")
"#;

const SCALE: &str = r#"
import csv, json, os, sys
stage = json.load(open(os.environ["SCOREFLOW_STAGE"]))
factor = float(sys.argv[1])
# The input arrives as Parquet; read it back through the binary as CSV.
import subprocess, tempfile
tmp = tempfile.mkdtemp()
subprocess.run([os.environ["SCOREFLOW_BIN"], "export", stage["inputs"]["data"], "-o", tmp + "/in.csv"], check=True, stdout=subprocess.DEVNULL)
rows = list(csv.DictReader(open(tmp + "/in.csv")))
with open(stage["outputs"]["scaled"]["path"].replace(".parquet", ".csv"), "w") as f:
    f.write("x,y\n")
    for r in rows:
        f.write("%r,%r\n" % (factor * float(r["x"]), factor * float(r["y"])))
with open(os.path.join(stage["output_dir"], "metrics.csv"), "w") as f:
    f.write("metric,value\nrows,%d\n" % len(rows))
"#;

const MIXED: &str = r#"name: mixed
seed: 3
stages:
  points:
    kind: generate
    run: [python3, scripts/gen.py]
    code: [scripts/gen.py]
    outputs: { points: table }
    params: { n: 300 }
  scaled:
    kind: sample
    run: "python3 scripts/scale.py {params.factor}"
    code: [scripts/scale.py]
    inputs: { data: points }
    outputs: { scaled: table, metrics: table }
    params: { factor: 1.0 }
  target:
    kind: generate
    params: { dataset: two_moons, n_samples: 300, noise: 0.05 }
  dist:
    kind: validate
    inputs: { samples: scaled.scaled, target: target.samples }
    params: { checks: distribution, metrics: [mmd], directions: 8 }
"#;

fn mixed() -> Workspace {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("scripts")).unwrap();
    ws.write("scripts/gen.py", GEN);
    ws.write("scripts/scale.py", SCALE);
    ws.write("mixed.yaml", MIXED);
    ws
}

fn started_reasons(events: &[serde_json::Value], stage: &str) -> Vec<String> {
    events
        .iter()
        .find(|e| e["event"] == "started" && e["stage"] == stage)
        .map(|e| e["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Cold, then all fresh; editing a script reruns exactly its stage and what
/// reads it, naming the file; a forced rerun with the same bytes cuts off.
#[test]
fn command_stages_are_cached_by_code_content_like_built_in_ones() {
    if !python() {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let ws = mixed();
    let (out, events) = ws.run_json("mixed.yaml", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(Workspace::ran(&events), ["dist", "points", "scaled", "target"]);
    let (out, events) = ws.run_json("mixed.yaml", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(Workspace::ran(&events).is_empty(), "a no-op rerun ran {:?}", Workspace::ran(&events));

    // The built-in validate stage scored the command's table; compare shows
    // the command's own metrics table beside it.
    let out = ws.cmd(&["compare", "mixed.yaml", "--json"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("scaled.rows") && text.contains("dist.mmd"), "{text}");

    // A comment in scale.py: scaled reruns with the file named, dist after it.
    ws.write("scripts/scale.py", &format!("# edited\n{SCALE}"));
    let s = ws.cmd(&["status", "mixed.yaml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&s.stdout).contains("code scripts/scale.py changed"));
    let (out, events) = ws.run_json("mixed.yaml", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Same bytes out of scaled: dist is fresh (early cutoff).
    assert_eq!(Workspace::ran(&events), ["scaled"]);
    assert_eq!(started_reasons(&events, "scaled"), ["code scripts/scale.py changed"]);

    // A parameter: the argv changes, so does the output, so dist reruns too.
    let (out, events) = ws.run_json("mixed.yaml", &["--set", "stages.scaled.params.factor=2.0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(Workspace::ran(&events), ["dist", "scaled"]);
    assert_eq!(started_reasons(&events, "scaled"), ["param factor changed 1.0 → 2.0"]);

    // Forced with the same bytes out: its dependents stay fresh.
    let (out, events) = ws.run_json("mixed.yaml", &["--force", "points"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(Workspace::ran(&events), ["points"]);

    // The same pipeline in another folder (a moved checkout) is fresh.
    let moved = Workspace::new();
    let copy = |rel: &str| {
        std::fs::create_dir_all(moved.path().join(rel).parent().unwrap()).unwrap();
        std::fs::copy(ws.path().join(rel), moved.path().join(rel)).unwrap();
    };
    for rel in ["mixed.yaml", "scripts/gen.py", "scripts/scale.py"] {
        copy(rel);
    }
    let out = moved
        .cmd(&["status", "mixed.yaml", "--artifacts", ws.artifacts().to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(status.as_array().unwrap().iter().all(|s| s["fresh"] == true), "{status}");

    // Determinism: the output's content hash is the same on a second cache.
    let again = Workspace::new();
    for rel in ["mixed.yaml", "scripts/gen.py", "scripts/scale.py"] {
        std::fs::create_dir_all(again.path().join(rel).parent().unwrap()).unwrap();
        std::fs::copy(ws.path().join(rel), again.path().join(rel)).unwrap();
    }
    let (out, _) = again.run_json("mixed.yaml", &["-j", "1"]);
    assert!(out.status.success());
    let outputs = |w: &Workspace| {
        let m = w.latest_manifest("mixed");
        m["stages"].as_array().unwrap().iter().find(|s| s["name"] == "points").unwrap()["outputs"].clone()
    };
    assert_eq!(outputs(&again), outputs(&ws));

    // The log of a command stage is kept and shown.
    let out = ws.cmd(&["logs", "points", "--pipeline", "mixed.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("python3 scripts/gen.py") && text.contains("scoreflow:progress 1.0"), "{text}");
}

/// A pipeline of one `sh` command stage after a built-in stage.
fn one(run: &str, extra: &str) -> String {
    format!(
        "name: fail\nstages:\n  moons:\n    kind: generate\n    params: {{ dataset: two_moons, n_samples: 50 }}\n  cmd:\n    kind: validate\n    run: {run}\n    inputs: {{ data: moons }}\n    outputs: {{ result: table }}\n{extra}",
    )
}

/// Every way a command fails: a clear error naming the stage, the command and
/// the log; exit 1; no record for it; the upstream result kept.
#[test]
fn every_failure_of_a_command_caches_nothing() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("exit 1", r#"[sh, -c, "echo boom >&2; exit 1"]"#, "", "exited with status 1"),
        ("signal", r#"[sh, -c, "kill -9 $$"]"#, "", "killed by signal 9"),
        ("time-out", r#"[sh, -c, "sleep 30"]"#, "    resources: { time: \"0:01\" }\n", "timed out after 1s"),
        ("missing output", r#"[sh, -c, "true"]"#, "", "did not write its output `result`"),
        (
            "undeclared output",
            r#"[sh, -c, "printf 'a\n1\n' > $SCOREFLOW_OUTPUT_DIR/result.csv; touch $SCOREFLOW_OUTPUT_DIR/extra.txt"]"#,
            "",
            "undeclared output extra.txt",
        ),
        ("corrupt table", r#"[sh, -c, "echo garbage > $SCOREFLOW_OUTPUT_DIR/result.parquet"]"#, "", "does not parse"),
        ("not found", "[no-such-program-anywhere, x]", "", "`no-such-program-anywhere` was not found"),
    ];
    for (what, run, extra, expect) in cases {
        let ws = Workspace::new();
        ws.write("fail.yaml", &one(run, extra));
        let out = ws.cmd(&["run", "fail.yaml"]).output().unwrap();
        // The run's report (stdout) and its errors (stderr).
        let err = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains(expect), "{what}: expected `{expect}` in\n{err}");
        assert!(err.contains("cmd") && err.contains("command `"), "{what}: names the stage and command\n{err}");
        assert!(err.contains("log: ") || *what == "not found", "{what}: names the log\n{err}");
        assert_eq!(records(&ws), 1, "{what}: only the upstream stage's record");
        if *what == "exit 1" {
            assert!(err.contains("boom"), "stderr's tail is shown: {err}");
        }
        // The sandbox is gone.
        assert!(ws.files_under("artifacts/tmp").iter().all(|f| !f.contains(".cmd")), "{what}: sandbox left behind");
    }
}

/// Spec errors of command stages: all at once, file:line:col, exit 2, nothing written.
#[test]
fn command_spec_errors_are_reported_at_their_place() {
    let ws = Workspace::new();
    let spec = "name: bad\nstages:\n  a:\n    kind: generate\n    run: [sh, -c, \"echo {params.nope} {env.HOME}\"]\n    code: [missing.py]\n    outputs: { t: table, m: model/ }\n  b:\n    kind: generate\n    code: [x.py]\n    params: { dataset: two_moons }\n  c:\n    kind: train\n    run: [sh, \"{outputs.weights}\"]\n    outputs: { w: model/pt }\n    params: { bad: .nan }\n  d:\n    kind: generate\n    run: \"echo '{params.x}' \\\\{seed}\"\n    shell: true\n    outputs: { t: table }\n    params: { x: 1 }\n";
    ws.write("bad.yaml", spec);
    let out = ws.cmd(&["run", "bad.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out).replace(&ws.path().display().to_string(), "<ws>");
    let err: Vec<&str> = err.lines().map(|l| l.split(" (os error").next().unwrap()).collect();
    insta::assert_snapshot!(err.join("\n"));
    assert!(!ws.artifacts().exists(), "nothing written");
}

/// A value with `$(…)` or a newline reaches the command as one literal
/// argument, with and without `shell: true`.
#[test]
fn no_spec_value_reaches_a_shell_unquoted() {
    let ws = Workspace::new();
    let pwned = ws.path().join("pwned");
    let hostile = format!("$(touch {0}); `touch {0}`\nsecond line", pwned.display());
    let check =
        "test \"$1\" = \"$(printf '%s' \"$SCOREFLOW_PARAM_V\")\" && printf 'v\\n1\\n' > $SCOREFLOW_OUTPUT_DIR/t.csv";
    for (shell, run) in [
        (false, format!("[sh, -c, {}, sh, \"{{params.v}}\"]", serde_json::to_string(check).unwrap())),
        (true, serde_json::to_string(&format!("set -- {{params.v}}; {check}")).unwrap()),
        // Inside double quotes too: the value is never part of the script.
        (true, serde_json::to_string(&format!("set -- \"{{params.v}}\"; {check}")).unwrap()),
        (true, serde_json::to_string("set -- \"[{params.v}]\"; test \"$1\" = \"[$SCOREFLOW_PARAM_V]\" && printf 'v\\n1\\n' > $SCOREFLOW_OUTPUT_DIR/t.csv").unwrap()),
    ] {
        let spec = format!(
            "name: inj\nstages:\n  s:\n    kind: generate\n    run: {run}\n    shell: {shell}\n    outputs: {{ t: table }}\n    params: {{ v: {} }}\n",
            serde_json::to_string(&hostile).unwrap()
        );
        ws.write("inj.yaml", &spec);
        let out = ws.cmd(&["run", "inj.yaml"]).output().unwrap();
        assert!(out.status.success(), "shell {shell}: {}", stderr(&out));
        assert!(!pwned.exists(), "shell {shell}: a value ran as a command");
    }
}

/// A `code:` folder is walked once, inside the project: a link back up
/// the tree is not followed round, a folder outside the project is refused.
#[test]
fn a_code_folder_with_a_link_loop_is_walked_once() {
    let ws = Workspace::new();
    std::fs::create_dir(ws.path().join("lib")).unwrap();
    ws.write("lib/a.py", "print(1)\n");
    std::os::unix::fs::symlink(".", ws.path().join("lib/self")).unwrap();
    std::os::unix::fs::symlink("..", ws.path().join("lib/up")).unwrap();
    let spec = |code: &str| {
        format!(
            "name: loop\nstages:\n  s:\n    kind: generate\n    run: [sh, -c, \"true\"]\n    code: [{code}]\n    outputs: {{ t: table }}\n"
        )
    };
    ws.write("p.yaml", &spec("lib"));
    let out = ws.cmd(&["check", "p.yaml"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    ws.write("p.yaml", &spec("/"));
    let out = ws.cmd(&["check", "p.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("p.yaml:6:12: `code` of stage `s`: `/` lies outside the project"),
        "{}",
        stderr(&out)
    );
}

/// Tables from outside: written by polars (zstd), by pandas (snappy) and as a
/// `.npy` array, each scored by the built-in validate stage through `file:`.
#[test]
fn files_from_polars_pandas_and_numpy_are_scored_by_validate() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("data")).unwrap();
    let fixtures = common::checkout("tests/fixtures/samples");
    for f in ["moons_polars_zstd.parquet", "moons_pandas_snappy.parquet", "moons.npy"] {
        std::fs::copy(fixtures.join(f), ws.path().join("data").join(f)).unwrap();
    }
    let mut values = Vec::new();
    for (file, extra) in
        [("moons_polars_zstd.parquet", ""), ("moons_pandas_snappy.parquet", ""), ("moons.npy", ", columns: [x, y]")]
    {
        let spec = format!(
            "name: files\nstages:\n  target:\n    kind: generate\n    params: {{ dataset: two_moons, n_samples: 500, noise: 0.05, draw: 1 }}\n  metrics:\n    kind: validate\n    inputs: {{ samples: {{ file: data/{file}{extra} }}, target: target.samples }}\n    params: {{ checks: distribution, metrics: [mmd, energy_distance, sliced_w1], directions: 32 }}\n"
        );
        ws.write("files.yaml", &spec);
        let out = ws.cmd(&["run", "files.yaml"]).output().unwrap();
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let out =
            ws.cmd(&["export", "metrics", "--pipeline", "files.yaml", "-o", "m.csv", "--force"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let csv = std::fs::read_to_string(ws.path().join("m.csv")).unwrap();
        values.push(csv);
    }
    // The three files hold the same 500 points: the same metrics, bit for bit.
    assert_eq!(values[0], values[1]);
    assert_eq!(values[0], values[2]);
    // A file that is not a table is a spec error at its place.
    ws.write("data/bad.parquet", "not parquet");
    ws.write(
        "bad.yaml",
        "name: bad\nstages:\n  m:\n    kind: validate\n    inputs: { samples: { file: data/bad.parquet }, target: { file: data/moons.npy } }\n    params: { checks: distribution }\n",
    );
    let out = ws.cmd(&["check", "bad.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("bad.yaml:5:32: input `samples` of stage `m`: `data/bad.parquet` is not a readable table"),
        "{err}"
    );
}

/// The Python helper's own tests (`python/tests`, standard library only).
#[test]
fn python_helper() {
    if !python() {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let out = std::process::Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "python/tests", "-v"])
        .current_dir(common::checkout(""))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Ran 6 tests"), "{}", stderr(&out));
}

/// A user crate's stage (examples/custom_stage.rs) works through the whole
/// CLI: listed, checked, run, inspected; a rerun is fresh.
#[test]
fn a_user_crate_adds_stages_to_the_whole_cli() {
    // cargo builds the examples beside the test binaries (target/<profile>/examples).
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(|d| d.parent()).unwrap().join("examples").join("custom_stage");
    assert!(bin.is_file(), "{} was not built (cargo test builds examples)", bin.display());
    let ws = Workspace::new();
    ws.write(
        "spiral.yaml",
        "name: spiral\nstages:\n  points:\n    kind: generate\n    params: { dataset: spiral, n_samples: 200, turns: 3.0 }\n  dist:\n    kind: validate\n    inputs: { samples: points, target: points }\n    params: { checks: distribution, metrics: [mmd], directions: 4 }\n",
    );
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .current_dir(ws.path())
            .env_remove("SCOREFLOW_ARTIFACTS")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["stages", "generate", "spiral"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("turns"), "{}", stderr(&out));
    let out = run(&["run", "spiral.yaml", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["inspect", "points", "--pipeline", "spiral.yaml", "--json"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"rows\": 200"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&["run", "spiral.yaml", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("\"started\""), "a rerun is fresh: {text}");
    // The stock binary does not know the stage: a spec error naming it.
    let out = ws.cmd(&["check", "spiral.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown dataset `spiral`"), "{}", stderr(&out));
}

/// Ctrl-C ends a running command with everything it started (its process
/// group), records it as interrupted and caches nothing for it.
#[test]
fn ctrl_c_kills_the_command_and_its_children() {
    let ws = Workspace::new();
    let pids = ws.path().join("pids");
    let spec = format!(
        "name: long\nstages:\n  slow:\n    kind: generate\n    run: [sh, -c, 'sleep 300 & echo $! > {0}; sleep 300 & echo $! >> {0}; wait']\n    outputs: {{ t: table }}\n",
        pids.display()
    );
    ws.write("long.yaml", &spec);
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("scoreflow"))
        .current_dir(ws.path())
        .env_remove("SCOREFLOW_ARTIFACTS")
        .args(["run", "long.yaml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let read = || std::fs::read_to_string(&pids).unwrap_or_default();
    while read().lines().count() < 2 {
        assert!(started.elapsed().as_secs() < 30, "the command never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sleepers: Vec<String> = read().lines().map(str::to_string).collect();
    assert!(std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("killed 1 running command"), "{}", stderr(&out));
    // The sleeps are gone (reaped or killed: no such process, or a zombie of init).
    std::thread::sleep(std::time::Duration::from_millis(200));
    for pid in sleepers {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = state.split_whitespace().nth(2).is_some_and(|s| s != "Z");
        assert!(!alive, "process {pid} of the command outlived the interrupt: {state}");
    }
    assert_eq!(records(&ws), 0);
    assert_eq!(ws.latest_manifest("long")["stages"][0]["status"], "interrupted");
}

/// Exported models load in PyTorch through the helper
/// (`scoreflow.torch_model`) and compute scoreflow's own forward pass, row by
/// row: the two-moons ε-network, the S-MEME score network, and the tuned one
/// with its delta. Runs where the Python (`SCOREFLOW_PYTHON`, else `python3`)
/// has torch; says it was skipped elsewhere.
#[test]
fn exported_models_load_in_pytorch_with_scoreflows_forward() {
    use scoreflow::numerics::sde::ddpm::EpsModel;
    use scoreflow::numerics::sde::sampler::ScoreModel;
    use scoreflow::workloads::triangles::net::FastMlp;
    use scoreflow::workloads::triangles::net::ScoreNetWeights;
    use scoreflow::workloads::two_moons::net::EpsModelWeights;
    use scoreflow::workloads::two_moons::net::FastEps;
    let py = std::env::var("SCOREFLOW_PYTHON").unwrap_or_else(|_| "python3".into());
    let torch = std::process::Command::new(&py).args(["-c", "import torch"]).output();
    if !torch.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: {py} has no torch (pip install torch, or set SCOREFLOW_PYTHON)");
        return;
    }
    let ws = Workspace::new();
    ws.write("moons.yaml", &common::small_moons());
    ws.write("smeme.yaml", &common::small_smeme());
    for spec in ["moons.yaml", "smeme.yaml"] {
        let out = ws.cmd(&["run", spec]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let export = |spec: &str, target: &str, file: &str| {
        let out = ws.cmd(&["export", target, "--pipeline", spec, "-o", file]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read(ws.path().join(file)).unwrap()
    };
    // A few rows, scoreflow's forward on them, and what torch must give.
    let mut cases = Vec::new();
    let rows = |dim: usize| (0..5 * dim).map(|i| ((i as f32) * 0.37).sin() * 1.5).collect::<Vec<f32>>();
    let bin = export("moons.yaml", "ddpm.model", "eps.bin");
    export("moons.yaml", "ddpm.model", "eps.safetensors");
    let w = EpsModelWeights::from_bytes(&bin).unwrap();
    let eps = FastEps::new(&w.config, &w.raw);
    let x = rows(w.config.dim);
    let mut out = vec![0f32; x.len()];
    eps.eval(&x, 417.0, &mut out, &mut eps.scratch(5));
    cases
        .push(serde_json::json!({"file": "eps.safetensors", "t": 417.0, "dim": w.config.dim, "x": x, "expected": out}));
    for (target, file) in [("pretrain.model", "score"), ("tuned.model", "tuned")] {
        let bin = export("smeme.yaml", target, &format!("{file}.bin"));
        export("smeme.yaml", target, &format!("{file}.safetensors"));
        let w = ScoreNetWeights::from_bytes(&bin).unwrap();
        assert_eq!(w.delta.is_empty(), file == "score");
        let net = FastMlp::new(&w);
        let x = rows(w.dim);
        let mut out = vec![0f32; x.len()];
        net.forward(&x, 0.3, &mut out, &mut net.scratch(5));
        cases.push(
            serde_json::json!({"file": format!("{file}.safetensors"), "t": 0.3, "dim": w.dim, "x": x, "expected": out}),
        );
    }
    std::fs::write(ws.path().join("cases.json"), serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = r#"
import json, sys, torch
sys.path.insert(0, sys.argv[1])
import scoreflow
worst = 0.0
for c in json.load(open("cases.json")):
    net = scoreflow.torch_model(c["file"])
    x = torch.tensor(c["x"], dtype=torch.float32).reshape(-1, c["dim"])
    with torch.no_grad():
        y = net(x, torch.full((x.shape[0],), c["t"]))
    want = torch.tensor(c["expected"]).reshape(y.shape)
    err = float(((y - want).abs() / (1e-3 + want.abs())).max())
    worst = max(worst, err)
    print(c["file"], type(net).__name__, "max relative error %.2e" % err)
assert worst < 1e-4, worst
"#;
    let out = std::process::Command::new(&py)
        .args(["-c", script, common::checkout("python").to_str().unwrap()])
        .current_dir(ws.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("eps.safetensors EpsNet") && text.contains("tuned.safetensors ScoreNet"), "{text}");
    eprintln!("{text}");
}

/// A corrupt copy of a command's code file in the cache is stored again from
/// the spec's bytes before the command runs; the stage runs the right script.
#[test]
fn a_corrupt_cached_code_file_is_stored_again() {
    use scoreflow::engine::cache::Cache;
    use scoreflow::engine::stage::Format;
    let ws = Workspace::new();
    let script = "printf 'v\\n1\\n' > \"$SCOREFLOW_OUTPUT_DIR/t.csv\"\n";
    ws.write("make.sh", script);
    ws.write("p.yaml", "name: p\nstages:\n  s:\n    kind: generate\n    run: [sh, make.sh]\n    code: [make.sh]\n    outputs: { t: table }\n");
    let (out, _) = ws.run_json("p.yaml", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let object =
        Cache::new(ws.artifacts()).object_path(&scoreflow::engine::hash::blob_hash(script.as_bytes()), Format::Blob);
    assert!(object.is_file(), "the code is an object of the cache");
    std::fs::write(&object, "rm -rf /\n").unwrap();
    let out = ws.cmd(&["run", "p.yaml", "--force", "s"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "{text}");
    // Stored again before the job read it (the store checks a file in place).
    assert_eq!(std::fs::read_to_string(&object).unwrap(), script);
    let out = ws.cmd(&["logs", "s", "--pipeline", "p.yaml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("sh make.sh"), "{}", String::from_utf8_lossy(&out.stdout));
}
