//! `scoreflow stages`: The stage implementations: params, inputs, outputs.

use super::prelude::*;

pub(super) fn run(args: &StagesArgs) -> Result<ExitCode, Error> {
    let StagesArgs { kind, method, markdown } = args;
    use crate::engine::stage::Kind;
    let kind = match kind {
        None => None,
        Some(k) => Some(Kind::parse(k).filter(|k| Kind::PUBLIC.contains(k)).ok_or_else(|| {
            let names: Vec<&str> = Kind::PUBLIC.iter().map(|k| k.name()).collect();
            Error::BadInput(format!(
                "unknown stage kind `{k}`; expected one of: {}{}",
                names.join(", "),
                crate::engine::params::suggest(k, &names)
            ))
        })?),
    };
    let stages = crate::describe::select(crate::registry(), kind, method.as_deref());
    if stages.is_empty() {
        let k = kind.expect("a method is only given with a kind");
        let names: Vec<&str> = crate::registry().methods(k).iter().map(|s| s.method()).collect();
        return Err(Error::BadInput(format!(
            "no {k} implementation `{}`; expected one of: {}{}",
            method.as_deref().unwrap_or_default(),
            names.join(", "),
            crate::engine::params::suggest(method.as_deref().unwrap_or_default(), &names)
        )));
    }
    out(&if *markdown { crate::describe::markdown(&stages) } else { crate::describe::text(&stages) });
    Ok(ExitCode::SUCCESS)
}
