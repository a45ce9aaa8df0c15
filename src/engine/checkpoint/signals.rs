//! Stopping on a signal: SIGINT, SIGTERM and Slurm's warning signal SIGUSR1
//! ask the running checkpointing stages to save and return; the process
//! exits once they have.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The signal that asked this process to stop (0: none).
static STOP: AtomicI32 = AtomicI32::new(0);
/// How many stop signals arrived (a second Ctrl-C does not wait).
static STOPS: AtomicU32 = AtomicU32::new(0);
/// Jobs of checkpointing stages now running in this process.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Whether any stage in this process has used its checkpoints.
static USED: AtomicBool = AtomicBool::new(false);

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
pub(super) struct ActiveJob(());

impl ActiveJob {
    pub(super) fn start() -> ActiveJob {
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
