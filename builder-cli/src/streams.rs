//! Archives on standard streams, as docker does it: `save` writes to stdout when it is not a
//! terminal, `load` reads stdin without `-i`, and a build's `-o -` / `dest=-` streams its tar
//! to stdout (progress stays on stderr, so the two never mix).

use std::io::IsTerminal;
use std::path::PathBuf;

use rbuild_engine::image::export::{ArchiveFormat, ExportCompression};
use rbuild_engine::image::import::Loaded;
use rbuild_engine::image::{LocalImage, Reference};
use rbuild_engine::{BuildError, Builder, Output};

/// Docker's refusal, word for word, so scripts and people recognise it.
const SAVE_TO_TERMINAL: &str =
    "cowardly refusing to save to a terminal. Use the -o flag or redirect";

/// `rbuild save [-o FILE] [--format docker|oci] IMAGE...`.
pub fn save(
    builder: &Builder,
    items: &[(LocalImage, Vec<Reference>)],
    format: &str,
    output: Option<PathBuf>,
) -> Result<(), BuildError> {
    let format = match ArchiveFormat::parse(format) {
        Some(f @ (ArchiveFormat::Docker | ArchiveFormat::Oci)) => f,
        _ => {
            return Err(BuildError::Request(format!(
                "unknown --format {format:?}: use docker or oci"
            )))
        }
    };
    let dest = output.unwrap_or_else(|| PathBuf::from("-"));
    if rbuild_engine::save::is_stdout(&dest) && std::io::stdout().is_terminal() {
        return Err(BuildError::Request(SAVE_TO_TERMINAL.into()));
    }
    rbuild_engine::save::save(
        builder.images(),
        items,
        format,
        ExportCompression::Gzip,
        &dest,
    )
}

/// `rbuild load [-i FILE]`: from the file, or from standard input.
pub fn load(builder: &Builder, input: Option<PathBuf>) -> Result<Vec<Loaded>, BuildError> {
    match input {
        Some(p) if !rbuild_engine::save::is_stdout(&p) => {
            Ok(rbuild_engine::image::import::load(builder.images(), &p)?)
        }
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(BuildError::Request(
                    "requested load from stdin, but stdin is empty".into(),
                ));
            }
            Ok(rbuild_engine::image::import::load_reader(
                builder.images(),
                stdin.lock(),
                "<stdin>".as_ref(),
            )?)
        }
    }
}

/// Refuses stdout outputs that cannot work: onto a terminal (as buildx), more than one of them,
/// or with `-q`, whose image id would land inside the tar.
pub fn check_stdout_outputs(outputs: &[Output], quiet: bool) -> Result<(), BuildError> {
    let to_stdout: Vec<&Output> = outputs
        .iter()
        .filter(|o| match o {
            Output::Oci { dest, .. }
            | Output::Docker { dest }
            | Output::Tar { dest }
            | Output::Local { dest } => rbuild_engine::save::is_stdout(dest),
            _ => false,
        })
        .collect();
    if to_stdout.is_empty() {
        return Ok(());
    }
    if to_stdout.len() > 1 {
        return Err(BuildError::Request(
            "only one output can be written to standard output (dest=-)".into(),
        ));
    }
    if quiet {
        return Err(BuildError::Request(
            "-q prints the image ID on standard output, which -o - uses for the tar: use \
             --iidfile instead"
                .into(),
        ));
    }
    if std::io::stdout().is_terminal() {
        return Err(BuildError::Request(
            "refusing to write the output tar to a terminal: redirect standard output or give \
             dest=FILE"
                .into(),
        ));
    }
    Ok(())
}
