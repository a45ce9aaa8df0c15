//! What `inspect` and `export` name: a file, or a stage's output resolved
//! through the pipeline's current result.

use super::prelude::*;

/// A model is written as safetensors, as scoreflow's own bytes (`.bin`), or
/// — a command's model, `model/pt` say — with its framing's extension; an
/// image or page with its own. Anything else would be a file that only looks
/// like what its name says (`-o model.pt` holding scoreflow's framing), so it
/// is refused with the formats that exist.
pub(super) fn refuse_blob_extension(r: &Resolved, ext: &str) -> Result<(), Error> {
    use crate::engine::stage::Media;
    let allowed: Vec<String> = match r.media {
        None | Some(Media::File) | Some(Media::Table) => return Ok(()),
        Some(Media::Png) => vec!["png".into()],
        Some(Media::Html) => vec!["html".into()],
        Some(Media::Model(framing)) => {
            let mut v = vec!["safetensors".to_string(), "bin".to_string()];
            if !v.contains(&framing.to_string()) && framing.chars().all(|c| c.is_ascii_alphanumeric()) {
                v.push(framing.to_string());
            }
            v
        }
    };
    if allowed.iter().any(|a| a == ext) {
        return Ok(());
    }
    let media = r.media.map(|m| m.name()).unwrap_or_default();
    Err(Error::BadInput(format!(
        "{} is {media}: export it as {} (`.safetensors` loads in PyTorch with safetensors.torch.load_file; `.bin` is scoreflow's own framing), not `.{ext}`",
        r.label,
        allowed.iter().map(|a| format!(".{a}")).collect::<Vec<_>>().join(", ")
    )))
}

/// A Parquet path, or `STAGE[.OUTPUT]` resolved through the pipeline's current
/// (fresh) result. Returns the path and a warning if the object fails verification.
/// A cached output (or a file) that `inspect` or `export` names.
pub(super) struct Resolved {
    pub path: PathBuf,
    pub format: crate::engine::stage::Format,
    /// `STAGE.OUTPUT`, or the path given.
    pub label: String,
    /// Set when the cached object failed verification.
    pub warning: Option<String>,
    /// What the output holds, when a stage's output was named.
    pub media: Option<crate::engine::stage::Media>,
}

pub(super) fn resolve_output(
    artifacts: &Option<PathBuf>,
    target: &str,
    pipeline: Option<&Path>,
    overrides: &[spec::Override],
) -> Result<Resolved, Error> {
    use crate::engine::stage::Format;
    if target.ends_with(".parquet") || target.ends_with(".bin") || Path::new(target).is_file() {
        let path = PathBuf::from(target);
        if !path.is_file() {
            return Err(Error::BadInput(format!("no such file: {target}")));
        }
        let mut magic = [0u8; 4];
        let is_parquet = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok_and(|()| &magic == b"PAR1");
        let format = if is_parquet { Format::Table } else { Format::Blob };
        return Ok(Resolved { path, format, label: target.to_string(), warning: None, media: None });
    }
    let Some(file) = pipeline else {
        return Err(Error::BadInput(format!("`{target}` is not a file; to name a stage, add --pipeline FILE")));
    };
    let spec = load_spec(file, overrides)?;
    let cache = cache_for(artifacts, file);
    // A swept stage's name holds its values (`pretrain[seed=1,lr=0.01]`), dots
    // included: the output follows the closing bracket.
    let split = match target.find(']') {
        Some(end) => target[end..].find('.').map(|d| (&target[..end + d], &target[end + d + 1..])),
        None => target.split_once('.'),
    };
    let (stage_name, output) = match split {
        Some((s, o)) => (s, Some(o)),
        None => (target, None),
    };
    let stage = spec.stage(stage_name).ok_or_else(|| {
        let names: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
        Error::BadInput(format!(
            "pipeline {} has no stage `{stage_name}`{}",
            spec.name,
            crate::engine::params::suggest(stage_name, &names)
        ))
    })?;
    let outputs: Vec<&str> = stage.imp.outputs().iter().map(|o| o.name).collect();
    let output = output.unwrap_or(outputs[0]);
    let def = crate::engine::stage::output_def(stage.imp, output).ok_or_else(|| {
        Error::BadInput(format!(
            "stage `{stage_name}` has no output `{output}`; its outputs are: {}",
            outputs.join(", ")
        ))
    })?;
    let idx = spec.index(stage_name).expect("looked up above");
    let Some((_, record)) = crate::engine::fingerprint::current_record(&spec, &cache, idx)? else {
        return Err(Error::BadInput(format!(
            "stage `{stage_name}` has no current result; run `scoreflow run {}` first",
            file.display()
        )));
    };
    let entry = &record.outputs[output];
    let warning = match cache.read_entry(entry) {
        Ok(_) => None,
        Err(e) => Some(format!("{stage_name}.{output} failed verification ({e}); the next run will recompute it")),
    };
    Ok(Resolved {
        path: cache.root().join(&entry.file),
        format: def.format(),
        label: format!("{stage_name}.{output}"),
        warning,
        media: Some(def.media),
    })
}
