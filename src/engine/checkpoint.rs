//! Checkpoints: a long stage that is killed resumes where it was, and gives
//! the bytes an uninterrupted run gives.
//!
//! A stage opts in ([`crate::engine::stage::Stage::checkpoints`]) and, in its
//! loop, asks its context's [`Checkpointing`] at each boundary (a training
//! step, a chunk of particles, an MCMC sweep) whether a checkpoint is due;
//! when it is, it hands over an encoding of *everything* that determines the
//! rest of the computation — weights, optimiser moments, EMA, buffers, the
//! positions of its random streams, the rows of its output tables so far. On
//! the next run of the same key, the stage gets that state back before its
//! first step and continues from it. Because each random stream is seekable
//! (its position is in the state) and parallel reductions are summed in a
//! fixed order, the resumed run computes exactly what the uninterrupted one
//! would have: the output content hashes are equal, so the key still means
//! what it says.
//!
//! ```text
//! artifacts/checkpoints/<2 hex>/<stage key>.ckpt
//!   "SFCKPT2\n" ‖ u32 LE header length ‖ header (JSON: key, step, total,
//!   written_ms, state length, blake3 of the state, resumes, pace) ‖ state
//!   bytes ‖ blake3 of everything before it (32 bytes)
//! ```
//!
//! The trailing hash covers the header too: a flipped digit in `step` would
//! otherwise resume step 41's state as step 45's. A file of the first format
//! (`SFCKPT1`, the state's hash only) still resumes, so that a run stopped by
//! the build before this one is not lost; every checkpoint written now is of
//! the second.
//!
//! A checkpoint is keyed like the result it leads to: another implementation
//! version, other params, another seed or other inputs give another key, so
//! their checkpoints are never used. It is written atomically like every
//! cache file (a file under `tmp/`, then a rename), is never served as a
//! result, and is removed once the stage's record is written. One that does
//! not verify — truncated, a flipped byte, another key's — is discarded with
//! a warning and the stage starts over: it never resumes from bad state.
//!
//! When: every `checkpoint_every` of work (a duration, default 5 minutes, or
//! a number of the stage's steps; `resources: { checkpoint_every: … }` or
//! `scoreflow run --checkpoint-every`), and at once when the process is told
//! to stop (SIGTERM, SIGINT, or Slurm's warning signal SIGUSR1, see
//! [`install_signals`]): the stage saves at its next boundary and returns
//! [`StageError::Interrupted`], the run records it as interrupted, and the
//! next run — or the Slurm coordinator's resubmission — resumes. `kill -9`
//! loses at most one interval.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::cache::{Cache, CacheError, now_ms};
use crate::engine::hash::Hash;
use crate::engine::stage::StageError;

const MAGIC: &[u8; 8] = b"SFCKPT2\n";
/// The first format, read only: no hash over the header.
const MAGIC_V1: &[u8; 8] = b"SFCKPT1\n";

/// The default interval: about five minutes of work.
pub const DEFAULT_EVERY: Every = Every::Time(Duration::from_secs(300));

/// How often a stage checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// After this much wall-clock time since the last checkpoint (or the start).
    Time(Duration),
    /// At every multiple of this many of the stage's steps.
    Steps(u64),
}

impl Every {
    /// `30s`, `5m`, `1h`, `90` (seconds), or `500 steps`.
    pub fn parse(s: &str) -> Option<Every> {
        let s = s.trim();
        if let Some(n) = s.strip_suffix("steps").or_else(|| s.strip_suffix("step")) {
            return n.trim().parse::<u64>().ok().filter(|n| *n > 0).map(Every::Steps);
        }
        if let Ok(secs) = s.parse::<f64>() {
            // `try_`: a number of seconds too large for a duration is no interval.
            return Duration::try_from_secs_f64(secs).ok().filter(|d| !d.is_zero()).map(Every::Time);
        }
        humantime::parse_duration(s).ok().filter(|d| !d.is_zero()).map(Every::Time)
    }

    pub fn describe(&self) -> String {
        match self {
            Every::Time(d) => humantime::format_duration(*d).to_string(),
            Every::Steps(n) => format!("{n} steps"),
        }
    }
}

/// What a checkpoint file says of itself (its header).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    /// The stage key it leads to (hex).
    pub key: String,
    /// The stage's step the state is at (the next step to compute).
    pub step: u64,
    /// The steps the stage has in all.
    pub total: u64,
    pub written_ms: u64,
    pub state_bytes: u64,
    /// blake3 of the state (hex).
    pub state_hash: String,
    /// The runs that continued from an earlier checkpoint on the way to this
    /// state, oldest first (how many times the stage was stopped and resumed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumes: Vec<Resume>,
    /// The pace so far: `work.1` ms of wall-clock time, across the runs that
    /// led here, took the stage from step `work.0` to `step` (`work.0` is 0,
    /// or the step of a resumed checkpoint that did not say). `None` in a
    /// checkpoint written before the pace was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<(u64, u64)>,
}

/// One run that continued a stage from its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resume {
    /// The step it continued from.
    pub step: u64,
    /// When (ms since the epoch).
    pub at_ms: u64,
}

impl Header {
    /// `step 41 000 of 100 000 (checkpoint 3m old)`, with `; resumed 2
    /// times before` when it was reached through resumes and `; about 2h 10m
    /// of work left at the pace so far` when its pace is known.
    pub fn describe(&self) -> String {
        let age = Duration::from_millis(now_ms().saturating_sub(self.written_ms) / 1000 * 1000);
        let age =
            if age.is_zero() { "just now".to_string() } else { format!("{} old", humantime::format_duration(age)) };
        let before = match self.resumes.len() {
            0 => String::new(),
            1 => "; resumed once before".to_string(),
            n => format!("; resumed {n} times before"),
        };
        let left = match self.left_ms() {
            Some(ms) => format!("; about {} of work left at the pace so far", humantime::format_duration(rounded(ms))),
            None => String::new(),
        };
        format!("step {} of {} (checkpoint {age}{before}{left})", thousands(self.step), thousands(self.total))
    }

    /// Where a stage resumes, for `status --json` and the run's `started`
    /// event: `step`, `total`, `written_ms`, `resumes` and `left_ms` (the
    /// file's own fields, the key and the state's hash, stay out).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "step": self.step, "total": self.total, "written_ms": self.written_ms,
            "resumes": self.resumes, "left_ms": self.left_ms(),
        })
    }

    /// The wall-clock time the remaining steps take at the pace so far
    /// (`None` before a step was timed).
    pub fn left_ms(&self) -> Option<u64> {
        let (from, ms) = self.work?;
        let done = self.step.checked_sub(from).filter(|d| *d > 0)?;
        let left = self.total.checked_sub(self.step).filter(|l| *l > 0)?;
        Some((ms as f64 * left as f64 / done as f64).round() as u64)
    }
}

/// `ms` to the minute above an hour, to the second below.
fn rounded(ms: u64) -> Duration {
    let unit = if ms >= 3_600_000 { 60_000 } else { 1000 };
    Duration::from_millis(ms.saturating_add(unit / 2) / unit * unit)
}

/// `41 000`: a count with its thousands apart.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A checkpoint read back and verified.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub header: Header,
    pub state: Vec<u8>,
}

/// Why a checkpoint file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a scoreflow checkpoint")]
    NotACheckpoint,
    #[error("not a file")]
    NotAFile,
    #[error("its header does not parse ({0})")]
    Header(String),
    #[error("it was written for stage key {found}, not {wanted}")]
    OtherKey { found: String, wanted: String },
    #[error("truncated: {found} of {wanted} state bytes")]
    Truncated { found: u64, wanted: u64 },
    #[error("its bytes do not match their hash")]
    HashMismatch,
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl Cache {
    /// Where the checkpoint of stage key `key` lives.
    pub fn checkpoint_path(&self, key: &Hash) -> PathBuf {
        let hex = key.hex();
        self.root.join("checkpoints").join(&hex[..2]).join(format!("{hex}.ckpt"))
    }

    /// Write `state` as the checkpoint of `key` at `step` of `total`, reached
    /// through `resumes` at the pace `work` (see [`Header::work`]), atomically.
    pub fn write_checkpoint(
        &self,
        key: &Hash,
        (step, total): (u64, u64),
        (resumes, work): (&[Resume], Option<(u64, u64)>),
        state: &[u8],
    ) -> Result<Header, CacheError> {
        let header = Header {
            key: key.hex(),
            step,
            total,
            written_ms: now_ms(),
            state_bytes: state.len() as u64,
            state_hash: blake3::hash(state).to_hex().to_string(),
            resumes: resumes.to_vec(),
            work,
        };
        let head = serde_json::to_vec(&header)
            .map_err(|e| CacheError::Encode { what: "checkpoint".into(), why: e.to_string() })?;
        let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + head.len() + state.len() + 32);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(head.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&head);
        bytes.extend_from_slice(state);
        let whole = blake3::hash(&bytes);
        bytes.extend_from_slice(whole.as_bytes());
        self.write_atomic(&self.checkpoint_path(key), &bytes)?;
        Ok(header)
    }

    /// The checkpoint of `key`: `Ok(None)` when there is none, an error when
    /// the file is there and cannot be trusted.
    pub fn read_checkpoint(&self, key: &Hash) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = self.checkpoint_path(key);
        // Only a plain file is read: a directory, a FIFO or a link (to
        // /dev/zero, say) in its place is reported, never followed.
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(CheckpointError::NotAFile),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::Io { action: "read", path, source: e }.into()),
        }
        let bytes = std::fs::read(&path).map_err(|e| CacheError::Io { action: "read", path, source: e })?;
        let ck = parse(&bytes)?;
        if ck.header.key != key.hex() {
            return Err(CheckpointError::OtherKey { found: ck.header.key, wanted: key.hex() });
        }
        Ok(Some(ck))
    }

    /// Only the header of `key`'s checkpoint, when it verifies (for `status`).
    pub fn checkpoint_header(&self, key: &Hash) -> Option<Header> {
        self.read_checkpoint(key).ok().flatten().map(|c| c.header)
    }

    /// Remove `key`'s checkpoint — or whatever is in its place, a directory
    /// included (a link is removed, never what it points to).
    pub fn remove_checkpoint(&self, key: &Hash) {
        let _ = crate::engine::cache::remove_entry(&self.checkpoint_path(key));
    }

    /// Every checkpoint file in the cache, with the key its name states.
    pub fn checkpoint_files(&self) -> Result<Vec<(PathBuf, Option<Hash>)>, CacheError> {
        Ok(crate::engine::cache::sharded(&self.root.join("checkpoints"))?
            .into_iter()
            .map(|file| {
                let key = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".ckpt"))
                    .and_then(|n| n.parse::<Hash>().ok());
                (file, key)
            })
            .collect())
    }
}

/// A checkpoint file's bytes, verified against their hash (the first
/// format's: the state's, which its header states).
pub fn parse(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let rest = if let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) {
        let (body, whole) = bytes.split_last_chunk::<32>().ok_or(CheckpointError::NotACheckpoint)?;
        if body.len() < MAGIC.len() || blake3::hash(body).as_bytes() != whole {
            return Err(CheckpointError::HashMismatch);
        }
        &rest[..rest.len() - 32]
    } else {
        bytes.strip_prefix(MAGIC_V1.as_slice()).ok_or(CheckpointError::NotACheckpoint)?
    };
    let (len, rest) = rest.split_first_chunk::<4>().ok_or(CheckpointError::NotACheckpoint)?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(CheckpointError::Header("cut short".into()));
    }
    let header: Header = serde_json::from_slice(&rest[..len]).map_err(|e| CheckpointError::Header(e.to_string()))?;
    let state = &rest[len..];
    if state.len() as u64 != header.state_bytes {
        return Err(CheckpointError::Truncated { found: state.len() as u64, wanted: header.state_bytes });
    }
    if blake3::hash(state).to_hex().as_str() != header.state_hash {
        return Err(CheckpointError::HashMismatch);
    }
    Ok(Checkpoint { header, state: state.to_vec() })
}

/// A stage's state as bytes (CBOR, through serde).
pub fn encode<T: serde::Serialize>(state: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(state, &mut out).expect("encoding into memory does not fail");
    out
}

/// A stage's state from [`encode`]'s bytes; `None` when they are not one.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    ciborium::from_reader(bytes).ok()
}

mod signals;
use signals::ActiveJob;
pub use signals::{exit_status, install_signals, stop_requested, used};

// ---------------------------------------------------------------------------
// The stage's side.

/// A stage's handle on its checkpoints (in its [`crate::engine::stage::StageCtx`]).
pub struct Checkpointing<'a> {
    at: Option<(&'a Cache, Hash)>,
    every: Every,
    resume: Mutex<Option<Checkpoint>>,
    /// The resumes that led here, this run's last (its step needs no second save).
    resumes: Mutex<Vec<Resume>>,
    /// The pace before this run: from which step, in how many ms (see [`Header::work`]).
    work_before: Mutex<(u64, u64)>,
    /// When this run's work began.
    began: Instant,
    last: Mutex<Instant>,
    /// The step of the last checkpoint saved or resumed (for `N steps`).
    last_step: Mutex<u64>,
    /// Warnings for the run's output (a bad checkpoint discarded).
    warnings: Mutex<Vec<String>>,
    /// Held once the stage uses its checkpoints: a stop signal waits for it.
    active: Mutex<Option<ActiveJob>>,
}

impl<'a> Checkpointing<'a> {
    /// No checkpoints: nothing to resume, never due — for a stage that does
    /// not checkpoint, and for callers outside a run (unit tests, benches).
    /// `--no-resume` still saves: it is [`Checkpointing::for_key`] with
    /// `resume` false.
    pub fn none() -> Checkpointing<'static> {
        Checkpointing {
            at: None,
            every: DEFAULT_EVERY,
            resume: Mutex::new(None),
            resumes: Mutex::new(Vec::new()),
            work_before: Mutex::new((0, 0)),
            began: Instant::now(),
            last: Mutex::new(Instant::now()),
            last_step: Mutex::new(0),
            warnings: Mutex::new(Vec::new()),
            active: Mutex::new(None),
        }
    }

    /// Checkpoints of stage key `key` in `cache`, every `every`; the existing
    /// one is read and verified now (`resume`: else it is removed and the
    /// stage starts over). A bad one is removed with a warning.
    pub fn for_key(cache: &'a Cache, key: Hash, every: Every, resume: bool) -> Checkpointing<'a> {
        let mut warnings = Vec::new();
        let found = if resume {
            match cache.read_checkpoint(&key) {
                Ok(c) => c,
                Err(e) => {
                    warnings.push(format!(
                        "discarded the checkpoint {}: {e}; the stage starts over",
                        cache.rel(&cache.checkpoint_path(&key))
                    ));
                    cache.remove_checkpoint(&key);
                    None
                }
            }
        } else {
            cache.remove_checkpoint(&key);
            None
        };
        Checkpointing {
            at: Some((cache, key)),
            every,
            resume: Mutex::new(found),
            resumes: Mutex::new(Vec::new()),
            work_before: Mutex::new((0, 0)),
            began: Instant::now(),
            last: Mutex::new(Instant::now()),
            last_step: Mutex::new(0),
            warnings: Mutex::new(warnings),
            active: Mutex::new(None),
        }
    }

    /// The state to resume from, once (the stage calls it before its first
    /// step), counted as a resume; [`Checkpointing::resume_with`] decodes it
    /// first.
    pub fn resume(&self) -> Option<Checkpoint> {
        self.in_use();
        let ck = self.resume.lock().expect("not poisoned").take()?;
        self.resumed(&ck);
        Some(ck)
    }

    /// Count `ck` as this run's resume: the resumes and the pace it carries.
    fn resumed(&self, ck: &Checkpoint) {
        let mut resumes = ck.header.resumes.clone();
        resumes.push(Resume { step: ck.header.step, at_ms: now_ms() });
        *self.resumes.lock().expect("not poisoned") = resumes;
        *self.work_before.lock().expect("not poisoned") = ck.header.work.unwrap_or((ck.header.step, 0));
        *self.last_step.lock().expect("not poisoned") = ck.header.step;
    }

    /// The warnings of this stage's checkpoints (one discarded), for the run's output.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().expect("not poisoned").clone()
    }

    /// Count this job among those a stop signal waits for (from its first
    /// use of its checkpoints until it returns).
    fn in_use(&self) {
        if self.at.is_some() {
            self.active.lock().expect("not poisoned").get_or_insert_with(ActiveJob::start);
        }
    }

    /// The step the stage resumed from, if it did.
    pub fn resumed_from(&self) -> Option<u64> {
        self.resumes.lock().expect("not poisoned").last().map(|r| r.step)
    }

    /// Every resume on the way to this run's result, oldest first (empty when
    /// it ran from the start): the earlier runs' from the checkpoint, then
    /// this run's.
    pub fn resumes(&self) -> Vec<Resume> {
        self.resumes.lock().expect("not poisoned").clone()
    }

    /// Decode the state to resume from with `decode`, which also checks it
    /// fits the stage (its shapes and counts against the params). A state
    /// that does not is not resumed: the checkpoint is removed with a
    /// warning, the run counts no resume, and the stage starts over.
    pub fn resume_with<T>(&self, decode: impl FnOnce(&[u8]) -> Option<T>) -> Option<(u64, T)> {
        self.in_use();
        let ck = self.resume.lock().expect("not poisoned").take()?;
        match decode(&ck.state) {
            Some(t) => {
                self.resumed(&ck);
                Some((ck.header.step, t))
            }
            None => {
                if let Some((cache, key)) = self.at {
                    self.warnings.lock().expect("not poisoned").push(format!(
                        "discarded the checkpoint {}: its state does not fit the stage; the stage starts over",
                        cache.rel(&cache.checkpoint_path(&key))
                    ));
                    cache.remove_checkpoint(&key);
                }
                None
            }
        }
    }

    /// A loop over `n` items in fixed chunks of `size` (a chunk of particles),
    /// checkpointed between chunks with its state `S` — the finished items'
    /// results in order, `done(&state)` of them: the state a checkpoint holds
    /// (else `S::default()`), then `chunk(&mut state, range, progress)` on each
    /// next range, `progress` taking the chunk's fraction done. A resumed run
    /// adds the rest as an uninterrupted one would, given each item draws from
    /// its own stream. A state that claims more than `n` items is not this
    /// loop's: the loop starts over.
    pub fn in_chunks<S, F>(
        &self,
        (n, size): (usize, usize),
        progress: &(dyn Fn(f64) + Sync),
        done: impl Fn(&S) -> usize,
        mut chunk: F,
    ) -> Result<S, StageError>
    where
        S: serde::Serialize + serde::de::DeserializeOwned + Default,
        F: FnMut(&mut S, std::ops::Range<usize>, &(dyn Fn(f64) + Sync)) -> Result<(), StageError>,
    {
        let mut state =
            self.resume_with(|b| decode::<S>(b).filter(|s| done(s) <= n)).map(|(_, s)| s).unwrap_or_default();
        let mut i = done(&state);
        while i < n {
            self.at_boundary(i as u64, n as u64, || encode(&state))?;
            let end = (i + size.max(1)).min(n);
            let part = |f: f64| progress((i as f64 + f * (end - i) as f64) / n as f64);
            chunk(&mut state, i..end, &part)?;
            part(1.0);
            i = end;
        }
        Ok(state)
    }

    /// Whether to save at `step` (a boundary): the interval has passed, or
    /// the process was asked to stop.
    pub fn due(&self, step: u64) -> bool {
        if self.at.is_none() {
            return false;
        }
        if stop_requested().is_some() {
            return true;
        }
        if self.resumed_from() == Some(step) {
            return false;
        }
        match self.every {
            // Past the next multiple of `n` since the last save: a loop whose
            // boundaries step by more than one (chunks of 4096 particles)
            // still saves about every `n`.
            Every::Steps(n) => step / n.max(1) > *self.last_step.lock().expect("not poisoned") / n.max(1),
            Every::Time(d) => self.last.lock().expect("not poisoned").elapsed() >= d,
        }
    }

    /// At a boundary: when [`Checkpointing::due`], save `state()` as the
    /// checkpoint at `step` of `total`; when the process was asked to stop,
    /// then return [`StageError::Interrupted`] (the stage returns it).
    pub fn at_boundary(&self, step: u64, total: u64, state: impl FnOnce() -> Vec<u8>) -> Result<(), StageError> {
        self.in_use();
        if !self.due(step) {
            return Ok(());
        }
        let (cache, key) = self.at.expect("due only with a key");
        let resumes = self.resumes();
        let (from, before) = *self.work_before.lock().expect("not poisoned");
        let work = Some((from, before + self.began.elapsed().as_millis() as u64));
        cache
            .write_checkpoint(&key, (step, total), (&resumes, work), &state())
            .map_err(|e| StageError::Failed(format!("writing a checkpoint: {e}")))?;
        *self.last.lock().expect("not poisoned") = Instant::now();
        *self.last_step.lock().expect("not poisoned") = step;
        if let Some(sig) = stop_requested() {
            return Err(StageError::Interrupted { step, total, signal: sig });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
