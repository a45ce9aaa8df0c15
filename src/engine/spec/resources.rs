//! `resources:` — what a stage asks of a cluster scheduler.
//!
//! ```yaml
//! resources: { time: "10:00" }            # pipeline-wide defaults
//! stages:
//!   pretrain:
//!     resources: { cpus: 8, mem: 16G, time: "2:00:00", gpus: 1 }
//! ```
//!
//! Resources say how a stage is run, never what it computes, so they are not
//! part of any key: raising a time limit reuses every cached result. The local
//! executor ignores them; `--executor slurm` turns them into `sbatch` flags
//! (`--cpus-per-task`, `--mem`, `--time`, `--gpus`). A stage's own fields
//! override the pipeline's, field by field. Values are checked here, with
//! file:line:col, in Slurm's own formats, so a typo fails before any job is
//! submitted.

use super::yaml::{Node, Pos};
use super::{Collector, entries};
use crate::engine::params::{Raw, suggest};

/// A stage's scheduler request; `None` fields leave the scheduler's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPUs for the stage's one task (also the worker's thread count).
    pub cpus: Option<u32>,
    /// Memory for the job, as Slurm reads it: `4G`, `500M`, or MiB as a number.
    pub mem: Option<String>,
    /// Wall-clock limit: minutes, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM` or `D-HH:MM:SS`.
    pub time: Option<String>,
    /// GPUs: a count, or `type:count`.
    pub gpus: Option<String>,
    /// How often a checkpointing stage saves its state (`10m`, `500 steps`;
    /// default 5 minutes; [`crate::engine::checkpoint`]).
    pub checkpoint_every: Option<crate::engine::checkpoint::Every>,
    /// How many times the Slurm executor resubmits a job that stopped at its
    /// time limit or was preempted after saving a checkpoint (default 10).
    pub max_requeues: Option<u32>,
}

const KEYS: &[&str] = &["cpus", "mem", "time", "gpus", "checkpoint_every", "max_requeues"];

/// Resubmissions of one stage, when `max_requeues` is not given.
pub const DEFAULT_MAX_REQUEUES: u32 = 10;

impl Resources {
    /// `self`'s fields, falling back to `defaults`' field by field.
    pub fn or(&self, defaults: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.or(defaults.cpus),
            mem: self.mem.clone().or_else(|| defaults.mem.clone()),
            time: self.time.clone().or_else(|| defaults.time.clone()),
            gpus: self.gpus.clone().or_else(|| defaults.gpus.clone()),
            checkpoint_every: self.checkpoint_every.or(defaults.checkpoint_every),
            max_requeues: self.max_requeues.or(defaults.max_requeues),
        }
    }

    /// The `sbatch` flags that ask for these resources.
    pub fn sbatch_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(c) = self.cpus {
            flags.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            flags.push(format!("--mem={m}"));
        }
        if let Some(t) = &self.time {
            flags.push(format!("--time={t}"));
        }
        if let Some(g) = &self.gpus {
            flags.push(format!("--gpus={g}"));
        }
        flags
    }
}

impl Resources {
    /// The time limit in seconds, read as Slurm reads `time` (a bare number
    /// is minutes; `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`).
    pub fn time_seconds(&self) -> Option<u64> {
        let s = self.time.as_deref()?;
        let (days, rest) = match s.split_once('-') {
            Some((d, r)) => (d.parse::<u64>().ok()?, Some(r)),
            None => (0, None),
        };
        let n: Vec<u64> = rest.unwrap_or(s).split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        let secs = match (rest.is_some(), n.as_slice()) {
            (false, [m]) => m * 60,
            (false, [m, s]) => m * 60 + s,
            (false, [h, m, s]) => h * 3600 + m * 60 + s,
            (true, [h]) => h * 3600,
            (true, [h, m]) => h * 3600 + m * 60,
            (true, [h, m, s]) => h * 3600 + m * 60 + s,
            _ => return None,
        };
        Some(days * 86_400 + secs)
    }
}

/// A word Slurm reads as a name (a GPU type, a partition, an account):
/// letters, digits, `_`, `-`, `.`, and `,` between names. Nothing that can end
/// a line of a batch script or start a shell word.
pub fn slurm_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.,".contains(c))
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Slurm's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
fn slurm_time(s: &str) -> bool {
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(digits) && parts.len() <= 3 && parts.iter().all(|p| digits(p)) && s != "0"
}

/// Slurm's memory format: a number of MiB, or a number with K, M, G or T.
fn slurm_mem(s: &str) -> bool {
    let n = s.strip_suffix(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']).unwrap_or(s);
    digits(n) && !n.trim_start_matches('0').is_empty()
}

/// Parse a `resources:` mapping; errors go to `c`.
pub(super) fn parse(c: &mut Collector, node: &Node, whose: &str) -> Resources {
    let mut r = Resources::default();
    let Some(fields) = entries(node) else {
        c.err(
            node.pos,
            format!("`resources` of {whose} must be a mapping with {}, found {}", KEYS.join(", "), node.describe()),
        );
        return r;
    };
    let scalar = |v: &Node| -> Option<String> {
        match v.to_raw() {
            Raw::Int(i) => Some(i.to_string()),
            Raw::Str(s) => Some(s),
            _ => None,
        }
    };
    for (k, v) in fields {
        let key = k.as_str().unwrap_or_default();
        let bad = |c: &mut Collector, pos: Pos, what: &str| {
            c.err(pos, format!("`resources.{key}` of {whose} must be {what}, found {}", v.describe()));
        };
        match key {
            "cpus" => match v.to_raw() {
                Raw::Int(i) if (1..=4096).contains(&i) => r.cpus = Some(i as u32),
                _ => bad(c, v.pos, "a whole number of CPUs from 1 to 4096"),
            },
            "mem" => match scalar(v) {
                Some(s) if slurm_mem(&s) => r.mem = Some(s),
                _ => bad(c, v.pos, "memory as Slurm reads it: MiB as a number, or a number with K, M, G or T (`16G`)"),
            },
            "time" => match scalar(v) {
                Some(s) if slurm_time(&s) => r.time = Some(s),
                _ => bad(
                    c,
                    v.pos,
                    "a time limit as Slurm reads it: minutes, `MM:SS`, `HH:MM:SS` or `D-HH:MM:SS` (quote it: `\"1:30:00\"`)",
                ),
            },
            "gpus" => match scalar(v) {
                Some(s)
                    if match s.rsplit_once(':') {
                        // A GPU type is a word: a newline or a quote would
                        // write lines of its own into the batch script.
                        Some((ty, n)) => slurm_word(ty) && digits(n),
                        None => digits(&s),
                    } =>
                {
                    r.gpus = Some(s)
                }
                _ => bad(c, v.pos, "a number of GPUs, or `type:count`"),
            },
            "checkpoint_every" => match scalar(v).as_deref().and_then(crate::engine::checkpoint::Every::parse) {
                Some(e) => r.checkpoint_every = Some(e),
                None => bad(c, v.pos, "a positive duration (`10m`, `90s`, seconds as a number) or `N steps`"),
            },
            "max_requeues" => match v.to_raw() {
                Raw::Int(i) if (0..=1000).contains(&i) => r.max_requeues = Some(i as u32),
                _ => bad(c, v.pos, "a whole number of resubmissions from 0 to 1000"),
            },
            other => c.err(
                k.pos,
                format!(
                    "unknown resource `{other}` in {whose}; expected one of: {}{}",
                    KEYS.join(", "),
                    suggest(other, KEYS)
                ),
            ),
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_formats() {
        for ok in ["10", "10:00", "1:30:00", "2-0", "2-12:00", "2-12:00:00"] {
            assert!(slurm_time(ok), "{ok}");
        }
        for bad in ["", "0", "1h", "1:2:3:4", "x-1", "-1", "1:"] {
            assert!(!slurm_time(bad), "{bad}");
        }
        for ok in ["512", "16G", "500M", "2T"] {
            assert!(slurm_mem(ok), "{ok}");
        }
        for bad in ["", "G", "0", "16GB", "1.5G"] {
            assert!(!slurm_mem(bad), "{bad}");
        }
    }

    #[test]
    fn stage_fields_override_the_pipeline_defaults_field_by_field() {
        let pipeline = Resources { time: Some("10".into()), mem: Some("1G".into()), ..Default::default() };
        let stage = Resources { time: Some("60".into()), cpus: Some(4), ..Default::default() };
        let r = stage.or(&pipeline);
        assert_eq!(r.sbatch_flags(), vec!["--cpus-per-task=4", "--mem=1G", "--time=60"]);
    }
}
