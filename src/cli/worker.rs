//! `scoreflow worker`: compute one job, as a Slurm job does.

use super::prelude::*;

/// `scoreflow worker`: compute one job, as a Slurm job does. Its output is the
/// job's log: progress lines ([`crate::engine::slurm::PROGRESS_PREFIX`]) and
/// how the stage ended.
pub(super) fn run(artifacts: &Option<PathBuf>, args: &WorkerArgs) -> Result<ExitCode, Error> {
    let WorkerArgs { job: job_file, result, device } = args;
    use crate::engine::worker::{self, Job, Memo};
    let Some(root) = artifacts else {
        return Err(Error::BadInput("worker needs --artifacts DIR (the coordinator's cache)".into()));
    };
    let text = std::fs::read(job_file).map_err(|e| Error::BadInput(format!("{}: {e}", job_file.display())))?;
    let job = serde_json::from_slice(&text)
        .ok()
        .and_then(|v| Job::from_json(&v))
        .ok_or_else(|| Error::BadInput(format!("{}: not a scoreflow job description", job_file.display())))?;
    let imp =
        job.implementation(crate::registry()).map_err(|e| Error::BadInput(format!("{}: {e}", job_file.display())))?;
    // As many threads as the scheduler gave the job's task.
    if let Some(n) = std::env::var("SLURM_CPUS_PER_TASK").ok().and_then(|n| n.parse::<usize>().ok()) {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global();
    }
    let cache = Cache::new(root.clone());
    let _lease = cache.lease()?;
    println!(
        "scoreflow worker: stage {} of {} on {}, key {}",
        job.stage,
        job.pipeline,
        crate::engine::cache::host(),
        job.key().short()
    );
    // A stop signal (Slurm's warning before the time limit, a preemption's
    // SIGTERM): a stage that checkpoints saves and returns, and this
    // process reports it below; any other stage is stopped at once.
    crate::engine::checkpoint::install_signals(std::time::Duration::from_secs(60), move |sig| {
        if !crate::engine::checkpoint::used() {
            eprintln!("scoreflow worker: stopped by signal {sig}; nothing was cached");
            std::process::exit(crate::engine::checkpoint::exit_status(sig).into());
        }
    });
    let progress = executor::per_percent(|fraction| println!("{}{fraction:.3}", crate::engine::slurm::PROGRESS_PREFIX));
    let backend = crate::engine::stage::Backend::parse(device).expect("clap checked the value");
    let outcome = worker::execute(&job, imp, &cache, &Memo::default(), backend, &progress);
    match &outcome {
        Ok(d) if d.fresh => println!("scoreflow worker: already computed (another process finished it)"),
        Ok(d) => println!("scoreflow worker: done in {:.3}s", (d.finished_ms - d.started_ms) as f64 / 1000.0),
        Err(worker::WorkError::Failed { error, .. }) => {
            eprintln!("scoreflow worker: stage {} failed: {error}", job.stage)
        }
        Err(worker::WorkError::InputCorrupt { input }) => {
            eprintln!("scoreflow worker: input `{input}` is corrupt or missing; removed it")
        }
        Err(e @ worker::WorkError::Interrupted { .. }) => println!("scoreflow worker: {e}"),
    }
    let bytes = serde_json::to_vec(&worker::outcome_to_json(&outcome)).expect("json");
    cache.write_atomic(result, &bytes)?;
    Ok(match outcome {
        Ok(_) => ExitCode::SUCCESS,
        Err(worker::WorkError::Interrupted { .. }) => ExitCode::from(EXIT_CHECKPOINTED),
        Err(_) => ExitCode::from(EXIT_FAILURE),
    })
}
