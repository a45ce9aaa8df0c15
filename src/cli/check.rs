//! `scoreflow check`: Validate a spec: every error at once, with file:line:column; runs nothing.

use super::prelude::*;

pub(super) fn run(overrides: &[spec::Override], args: &CheckArgs) -> Result<ExitCode, Error> {
    let CheckArgs { file } = args;
    let spec = load_spec(file, overrides)?;
    let n = spec.stages.len();
    let sweep = spec.matrix.as_ref().map_or(String::new(), |m| format!(" (matrix: {m})"));
    out(&format!("{}: ok, {n} stage{}{sweep}\n", file.display(), if n == 1 { "" } else { "s" }));
    for stage in &spec.stages {
        for (input, f) in stage.files.iter().filter(|(_, f)| f.outside) {
            out(&format!(
                "note: input `{input}` of stage `{}` reads `{}` from outside the project (allow_outside: true)\n",
                stage.name, f.path
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
