//! Every kind of spec error, its message pinned by a snapshot; all errors of a
//! spec are reported at once, with exit code 2, and nothing is written.

mod common;

use std::path::Path;

use common::Workspace;
use scoreflow::engine::spec::validate;

fn errors(text: &str) -> String {
    match validate(Path::new("spec.yaml"), text, scoreflow::registry()) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.to_string(),
    }
}

const GOOD_GEN: &str = "  triangles:\n    kind: generate\n    params: { dataset: triangles, n_samples: 100 }\n";

#[test]
fn yaml_syntax_error() {
    insta::assert_snapshot!(errors("name: x\nstages: [a, b\n"));
}

#[test]
fn not_a_mapping_and_empty() {
    insta::assert_snapshot!("top_level_list", errors("- a\n- b\n"));
    insta::assert_snapshot!("empty", errors(""));
}

#[test]
fn unknown_top_level_and_stage_keys() {
    insta::assert_snapshot!(errors(&format!("name: x\nseeds: 3\nstages:\n{GOOD_GEN}    input: {{ a: b }}\n")));
}

#[test]
fn missing_name_and_stages() {
    insta::assert_snapshot!(errors("seed: 1\n"));
}

#[test]
fn unknown_kind() {
    insta::assert_snapshot!(errors("name: x\nstages:\n  a:\n    kind: genrate\n"));
}

#[test]
fn unknown_method() {
    insta::assert_snapshot!(errors("name: x\nstages:\n  a:\n    kind: generate\n    params: { dataset: circles }\n"));
}

#[test]
fn unknown_and_ill_typed_params() {
    insta::assert_snapshot!(errors(
        "name: x\nstages:\n  a:\n    kind: generate\n    params:\n      dataset: triangles\n      n_sample: 10\n      sort_sides: maybe\n      tol: -1\n      side_bias: { isoceles: 0.5, scalene: lots }\n"
    ));
}

#[test]
fn missing_input_and_dangling_references() {
    insta::assert_snapshot!(errors(&format!(
        "name: x\nstages:\n{GOOD_GEN}  l1:\n    kind: label\n    params: {{ scheme: triangle_types }}\n  l2:\n    kind: label\n    params: {{ scheme: triangle_types }}\n    inputs: {{ data: triangle }}\n  l3:\n    kind: label\n    params: {{ scheme: triangle_types }}\n    inputs: {{ data: triangles.sample, extra: triangles }}\n"
    )));
}

#[test]
fn duplicate_stage_name() {
    insta::assert_snapshot!(errors(&format!("name: x\nstages:\n{GOOD_GEN}{GOOD_GEN}")));
}

#[test]
fn cycle_names_its_path() {
    insta::assert_snapshot!(errors(
        "name: x\nstages:\n  a:\n    kind: label\n    params: { scheme: triangle_types }\n    inputs: { data: c.labels }\n  b:\n    kind: label\n    params: { scheme: triangle_types }\n    inputs: { data: a.labels }\n  c:\n    kind: label\n    params: { scheme: triangle_types }\n    inputs: { data: b.labels }\n"
    ));
}

#[test]
fn bad_seed_and_names() {
    insta::assert_snapshot!(errors(
        "name: my pipeline\nseed: -3\nstages:\n  bad.name:\n    kind: generate\n    seed: x\n    params: { dataset: triangles }\n"
    ));
}

#[test]
fn the_binary_reports_every_error_at_once_exits_2_and_writes_nothing() {
    let ws = Workspace::new();
    ws.write(
        "bad.yaml",
        "name: x\nstages:\n  a:\n    kind: genrate\n  b:\n    kind: label\n    params: { scheme: triangle_types }\n    inputs: { data: nowhere }\n",
    );
    for cmd in [["check", "bad.yaml"], ["run", "bad.yaml"], ["status", "bad.yaml"]] {
        let out = ws.cmd(&cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bad.yaml:4:11: unknown stage kind `genrate`"), "{err}");
        assert!(err.contains("bad.yaml:8:21: input `data` of stage `b` refers to stage `nowhere`"), "{err}");
        assert!(err.contains("2 errors in bad.yaml; nothing was run"), "{err}");
    }
    assert!(!ws.artifacts().exists(), "nothing may be written for a bad spec");
}

/// A second YAML document is an error at its start, not dropped unread;
/// a spec's control characters (a colour, a terminal title) are shown
/// escaped in its errors, never sent to the terminal.
#[test]
fn a_second_document_and_control_characters() {
    let two = format!("name: x\nstages:\n{GOOD_GEN}---\nfoo: [\n");
    let err = errors(&two);
    assert!(err.contains("spec.yaml:8:1: this is not valid YAML"), "the second document is read: {err}");
    let two = format!("name: x\nstages:\n{GOOD_GEN}---\nname: y\n");
    assert!(errors(&two).contains("spec.yaml:6:1: a second YAML document starts here"), "{}", errors(&two));
    let err = errors("name: x\nstages:\n  \"\\e[31mred\\e]0;title\\a\":\n    kind: generate\n");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains("\\u{1b}[31mred"), "{err}");
}

#[test]
fn empty_stages_tabs_aliases_and_a_byte_order_mark() {
    insta::assert_snapshot!("empty_stages", errors("name: x\nstages: {}\n"));
    insta::assert_snapshot!(
        "tab",
        errors("name: x\nstages:\n  a:\n    kind: generate\n\tparams: { dataset: triangles }\n")
    );
    insta::assert_snapshot!("undefined_alias", errors("name: x\nstages: *nowhere\n"));
    // A BOM is not part of the first key; anchors (under an `x-` key, which is
    // ignored) with merge keys share params, the stage's own keys winning.
    let ok = "\u{feff}name: x\nx-gen: &g { dataset: triangles, n_samples: 100, tol: 0.02 }\nstages:\n  a:\n    kind: generate\n    params: { <<: *g, n_samples: 50 }\n  b:\n    kind: generate\n    params: *g\n";
    let spec = validate(Path::new("spec.yaml"), ok, scoreflow::registry()).unwrap();
    let p = |i: usize, k: &str| spec.stages[i].params[k].clone();
    assert_eq!(p(0, "n_samples"), scoreflow::engine::params::Value::Int(50));
    assert_eq!(p(0, "tol"), scoreflow::engine::params::Value::Float(0.02));
    assert_eq!(p(1, "n_samples"), scoreflow::engine::params::Value::Int(100));
}

#[test]
fn a_stage_that_cannot_fit_in_memory_is_refused_by_check() {
    let ws = Workspace::new();
    ws.write(
        "big.yaml",
        "name: big\nstages:\n  a:\n    kind: generate\n    params: { dataset: triangles, n_samples: 100000000 }\n",
    );
    let out = ws.cmd(&["check", "big.yaml"]).env("SCOREFLOW_MEMORY", "8G").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    insta::assert_snapshot!("too_big_for_memory", err);
    let out = ws.cmd(&["run", "big.yaml"]).env("SCOREFLOW_MEMORY", "8G").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!ws.artifacts().exists());
}

#[test]
fn check_rejects_wiring_a_table_without_the_needed_columns() {
    insta::assert_snapshot!(errors(
        "name: x\nstages:\n  moons:\n    kind: generate\n    params: { dataset: two_moons, n_samples: 100 }\n  lab:\n    kind: label\n    params: { scheme: triangle_types }\n    inputs: { data: moons.samples }\n  ok:\n    kind: label\n    params: { scheme: triangle_types }\n    inputs: { data: t }\n  t:\n    kind: generate\n    params: { dataset: triangles, n_samples: 10 }\n"
    ));
}

/// Outputs carry a media type: a sampler for the OU score model wired to a
/// DDPM ε-model (both "model weights") is refused before anything runs, and so
/// is a report page given where a model is expected.
#[test]
fn check_rejects_a_model_of_the_wrong_framing() {
    insta::assert_snapshot!(errors(
        "name: x\nstages:\n  moons:\n    kind: generate\n    params: { dataset: two_moons, n_samples: 100 }\n  ddpm:\n    kind: train\n    inputs: { data: moons }\n    params: { objective: ddpm_eps }\n  pc:\n    kind: sample\n    inputs: { model: ddpm.model }\n    params: { sampler: pc }\n  euler:\n    kind: sample\n    inputs: { model: ddpm.loss }\n    params: { sampler: euler_discrete }\n"
    ));
}

/// Rules across parameters, and between a stage and its producer, are checked
/// before anything runs, each at the parameter or input it concerns.
#[test]
fn check_applies_cross_parameter_rules() {
    insta::assert_snapshot!(errors(
        "name: x\nstages:\n  moons:\n    kind: generate\n    params: { dataset: two_moons, n_samples: 100 }\n  ddpm:\n    kind: train\n    inputs: { data: moons }\n    params: { objective: ddpm_eps, time_channels: 33, beta_start: 0.5, beta_end: 0.02 }\n  s:\n    kind: sample\n    inputs: { model: ddpm.model }\n    params: { sampler: ddpm, use_ema: true }\n"
    ));
}

/// Inputs that parameter values need: DEM's checkpoint rule (the default
/// `select: best_val_w2`) without a validation set, and `method: file`
/// without its `data`, are refused at the stage, before anything runs.
#[test]
fn check_refuses_parameters_that_need_a_missing_input() {
    insta::assert_snapshot!(errors(
        "name: x\nstages:\n  ref:\n    kind: generate\n    params: { dataset: boltzmann, energy: dw4, method: file }\n  train:\n    kind: train\n    inputs: { target: ref }\n    params: { objective: idem }\n  fine:\n    kind: train\n    inputs: { target: ref }\n    params: { objective: idem, select: last }\n"
    ));
}

/// A matrix is checked like the spec: its targets, every value's type, and
/// the rules across parameters in every combination, each at its place.
#[test]
fn matrix_errors() {
    insta::assert_snapshot!(errors(
        "name: x\nmatrix:\n  stages.nope.params.lr: [1]\n  stages.ddpm.params.lrr: [1]\n  stages.ddpm.params.lr: [0.01, fast]\n  stages.ddpm.params.time_channels: [32, 33]\n  seed: [-1]\n  colour: [1]\nstages:\n  moons:\n    kind: generate\n    params: { dataset: two_moons, n_samples: 100 }\n  ddpm:\n    kind: train\n    inputs: { data: moons }\n    params: { objective: ddpm_eps }\n"
    ));
}

#[test]
fn resource_errors() {
    insta::assert_snapshot!(errors(&format!(
        "name: x\nresources: {{ time: 1h }}\nstages:\n{GOOD_GEN}    resources: {{ cpus: 0, mem: 16GB, gpus: two, disk: 10G }}\n  other:\n    kind: generate\n    params: {{ dataset: triangles, n_samples: 10 }}\n    resources: 4\n"
    )));
}

/// Resources say how a stage runs, not what it computes: no key changes.
#[test]
fn resources_are_not_part_of_any_key() {
    let ws = Workspace::new();
    let plain = format!("name: x\nstages:\n{GOOD_GEN}");
    let with = format!(
        "name: x\nresources: {{ time: \"10:00\" }}\nstages:\n{GOOD_GEN}    resources: {{ cpus: 4, mem: 2G, gpus: \"a100:1\" }}\n"
    );
    ws.write("p.yaml", &plain);
    assert!(ws.cmd(&["run", "p.yaml"]).output().unwrap().status.success());
    ws.write("p.yaml", &with);
    let out = ws.cmd(&["status", "p.yaml", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["fresh"], true, "{v}");
}

#[test]
fn slurm_flags_without_the_slurm_executor_are_bad_input() {
    let ws = Workspace::new();
    ws.write("p.yaml", &format!("name: x\nstages:\n{GOOD_GEN}"));
    let out = ws.cmd(&["run", "p.yaml", "--partition", "gpu", "--max-jobs", "3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
    assert!(!ws.artifacts().exists(), "nothing written");
}

/// A parameter of the wrong value is reported; the rules across parameters,
/// which would read it, wait for it to be right (no crash on a partial map).
#[test]
fn cross_parameter_rules_wait_for_well_typed_parameters() {
    let bad = "name: x\nstages:\n  mc:\n    kind: sample\n    params: { sampler: mc_score, estimator: unbiased, sigma_min: 2.0 }\n";
    insta::assert_snapshot!(errors(bad));
    let rule = "name: x\nstages:\n  mc:\n    kind: sample\n    params: { sampler: mc_score, sigma_min: 2.0 }\n";
    insta::assert_snapshot!("cross_parameter_rule", errors(rule));
}

/// The rules between a stage's parameters and its input's (`check_input`)
/// also wait for both maps to be well typed: a `--set` that leaves an iDEM
/// training's clip as `none` (a float parameter) is one clear error, exit 2,
/// not a crash in the rule that reads it.
#[test]
fn input_rules_wait_for_well_typed_parameters() {
    let ws = Workspace::new();
    ws.write(
        "p.yaml",
        "name: x\nstages:\n  reference:\n    kind: generate\n    params: { dataset: boltzmann, energy: dw4, method: mcmc, n_samples: 8, chains: 4, burn_in: 10, thin: 2 }\n  train:\n    kind: train\n    inputs: { target: reference.samples }\n    params: { objective: idem, energy: dw4, outer: 1, inner: 1, batch: 4, k: 4, hidden: 8, steps: 4, samples_per_outer: 4, max_norm: 20.0, select: last }\n",
    );
    let out = ws.cmd(&["run", "p.yaml", "--set", "stages.train.params.max_norm=none"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stderr);
    insta::assert_snapshot!(text.trim_end());
    assert!(!ws.artifacts().exists(), "nothing written");
}

/// The general rule behind the test above, over every shipped pipeline: a
/// `--set` that gives any parameter of any stage a value of the wrong type,
/// `null`, or a number below its range is a spec error naming that parameter
/// (never a panic in a rule that reads the map, never accepted).
#[test]
fn any_ill_typed_parameter_in_any_pipeline_is_an_error_naming_it() {
    use scoreflow::engine::params::ParamType;
    use scoreflow::engine::spec::{Override, load_with};
    let registry = scoreflow::registry();
    let mut pipelines: Vec<_> = std::fs::read_dir(common::checkout("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    pipelines.sort();
    assert!(pipelines.len() >= 10);
    let mut failures = Vec::new();
    let mut tried = 0;
    for path in &pipelines {
        let spec = load_with(path, registry, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // A matrix expands `report` into `report[seed=3]`, …: set the
        // stage's own entry, once.
        let mut seen = std::collections::BTreeSet::new();
        for st in &spec.stages {
            let name = st.name.split('[').next().unwrap();
            if !seen.insert(name.to_string()) {
                continue;
            }
            for def in st.imp.params() {
                let mut values = vec!["~".to_string()];
                values.push(match def.ty {
                    ParamType::Str { .. } => "[1, 2]".to_string(),
                    _ => "zzz".to_string(),
                });
                match def.ty {
                    ParamType::Int { min, .. } if min > i64::MIN => values.push((min as i128 - 1).to_string()),
                    ParamType::Float { min, .. } if min.is_finite() => values.push(format!("{:?}", min - 1.0)),
                    _ => {}
                }
                for value in values {
                    let set = format!("stages.{name}.params.{}={value}", def.name);
                    let ov = Override::parse(false, &set).unwrap();
                    tried += 1;
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load_with(path, registry, &[ov])));
                    match outcome {
                        Err(_) => failures.push(format!("{}: --set {set}: panicked", path.display())),
                        Ok(Ok(_)) => failures.push(format!("{}: --set {set}: accepted", path.display())),
                        Ok(Err(e)) if !e.to_string().contains(&format!("`{}`", def.name)) => {
                            failures.push(format!("{}: --set {set}: the error does not name it: {e}", path.display()))
                        }
                        Ok(Err(_)) => {}
                    }
                }
            }
        }
    }
    assert!(tried > 1000, "{tried}");
    assert!(failures.is_empty(), "{} of {tried}:\n{}", failures.len(), failures.join("\n"));
}

/// Values that end up in a Slurm batch script — a GPU type, `--partition`,
/// `--account`, the artifacts path — are names or paths, never lines: a
/// newline or a quote in one is bad input (exit 2) before anything is written
/// or submitted, so no spec or option can add a command to the script.
#[test]
fn hostile_slurm_values_never_reach_a_batch_script() {
    let ws = Workspace::new();
    let pwned = ws.path().join("PWNED");
    let one = "  a:\n    kind: generate\n    params: { dataset: two_moons, n_samples: 10 }\n";
    ws.write(
        "bad.yaml",
        &format!("name: h\nstages:\n{one}    resources: {{ gpus: \"a100\\ntouch {}\\n#:1\" }}\n", pwned.display()),
    );
    let out = ws.cmd(&["check", "bad.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`resources.gpus` of stage `a` must be"));
    ws.write("ok.yaml", &format!("name: h\nstages:\n{one}"));
    let hostile = format!("x\ntouch {}", pwned.display());
    for args in [
        vec!["--partition", hostile.as_str()],
        vec!["--account", "acct'; touch PWNED; '"],
        vec!["--artifacts", "art\nx"],
    ] {
        let mut all = vec!["run", "ok.yaml", "--executor", "slurm"];
        all.extend(args.iter().copied());
        let out = ws.cmd(&all).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(args[0].trim_start_matches("--")), "{args:?}: {err}");
    }
    assert!(!pwned.exists() && !ws.path().join("PWNED").exists());
    assert!(!ws.artifacts().join("slurm").exists(), "nothing submitted");
}

/// A 1 KB alias bomb and a matrix of a million combinations are refused by
/// `check` at their line, quickly, without exhausting memory.
#[test]
fn an_alias_bomb_and_a_huge_matrix_are_refused_quickly() {
    let mut bomb = String::from("name: x\nx-0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = format!("*a{}", i - 1);
        bomb.push_str(&format!("x-{i}: &a{i} [{}]\n", vec![p; 10].join(", ")));
    }
    bomb.push_str(GOOD_GEN.replace("  triangles:", "stages:\n  triangles:").as_str());
    insta::assert_snapshot!("alias_bomb", errors(&bomb));
    let values: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let huge = format!(
        "name: x\nmatrix:\n  seed: [{}]\n  stages.triangles.params.n_samples: [{}]\nstages:\n{GOOD_GEN}",
        values.join(", "),
        values.iter().map(|v| format!("{}", 100 + v.parse::<usize>().unwrap())).collect::<Vec<_>>().join(", ")
    );
    insta::assert_snapshot!("matrix_too_big", errors(&huge));
    let ws = Workspace::new();
    ws.write("bomb.yaml", &bomb);
    let out = ws.cmd(&["check", "bomb.yaml"]).timeout(std::time::Duration::from_secs(20)).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Widths and batches scale allocations too: `check` refuses, with the
/// estimate, a network or batch that cannot fit (a 65 536-wide score net, a
/// tune stage of a million rows and a million units) before anything runs,
/// and passes the shipped settings.
#[test]
fn widths_and_batches_are_inside_the_memory_estimate() {
    let ws = Workspace::new();
    let smeme = std::fs::read_to_string(common::checkout("pipelines/smeme.yaml")).unwrap();
    ws.write("s.yaml", &smeme);
    let check = |sets: &[&str]| {
        let mut args = vec!["check", "s.yaml"];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = ws.cmd(&args).env("SCOREFLOW_MEMORY", "16G").output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    assert_eq!(check(&[]).0, Some(0), "{}", check(&[]).1);
    let (code, err) = check(&["stages.pretrain.params.hidden=65536"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("stage `pretrain` would need about") && err.contains("with hidden = 65536"), "{err}");
    let (code, err) = check(&["stages.tuned.params.hidden=1000000", "stages.tuned.params.batch_size=1000000"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("stage `tuned` would need about"), "{err}");
    assert!(!ws.artifacts().exists());
}
