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
//!   "SFCKPT1\n" ‖ u32 LE header length ‖ header (JSON: key, step, total,
//!   written_ms, state length, blake3 of the state) ‖ state bytes
//! ```
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
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::engine::cache::{Cache, CacheError, now_ms};
use crate::engine::hash::Hash;
use crate::engine::stage::StageError;

const MAGIC: &[u8; 8] = b"SFCKPT1\n";

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
            return (secs.is_finite() && secs > 0.0).then(|| Every::Time(Duration::from_secs_f64(secs)));
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
    Duration::from_millis((ms + unit / 2) / unit * unit)
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
    #[error("its header does not parse ({0})")]
    Header(String),
    #[error("it was written for stage key {found}, not {wanted}")]
    OtherKey { found: String, wanted: String },
    #[error("truncated: {found} of {wanted} state bytes")]
    Truncated { found: u64, wanted: u64 },
    #[error("its state does not match its hash")]
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
        let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + head.len() + state.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(head.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&head);
        bytes.extend_from_slice(state);
        self.write_atomic(&self.checkpoint_path(key), &bytes)?;
        Ok(header)
    }

    /// The checkpoint of `key`: `Ok(None)` when there is none, an error when
    /// the file is there and cannot be trusted.
    pub fn read_checkpoint(&self, key: &Hash) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = self.checkpoint_path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::Io { action: "read", path, source: e }.into()),
        };
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

    pub fn remove_checkpoint(&self, key: &Hash) {
        let _ = std::fs::remove_file(self.checkpoint_path(key));
    }

    /// Every checkpoint file in the cache, with the key its name states.
    pub fn checkpoint_files(&self) -> Result<Vec<(PathBuf, Option<Hash>)>, CacheError> {
        let mut out = Vec::new();
        for shard in crate::engine::cache::read_dir(&self.root.join("checkpoints"))? {
            for file in crate::engine::cache::read_dir(&shard)? {
                let key = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".ckpt"))
                    .and_then(|n| n.parse::<Hash>().ok());
                out.push((file, key));
            }
        }
        Ok(out)
    }
}

/// A checkpoint file's bytes, verified against the hash its header states.
pub fn parse(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or(CheckpointError::NotACheckpoint)?;
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

// ---------------------------------------------------------------------------
// Stopping on a signal.

/// The signal that asked this process to stop (0: none).
static STOP: AtomicI32 = AtomicI32::new(0);
/// How many stop signals arrived (a second Ctrl-C does not wait).
static STOPS: AtomicU32 = AtomicU32::new(0);
/// Jobs of checkpointing stages now running in this process.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Whether any stage in this process has used its checkpoints.
static USED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a stage of this process has used its checkpoints (it then saves
/// and returns on a stop signal, and its caller exits).
pub fn used() -> bool {
    USED.load(Ordering::SeqCst)
}

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomics: async-signal-safe.
    STOP.store(sig, Ordering::SeqCst);
    STOPS.fetch_add(1, Ordering::SeqCst);
}

/// Catch SIGINT, SIGTERM and SIGUSR1 (Slurm's warning before the time limit,
/// `--signal=B:USR1@…`): each asks the running checkpointing stages to save
/// and stop. `then(signal)` runs on a watcher thread once they have (or at
/// once when none runs, or after `grace`, or on a second signal); it is the
/// caller's to exit. A SIGUSR1 with no checkpointing stage running is
/// ignored: the job goes on until the scheduler ends it.
pub fn install_signals(grace: Duration, then: impl Fn(i32) + Send + 'static) {
    // SAFETY: the handler only stores to atomics.
    unsafe {
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
            libc::signal(s, on_signal as *const () as libc::sighandler_t);
        }
    }
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let sig = STOP.load(Ordering::SeqCst);
            if sig == 0 {
                continue;
            }
            if sig == libc::SIGUSR1 && ACTIVE.load(Ordering::SeqCst) == 0 {
                STOP.store(0, Ordering::SeqCst);
                continue;
            }
            let asked = Instant::now();
            while ACTIVE.load(Ordering::SeqCst) > 0 && asked.elapsed() < grace && STOPS.load(Ordering::SeqCst) < 2 {
                std::thread::sleep(Duration::from_millis(20));
            }
            then(sig);
            return;
        }
    });
}

/// Whether this process was asked to stop (the signal's number).
pub fn stop_requested() -> Option<i32> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The exit status of a process stopped by `sig` (128 + its number).
pub fn exit_status(sig: i32) -> u8 {
    (128 + sig).clamp(0, 255) as u8
}

/// Counts one running job that checkpoints for as long as it lives.
struct ActiveJob(());

impl ActiveJob {
    fn start() -> ActiveJob {
        USED.store(true, Ordering::SeqCst);
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        ActiveJob(())
    }
}

impl Drop for ActiveJob {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

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
    /// Warnings for the run's output (a bad checkpoint discarded).
    pub warnings: Vec<String>,
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
            warnings: Vec::new(),
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
            warnings,
            active: Mutex::new(None),
        }
    }

    /// The state to resume from, once (the stage calls it before its first step).
    pub fn resume(&self) -> Option<Checkpoint> {
        self.in_use();
        let ck = self.resume.lock().expect("not poisoned").take()?;
        let mut resumes = ck.header.resumes.clone();
        resumes.push(Resume { step: ck.header.step, at_ms: now_ms() });
        *self.resumes.lock().expect("not poisoned") = resumes;
        *self.work_before.lock().expect("not poisoned") = ck.header.work.unwrap_or((ck.header.step, 0));
        Some(ck)
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

    /// Decode the state to resume from with `decode`; a state that does not
    /// decode (it verified, so this is a bug in the stage's encoding) is
    /// reported and the stage starts over.
    pub fn resume_with<T>(&self, decode: impl FnOnce(&[u8]) -> Option<T>) -> Option<(u64, T)> {
        let ck = self.resume()?;
        match decode(&ck.state) {
            Some(t) => Some((ck.header.step, t)),
            None => {
                eprintln!("warning: a checkpoint's state does not decode; the stage starts over");
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
        let mut state = self.resume_with(decode::<S>).map(|(_, s)| s).filter(|s| done(s) <= n).unwrap_or_default();
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
            Every::Steps(n) => step > 0 && step.is_multiple_of(n),
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
        if let Some(sig) = stop_requested() {
            return Err(StageError::Interrupted { step, total, signal: sig });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse() {
        assert_eq!(Every::parse("500 steps"), Some(Every::Steps(500)));
        assert_eq!(Every::parse("1step"), Some(Every::Steps(1)));
        assert_eq!(Every::parse("5m"), Some(Every::Time(Duration::from_secs(300))));
        assert_eq!(Every::parse("0.5"), Some(Every::Time(Duration::from_millis(500))));
        assert_eq!(Every::parse("0 steps"), None);
        assert_eq!(Every::parse("soon"), None);
        assert_eq!(thousands(41000), "41 000");
        assert_eq!(thousands(100), "100");
    }

    /// A checkpoint reads back as written; any flipped or missing byte is
    /// caught before its state is used.
    #[test]
    fn checkpoints_verify() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let key = Hash([4; 32]);
        let state: Vec<u8> = (0..1000u32).flat_map(|i| i.to_le_bytes()).collect();
        cache.write_checkpoint(&key, (41, 100), (&[], None), &state).unwrap();
        let back = cache.read_checkpoint(&key).unwrap().unwrap();
        assert_eq!((back.header.step, back.header.total, back.state), (41, 100, state));
        let path = cache.checkpoint_path(&key);
        let good = std::fs::read(&path).unwrap();
        for cut in [3, 10, good.len() / 2, good.len() - 1] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(cache.read_checkpoint(&key).is_err(), "cut at {cut}");
        }
        for at in [2, 20, good.len() - 5] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert!(cache.read_checkpoint(&key).is_err(), "flip at {at}");
        }
        std::fs::write(&path, &good).unwrap();
        assert!(matches!(cache.read_checkpoint(&Hash([5; 32])), Ok(None)));
        // A file in another key's place is not that key's state.
        std::fs::create_dir_all(cache.checkpoint_path(&Hash([5; 32])).parent().unwrap()).unwrap();
        std::fs::write(cache.checkpoint_path(&Hash([5; 32])), &good).unwrap();
        assert!(matches!(cache.read_checkpoint(&Hash([5; 32])), Err(CheckpointError::OtherKey { .. })));
        let ck = Checkpointing::for_key(&cache, Hash([5; 32]), DEFAULT_EVERY, true);
        assert_eq!(ck.warnings.len(), 1, "{:?}", ck.warnings);
        assert!(ck.resume().is_none());
        assert!(!cache.checkpoint_path(&Hash([5; 32])).exists());
    }

    /// Each resume is carried in the checkpoints after it, so the run that
    /// finishes knows every stop on the way; a header from before the
    /// history was kept reads as one without resumes.
    #[test]
    fn checkpoints_carry_the_resumes_that_led_to_them() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let key = Hash([6; 32]);
        let earlier = Resume { step: 10, at_ms: 1 };
        let pace = Some((0, 40 * 60_000));
        cache.write_checkpoint(&key, (40, 100), (std::slice::from_ref(&earlier), pace), b"state").unwrap();
        let ck = Checkpointing::for_key(&cache, key, Every::Steps(10), true);
        assert!(ck.resumes().is_empty(), "nothing resumed before the stage asks");
        assert_eq!(ck.resume().map(|c| c.state), Some(b"state".to_vec()));
        let resumes = ck.resumes();
        assert_eq!((resumes.len(), &resumes[0], resumes[1].step), (2, &earlier, 40));
        assert_eq!(ck.resumed_from(), Some(40));
        ck.at_boundary(40, 100, || unreachable!("the resumed step is not saved again")).unwrap();
        ck.at_boundary(50, 100, || b"later".to_vec()).unwrap();
        let back = cache.read_checkpoint(&key).unwrap().unwrap();
        assert_eq!((back.header.step, &back.header.resumes), (50, &resumes));
        // 40 minutes for the first 40 steps (and a moment for ten more): 50 steps left take 40.
        assert_eq!(back.header.work.map(|w| (w.0, w.1 / 1000)), Some((0, 2400)));
        let said = back.header.describe();
        assert!(said.ends_with("; resumed 2 times before; about 40m of work left at the pace so far)"), "{said}");
        // The header as written before resumes were kept.
        let old = format!(
            r#"{{"key":"{}","step":3,"total":9,"written_ms":5,"state_bytes":2,"state_hash":"{}"}}"#,
            key.hex(),
            blake3::hash(b"ab").to_hex()
        );
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(old.len() as u32).to_le_bytes());
        bytes.extend_from_slice(old.as_bytes());
        bytes.extend_from_slice(b"ab");
        let back = parse(&bytes).unwrap();
        assert_eq!((back.header.step, back.header.resumes.len(), back.state), (3, 0, b"ab".to_vec()));
        assert_eq!((back.header.work, back.header.left_ms()), (None, None));
        // Resumed, it times its pace from its own step on.
        std::fs::write(cache.checkpoint_path(&key), &bytes).unwrap();
        let ck = Checkpointing::for_key(&cache, key, Every::Steps(1), true);
        assert!(ck.resume().is_some());
        ck.at_boundary(4, 9, || b"cd".to_vec()).unwrap();
        let back = cache.read_checkpoint(&key).unwrap().unwrap();
        assert_eq!((back.header.resumes.len(), back.header.work.map(|w| w.0)), (1, Some(3)));
    }
}
