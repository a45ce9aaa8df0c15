//! `scoreflow run`: Run a pipeline: reuse every fresh stage, run the rest, say why.

use super::prelude::*;

pub(super) fn run(cli: &Cli, overrides: &[spec::Override], args: &RunArgs) -> Result<ExitCode, Error> {
    let RunArgs { file, only, force, json, jobs, device, checkpoint_every, no_resume, .. } = args;
    let executor = executor_of(cli, args)?;
    if *jobs > 0 {
        // `--jobs N` bounds the threads inside stages too (rayon's pool).
        let _ = rayon::ThreadPoolBuilder::new().num_threads(*jobs).build_global();
    }
    let spec = load_spec(file, overrides)?;
    let cache = cache_for(&cli.artifacts, file);
    // Held from before the first write (the spec's ownership of its home)
    // until the manifest and the reports are written: `gc` waits.
    let _lease = cache.lease()?;
    let home = cache.home(&spec.name, file, true)?;
    if let Some(other) = &home.shared_with {
        eprintln!(
            "warning: {other} also names its pipeline `{}`; this spec's runs and reports go to runs/{} and reports/{}",
            spec.name, home.dir, home.dir
        );
    }
    let opts = RunOptions {
        only: super::args::stage_list(only),
        force: super::args::stage_list(force),
        jobs: *jobs,
        home: Some(home.dir.clone()),
        backend: crate::engine::stage::Backend::parse(device).expect("clap checked the value"),
        executor,
        overrides: overrides.iter().map(|o| o.text.clone()).collect(),
        checkpoint_every: *checkpoint_every,
        no_resume: *no_resume,
    };
    let human;
    let reporter: &dyn Reporter = if *json {
        &Json
    } else {
        human = Human::new(width(&spec));
        &human
    };
    if *json {
        out(&(serde_json::json!({"event": "cache", "path": cache.root().display().to_string()}).to_string() + "\n"));
    } else {
        out(&format!("cache: {}\n", cache.root().display()));
        if let Some(m) = &spec.matrix {
            out(&format!("matrix: {m}\n"));
        }
    }
    // Ctrl-C or SIGTERM: the running stages that checkpoint save their
    // state first (a minute at most); then record what finished (it stays
    // cached) and what was running, and exit 128 + the signal.
    // When the run has already settled every stage it is finishing on its
    // own (writing its manifest): it exits with the signal's status below.
    crate::engine::checkpoint::install_signals(std::time::Duration::from_secs(60), |sig| {
        if let Some(msg) = executor::interrupt() {
            eprintln!("\n{msg}");
            std::process::exit(crate::engine::checkpoint::exit_status(sig).into());
        }
    });
    cache.clean_stale_tmp();
    let mut report = match executor::run(&spec, &cache, &opts, reporter) {
        // The signal handler recorded the run and is ending the process.
        Err(crate::engine::executor::ExecError::Interrupted) => loop {
            std::thread::park();
        },
        other => other?,
    };
    let published = match crate::publish::reports(&spec, &cache, &report.manifest)? {
        Ok(pages) => pages,
        Err(fault) => {
            // The bad object and its record are gone: the report stage
            // recomputes like any other stage with a corrupt output.
            eprintln!("warning: {fault}; recomputing it");
            report = executor::run(&spec, &cache, &opts, reporter)?;
            crate::publish::reports(&spec, &cache, &report.manifest)?.map_err(Error::Fault)?
        }
    };
    if let Err(e) = crate::publish::link_latest(&spec, &cache, &report.manifest, report.previous.as_ref()) {
        eprintln!("warning: could not update artifacts/latest/: {e}");
    }
    let count = |f: fn(&Outcome) -> bool| report.outcomes.iter().filter(|(_, o)| f(o)).count();
    let ran = count(|o| matches!(o, Outcome::Ran));
    let fresh = count(|o| matches!(o, Outcome::Fresh));
    let stopped = count(|o| matches!(o, Outcome::Stopped(_)));
    let failed = count(|o| matches!(o, Outcome::Failed(_)));
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    let secs = (report.manifest.finished_ms - report.manifest.started_ms) as f64 / 1000.0;
    // Each validate stage's headline, through the reporter: a `[stage]`
    // block in text, a `summary` event in JSON.
    for (stage, text) in &report.summaries {
        reporter.event(&crate::engine::progress::Event::Summary { stage: stage.clone(), text: text.clone() });
    }
    if !*json {
        let mut text = format!(
            "\n{}: {} stages — {ran} ran, {fresh} fresh{}{}{} in {secs:.2}s\nmanifest: {}\n",
            spec.name,
            report.outcomes.len(),
            if stopped > 0 { format!(", {stopped} stopped (the next run resumes)") } else { String::new() },
            if failed > 0 { format!(", {failed} failed") } else { String::new() },
            if skipped > 0 { format!(", {skipped} skipped") } else { String::new() },
            report.manifest_path.display()
        );
        for path in &published {
            text.push_str(&format!("report: {}\n", path.display()));
        }
        out(&text);
    } else {
        out(&(serde_json::json!({"event": "run_finished", "ok": report.ok(), "ran": ran, "fresh": fresh, "failed": failed, "stopped": stopped, "skipped": skipped, "seconds": secs, "manifest": report.manifest_path.display().to_string()}).to_string() + "\n"));
    }
    if let Some(sig) = crate::engine::checkpoint::stop_requested() {
        // Stopped by a signal, with the checkpoints saved and the manifest
        // written: exit as the signal asks.
        return Ok(ExitCode::from(crate::engine::checkpoint::exit_status(sig)));
    }
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILURE) })
}

/// Where the stages run: `--executor` and the Slurm flags, checked (a Slurm
/// flag without `--executor slurm` is an error, as is a value that would
/// break a batch script).
fn executor_of(cli: &Cli, args: &RunArgs) -> Result<Executor, Error> {
    let RunArgs { file, executor, partition, account, sbatch_args, max_jobs, poll, .. } = args;
    Ok(if executor == "slurm" {
        let poll = poll.unwrap_or(1.0);
        if !(poll.is_finite() && poll > 0.0) {
            return Err(Error::BadInput(format!("--poll must be a positive number of seconds, not {poll}")));
        }
        // Values written into every batch script: names Slurm reads,
        // never a newline or a quote that would add lines of their own.
        for (flag, value) in [("--partition", partition), ("--account", account)] {
            if let Some(v) = value
                && !crate::engine::spec::resources::slurm_word(v)
            {
                return Err(Error::BadInput(format!(
                    "{flag} {v:?} is not a Slurm name (letters, digits, `_`, `-`, `.`, `,`)"
                )));
            }
        }
        let root = std::path::absolute(cli.artifacts.clone().unwrap_or_else(|| default_artifacts(file)))
            .map_err(|e| Error::BadInput(format!("the artifacts directory: {e}")))?;
        if root.to_str().is_none_or(|p| p.chars().any(char::is_control)) {
            return Err(Error::BadInput(format!(
                "the artifacts directory {root:?} holds a control character or is not UTF-8; a Slurm batch script cannot name it"
            )));
        }
        Executor::Slurm(SlurmOptions {
            partition: partition.clone(),
            account: account.clone(),
            sbatch_args: sbatch_args.clone(),
            max_jobs: max_jobs.unwrap_or(64).max(1),
            program: std::env::current_exe().map_err(|e| Error::Fault(format!("this program's path: {e}")))?,
            poll: std::time::Duration::from_secs_f64(poll),
        })
    } else {
        let given: Vec<&str> = [
            ("--partition", partition.is_some()),
            ("--account", account.is_some()),
            ("--sbatch-arg", !sbatch_args.is_empty()),
            ("--max-jobs", max_jobs.is_some()),
            ("--poll", poll.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        if !given.is_empty() {
            return Err(Error::BadInput(format!("{} only apply to `--executor slurm`", given.join(", "))));
        }
        Executor::Local
    })
}
