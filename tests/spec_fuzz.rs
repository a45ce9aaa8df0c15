//! Spec mutations: every shipped pipeline, edited at random by a few
//! hostile edits each (extreme numbers, deleted spans, YAML syntax dropped in
//! — anchors, aliases, merge keys, brackets, tabs, tags, documents —, lines
//! duplicated or swapped), and validated as `check` does. Over 5 000 cases,
//! deterministically seeded:
//!
//! * nothing panics (a panic hook counts every panic, caught or not);
//! * no case takes 10 s (a watchdog aborts the process if one does);
//! * no single allocation reaches 1 GiB, and live memory never does (a
//!   counting allocator wraps the system's).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SNIPPETS: &[&str] = &[
    "&a ",
    "*a",
    "<<: *a",
    "[",
    "]",
    "{",
    "}",
    ": ",
    "\t",
    "- ",
    "\"",
    "'",
    "\n  x: 1",
    "~",
    "!!binary ",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "\n    inputs: { data: { file: /dev/zero } }",
    "\n    inputs: { data: { file: ../../../../etc/passwd, allow_outside: true } }",
    "\nmatrix:\n  seed: [1, 2, 3]\n",
    "\n    resources: { gpus: \"a100\\ntouch PWNED\" }",
    "é",
    "\u{0}",
    "#",
    "? ",
    "|\n",
    ">-\n",
];

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1e308",
    "-1e308",
    "18446744073709551615",
    "9223372036854775808",
    "1000000000000",
    "65536",
    "1e6",
    ".nan",
    ".inf",
    "-.inf",
    "0.0000001",
    "\"1\"",
];

/// One edit: (operation, where as a fraction of the text, which payload).
type Edit = (u8, f64, usize);

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut t = text.to_string();
    for &(op, at, which) in edits {
        let chars: Vec<char> = t.chars().collect();
        let i = ((chars.len() as f64) * at) as usize;
        let i = i.min(chars.len());
        let head: String = chars[..i].iter().collect();
        let tail: String = chars[i..].iter().collect();
        t = match op % 5 {
            // An extreme number in place of the next number.
            0 => {
                let start = tail.find(|c: char| c.is_ascii_digit());
                match start {
                    Some(s) => {
                        let end = tail[s..]
                            .find(|c: char| !c.is_ascii_digit() && c != '.' && c != 'e')
                            .map_or(tail.len(), |e| s + e);
                        format!("{head}{}{}{}", &tail[..s], NUMBERS[which % NUMBERS.len()], &tail[end..])
                    }
                    None => t,
                }
            }
            // A span deleted.
            1 => tail.chars().skip(which % 40).collect::<String>().pipe(|rest| format!("{head}{rest}")),
            // YAML (or a hostile value) dropped in.
            2 => format!("{head}{}{tail}", SNIPPETS[which % SNIPPETS.len()]),
            // A line duplicated.
            3 => {
                let lines: Vec<&str> = t.lines().collect();
                let k = (lines.len() as f64 * at) as usize % lines.len().max(1);
                let mut out: Vec<&str> = lines.clone();
                if let Some(l) = lines.get(k) {
                    out.insert(k, l);
                }
                out.join("\n")
            }
            // Two lines swapped.
            _ => {
                let mut lines: Vec<&str> = t.lines().collect();
                if lines.len() > 1 {
                    let a = (lines.len() as f64 * at) as usize % lines.len();
                    let b = which % lines.len();
                    lines.swap(a, b);
                }
                lines.join("\n")
            }
        };
    }
    t
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

#[test]
fn five_thousand_mutated_specs_never_panic_hang_or_allocate_a_gibibyte() {
    let panics = common::panics();
    let pipelines: Vec<(PathBuf, String)> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(scoreflow::checkout("pipelines"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        v.sort();
        v.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
    };
    assert!(pipelines.len() >= 5);

    // The watchdog: a case that runs 10 s is a hang.
    let started = std::sync::Arc::new(AtomicU64::new(u64::MAX));
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let clock = Instant::now();
    {
        let (started, done) = (started.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let s = started.load(Ordering::SeqCst);
                if s != u64::MAX && clock.elapsed().as_millis() as u64 > s + 10_000 {
                    eprintln!("a spec case ran past 10 s: a hang");
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
    }

    let config = Config { cases: 5000, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = (0..pipelines.len(), proptest::collection::vec((any::<u8>(), 0.0..1.0f64, any::<usize>()), 1..5));
    let base_peak = LIVE.load(Ordering::Relaxed);
    let (cases, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let result = runner.run(&strategy, |(which, edits)| {
        let (path, text) = &pipelines[which];
        let mutated = apply(text, &edits);
        started.store(clock.elapsed().as_millis() as u64, Ordering::SeqCst);
        let outcome =
            std::panic::catch_unwind(|| scoreflow::engine::spec::validate(path, &mutated, scoreflow::registry()));
        started.store(u64::MAX, Ordering::SeqCst);
        prop_assert!(outcome.is_ok(), "validate panicked on a mutation of {}:\n{mutated}", path.display());
        cases.fetch_add(1, Ordering::Relaxed);
        refused.fetch_add(outcome.unwrap().is_err() as usize, Ordering::Relaxed);
        Ok(())
    });
    done.store(true, Ordering::SeqCst);
    result.unwrap();
    let (cases, refused) = (cases.into_inner(), refused.into_inner());
    assert_eq!(cases, 5000);
    eprintln!("{cases} mutated specs, {refused} refused");
    assert_eq!(panics.load(Ordering::SeqCst), 0, "panics over {cases} specs");
    let gib = 1usize << 30;
    assert!(LARGEST.load(Ordering::Relaxed) < gib, "an allocation of {} bytes", LARGEST.load(Ordering::Relaxed));
    assert!(PEAK.load(Ordering::Relaxed) < base_peak + gib, "live memory peaked at {}", PEAK.load(Ordering::Relaxed));
    // The mutations are hostile enough that most specs are refused, and mild
    // enough that some still pass.
    assert!(refused > cases / 4 && refused < cases, "{refused} of {cases} refused");
}
