//! Sweeps: a spec's `matrix:` expands it into one instance per combination of
//! values, and the instances merge into one pipeline in which a stage that does
//! not depend on a swept value exists once.
//!
//! ```yaml
//! matrix:
//!   seed: [1, 2, 3]                        # the pipeline seed
//!   stages.pretrain.params.lr: [0.01, 0.003]
//!   stages.tuned.seed: [7, 8]              # a stage's own seed
//! ```
//!
//! Every target is checked like the spec itself (the stage exists, the
//! parameter is declared, each value has its type, the rules across parameters
//! and between stages hold in every combination), each error at its value's
//! file:line:col. Instances merge by *structure*: two stages are one when kind,
//! implementation, version, params, seed and their inputs' stages are the same,
//! which is exactly when their keys will be. A merged stage keeps its name; one
//! that differs across instances is named after the swept values it depends on,
//! `pretrain[seed=1,lr=0.01]`. The engine then runs the merged pipeline as any
//! other: keys, cache, reasons and reports do not know about the matrix.

use std::collections::HashMap;

use super::yaml::{Node, Pos};
use super::{Collector, Spec, StageSpec, entries};
use crate::engine::hash::{Canon, Hash};
use crate::engine::params::{Raw, Value, encode_params};

/// One combination of swept values, and the merged stage that plays each of
/// the spec's stages in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// (label, value) of every swept target, in matrix order.
    pub values: Vec<(String, Value)>,
    /// The spec's stage name → the merged stage's name.
    pub stages: Vec<(String, String)>,
}

/// What a matrix expanded to, for `status`, the run summary and `compare`.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixInfo {
    /// Every combination, in matrix order (the last target fastest).
    pub combinations: Vec<Instance>,
    /// Combinations of swept values.
    pub instances: usize,
    /// Stages over all instances (instances × stages of the spec).
    pub instance_stages: usize,
    /// Stages actually planned: `instance_stages` less what instances share.
    pub distinct: usize,
    /// Planned stages that more than one instance uses.
    pub shared: usize,
}

impl std::fmt::Display for MatrixInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} instances, {} stages in all, {} distinct, {} shared by several instances",
            self.instances, self.instance_stages, self.distinct, self.shared
        )
    }
}

/// One swept target and its values.
struct Axis {
    /// The label used in stage names: `seed`, `lr`, `tuned.seed`.
    label: String,
    target: Target,
    values: Vec<(Value, Pos)>,
}

enum Target {
    PipelineSeed,
    StageSeed(usize),
    Param(usize, String),
}

/// Read the `matrix:` mapping against the base spec; errors go to `c`.
fn axes(c: &mut Collector, node: &Node, base: &Spec) -> Vec<Axis> {
    let Some(list) = entries(node) else {
        c.err(node.pos, format!("`matrix` must map targets to lists of values, found {}", node.describe()));
        return Vec::new();
    };
    let mut axes: Vec<Axis> = Vec::new();
    for (k, v) in list {
        let key = k.as_str().unwrap_or_default();
        let parts: Vec<&str> = key.split('.').collect();
        let stage = |name: &str, c: &mut Collector| -> Option<usize> {
            let idx = base.index(name);
            if idx.is_none() {
                let names: Vec<&str> = base.stages.iter().map(|s| s.name.as_str()).collect();
                c.err(
                    k.pos,
                    format!("matrix target `{key}`: no stage `{name}`{}", crate::engine::params::suggest(name, &names)),
                );
            }
            idx
        };
        let target = match parts.as_slice() {
            ["seed"] => Some((Target::PipelineSeed, "seed".to_string())),
            ["stages", s, "seed"] => stage(s, c).map(|i| (Target::StageSeed(i), format!("{s}.seed"))),
            ["stages", s, "params", p] => match stage(s, c) {
                None => None,
                Some(i) => {
                    let imp = base.stages[i].imp;
                    // A command stage's params are free-form: any name is one.
                    let free = imp.method() == crate::engine::command::METHOD;
                    if free || imp.params().iter().any(|d| d.name == *p) {
                        Some((Target::Param(i, p.to_string()), p.to_string()))
                    } else {
                        let names: Vec<&str> = imp.params().iter().map(|d| d.name).collect();
                        c.err(
                            k.pos,
                            format!(
                                "matrix target `{key}`: a {} {} stage has no parameter `{p}`; its parameters are: {}{}",
                                imp.kind(),
                                imp.method(),
                                names.join(", "),
                                crate::engine::params::suggest(p, &names)
                            ),
                        );
                        None
                    }
                }
            },
            _ => {
                c.err(
                    k.pos,
                    format!("matrix target `{key}` must be `seed`, `stages.STAGE.seed` or `stages.STAGE.params.PARAM`"),
                );
                None
            }
        };
        let Some((target, mut label)) = target else { continue };
        if axes.iter().any(|a| a.label == label) {
            label = key.trim_start_matches("stages.").replace(".params", "");
        }
        let items = match &v.value {
            super::yaml::NodeValue::Seq(items) if !items.is_empty() => items,
            _ => {
                c.err(v.pos, format!("matrix target `{key}` needs a non-empty list of values, found {}", v.describe()));
                continue;
            }
        };
        let mut values = Vec::new();
        for item in items {
            let coerced = match &target {
                Target::PipelineSeed | Target::StageSeed(_) => match item.to_raw() {
                    Raw::Int(i) if i >= 0 => Ok(Value::Int(i)),
                    _ => Err(format!("a seed must be a non-negative integer, found {}", item.describe())),
                },
                Target::Param(i, p) => match base.stages[*i].imp.params().iter().find(|d| d.name == p) {
                    Some(def) => def.ty.coerce(&item.to_raw()),
                    None => crate::engine::command::free_param(&item.to_raw()),
                },
            };
            match coerced {
                Ok(value) => values.push((value, item.pos)),
                Err(why) => c.err(item.pos, format!("matrix target `{key}`: {why}")),
            }
        }
        axes.push(Axis { label, target, values });
    }
    axes
}

/// The most combinations one matrix may have: a grid larger than this is
/// several specs' work (they share one cache), and checking it would take
/// minutes and gigabytes before anything ran.
pub const MAX_COMBINATIONS: usize = 10_000;

/// The most stage instances (combinations × stages, before identical ones are
/// shared) one matrix may expand to.
pub const MAX_STAGE_INSTANCES: usize = 200_000;

/// Expand `base` by the matrix in `node`: the merged spec and what it
/// expanded to. Errors go to `c` (the returned spec is then not used).
pub(super) fn expand(c: &mut Collector, node: &Node, base: Spec) -> (Spec, Option<MatrixInfo>) {
    // Axes whose every value was refused are left out (their errors are
    // reported), so the rules of the remaining combinations are still checked.
    let axes: Vec<Axis> = axes(c, node, &base).into_iter().filter(|a| !a.values.is_empty()).collect();
    if axes.is_empty() {
        return (base, None);
    }
    let count = axes.iter().fold(1usize, |n, a| n.saturating_mul(a.values.len()));
    let instances = count.saturating_mul(base.stages.len().max(1));
    if count > MAX_COMBINATIONS || instances > MAX_STAGE_INSTANCES {
        let sizes: Vec<String> = axes.iter().map(|a| a.values.len().to_string()).collect();
        c.err(
            node.pos,
            format!(
                "the matrix has {count} combinations ({}) of {} stage{}, more than one spec may expand to ({MAX_COMBINATIONS} combinations, {MAX_STAGE_INSTANCES} stages before sharing); split the sweep over several specs sharing one cache",
                sizes.join(" × "),
                base.stages.len(),
                if base.stages.len() == 1 { "" } else { "s" }
            ),
        );
        return (base, None);
    }
    // Combinations in declaration order, the last axis fastest.
    let mut combos: Vec<Vec<usize>> = vec![Vec::new()];
    for a in &axes {
        combos =
            combos.into_iter().flat_map(|c| (0..a.values.len()).map(move |j| [c.clone(), vec![j]].concat())).collect();
    }
    let n = base.stages.len();
    let mut merged: Vec<StageSpec> = Vec::new();
    // structural identity → (index in `merged`, the combinations using it)
    let mut nodes: HashMap<Hash, (usize, Vec<usize>)> = HashMap::new();
    // per combination: the spec's stage index → merged index
    let mut maps: Vec<Vec<usize>> = Vec::new();
    // per merged stage: input name → the merged index of its upstream stage
    let mut upstream: Vec<HashMap<String, usize>> = Vec::new();
    for (ci, combo) in combos.iter().enumerate() {
        let stages = instantiate(&base, &axes, combo);
        check_combination(c, node, &base, &axes, combo, &stages);
        // Merge by structure, in file order (inputs come before their consumers
        // only in DAG order: walk that).
        let mut ids: Vec<Option<Hash>> = vec![None; n];
        let mut map = vec![usize::MAX; n];
        for &i in &crate::engine::dag::Dag::new(&base).order {
            let st = &stages[i];
            let id = structural_id(st, &base, &ids);
            ids[i] = Some(id);
            let entry = nodes.entry(id).or_insert_with(|| {
                // Inputs name their upstream by its merged index until every
                // merged stage has its final name.
                upstream.push(
                    st.inputs.iter().map(|(k, r)| (k.clone(), map[base.index(&r.stage).expect("validated")])).collect(),
                );
                merged.push(st.clone());
                (merged.len() - 1, Vec::new())
            });
            entry.1.push(ci);
            map[i] = entry.0;
        }
        maps.push(map);
    }
    let final_names = names(&merged, &nodes, &axes, &combos);
    for (st, ups) in merged.iter_mut().zip(&upstream) {
        for (input, r) in st.inputs.iter_mut() {
            r.stage = final_names[ups[input]].clone();
        }
    }
    for (st, name) in merged.iter_mut().zip(&final_names) {
        st.name = name.clone();
    }
    let combinations = combos
        .iter()
        .zip(&maps)
        .map(|(combo, map)| Instance {
            values: axes.iter().zip(combo).map(|(a, &j)| (a.label.clone(), a.values[j].0.clone())).collect(),
            stages: base.stages.iter().zip(map).map(|(st, &m)| (st.name.clone(), final_names[m].clone())).collect(),
        })
        .collect();
    let info = MatrixInfo {
        combinations,
        instances: combos.len(),
        instance_stages: combos.len() * n,
        distinct: merged.len(),
        shared: nodes.values().filter(|(_, users)| users.len() > 1).count(),
    };
    let spec = Spec { stages: merged, ..base };
    (spec, Some(info))
}

/// The base spec's stages with one combination's values: swept parameters
/// and seeds set, and every stage without a seed of its own given the
/// combination's pipeline seed.
fn instantiate(base: &Spec, axes: &[Axis], combo: &[usize]) -> Vec<StageSpec> {
    let mut stages = base.stages.clone();
    let mut pipeline_seed = base.seed;
    for (a, &j) in axes.iter().zip(combo) {
        let (value, _) = &a.values[j];
        match (&a.target, value) {
            (Target::PipelineSeed, Value::Int(s)) => pipeline_seed = *s as u64,
            (Target::StageSeed(i), Value::Int(s)) => stages[*i].seed = *s as u64,
            (Target::Param(i, p), v) => {
                stages[*i].params.insert(p.clone(), v.clone());
            }
            _ => unreachable!("seeds are integers"),
        }
    }
    for (i, st) in stages.iter_mut().enumerate() {
        if !base.stages[i].seed_given && !axes.iter().any(|a| matches!(a.target, Target::StageSeed(s) if s == i)) {
            st.seed = pipeline_seed;
        }
    }
    stages
}

/// The rules across parameters and between stages, checked in one
/// combination; an error points at the value that makes it.
fn check_combination(
    c: &mut Collector,
    node: &Node,
    base: &Spec,
    axes: &[Axis],
    combo: &[usize],
    stages: &[StageSpec],
) {
    // Rules across parameters and between stages, in this combination.
    // The value to point at: the swept `param` of stage `i` if it is swept,
    // else any swept value of that stage, else the matrix.
    let at = |i: usize, param: Option<&str>| {
        let of = |a: &Axis| match &a.target {
            Target::Param(s, p) => *s == i && param.is_none_or(|q| q == p),
            Target::StageSeed(s) => *s == i && param.is_none(),
            Target::PipelineSeed => false,
        };
        let value = |a: &Axis, j: usize| a.values[j].1;
        axes.iter()
            .zip(combo)
            .find(|(a, _)| of(a))
            .or_else(|| {
                axes.iter()
                    .zip(combo)
                    .find(|(a, _)| matches!(&a.target, Target::Param(s, _) | Target::StageSeed(s) if *s == i))
            })
            .map(|(a, &j)| value(a, j))
            .unwrap_or(node.pos)
    };
    for (i, st) in stages.iter().enumerate() {
        for (param, why) in st.imp.check_params(&st.params) {
            c.err(
                at(i, Some(param)),
                format!("in the matrix combination {}: stage `{}`: {why}", label(axes, combo), st.name),
            );
        }
        for (input, why) in st.imp.needs_inputs(&st.params) {
            if !st.inputs.contains_key(input) && !st.files.contains_key(input) {
                c.err(
                    at(i, None),
                    format!(
                        "in the matrix combination {}: stage `{}` needs input `{input}`: {why}",
                        label(axes, combo),
                        st.name
                    ),
                );
            }
        }
        for (input, r) in &st.inputs {
            let up = &stages[base.index(&r.stage).expect("validated")];
            if let Some(why) = st.imp.check_input(&st.params, input, up.imp, &up.params) {
                c.err(
                    at(base.index(&r.stage).expect("validated"), None),
                    format!(
                        "in the matrix combination {}: input `{input}` of stage `{}`: {why}",
                        label(axes, combo),
                        st.name
                    ),
                );
            }
        }
    }
}

/// A stage instance's structural identity: its implementation, seed,
/// parameters, inputs (by their producers' identities) and files. Instances
/// of the same identity are one stage of the merged spec.
fn structural_id(st: &StageSpec, base: &Spec, ids: &[Option<Hash>]) -> Hash {
    let mut canon = Canon::new("scoreflow/matrix-node/v1");
    canon
        .bytes(st.imp.kind().name().as_bytes())
        .bytes(st.imp.method().as_bytes())
        .u64(st.imp.version() as u64)
        .u64(st.seed);
    let mut params = Vec::new();
    encode_params(&st.params, &mut params);
    canon.bytes(&params);
    for (input, r) in &st.inputs {
        let up = base.index(&r.stage).expect("validated");
        canon.bytes(input.as_bytes()).bytes(&ids[up].expect("upstream first").0).bytes(r.output.as_bytes());
    }
    for (input, f) in &st.files {
        canon.bytes(input.as_bytes()).bytes(&f.hash.0);
    }
    canon.finish()
}

/// The merged stages' names: a stage all instances share keeps its own;
/// others are named after the swept values that are the same in every
/// instance using them (`train[seed=2]`).
fn names(
    merged: &[StageSpec],
    nodes: &HashMap<Hash, (usize, Vec<usize>)>,
    axes: &[Axis],
    combos: &[Vec<usize>],
) -> Vec<String> {
    let mut final_names = vec![String::new(); merged.len()];
    for (idx, users) in nodes.values() {
        let base_name = &merged[*idx].name;
        final_names[*idx] = if users.len() == combos.len() {
            base_name.clone()
        } else {
            let fixed: Vec<String> = axes
                .iter()
                .enumerate()
                .filter(|(k, _)| users.iter().all(|u| combos[*u][*k] == combos[users[0]][*k]))
                .map(|(k, a)| format!("{}={}", a.label, name_text(&a.values[combos[users[0]][k]].0)))
                .collect();
            format!("{base_name}[{}]", fixed.join(","))
        };
    }
    final_names
}

/// A swept value as it stands in a stage's name, which is also a folder's
/// (`latest/<pipeline>/train[data=a%2Fb.csv]/`): `/`, `\\`, `%`, control
/// and text-direction characters percent-encoded, so a value never makes a
/// path of its own (`../..`) or rewrites the terminal it is printed on.
pub fn name_text(v: &Value) -> String {
    let mut out = String::new();
    for ch in v.to_string().chars() {
        if matches!(ch, '/' | '\\' | '%' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') || ch.is_control() {
            let mut buf = [0; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(ch);
        }
    }
    out
}

fn label(axes: &[Axis], combo: &[usize]) -> String {
    axes.iter()
        .zip(combo)
        .map(|(a, &j)| format!("{}={}", a.label, name_text(&a.values[j].0)))
        .collect::<Vec<_>>()
        .join(", ")
}
