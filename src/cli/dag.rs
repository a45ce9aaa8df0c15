//! `scoreflow dag`: The stage graph, as text or Graphviz.

use super::prelude::*;

pub(super) fn run(overrides: &[spec::Override], args: &DagArgs) -> Result<ExitCode, Error> {
    let DagArgs { file, dot } = args;
    let spec = load_spec(file, overrides)?;
    let dag = Dag::new(&spec);
    out(&if *dot { dag.to_dot(&spec) } else { dag.to_text(&spec) });
    Ok(ExitCode::SUCCESS)
}
