//! The front of a build: the request's Dockerfile read and parsed, and the options it is planned
//! with (build arguments, target, build and target platforms).

use std::path::PathBuf;

use rbuild_dockerfile::{PlanOptions, Platform};

use crate::progress::{Event, ProgressSink};
use crate::request::BuildRequest;
use crate::BuildError;

/// Identifies the Dockerfile across builds, for step lineages (see `explain`).
pub(crate) fn dockerfile_id(req: &BuildRequest) -> String {
    match dockerfile_path(req) {
        Some(p) => std::fs::canonicalize(&p)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned(),
        None => {
            let ctx = std::fs::canonicalize(&req.context).unwrap_or(req.context.clone());
            format!("{}#stdin", ctx.to_string_lossy())
        }
    }
}

pub(crate) fn dockerfile_path(req: &BuildRequest) -> Option<PathBuf> {
    if req.dockerfile_text.is_some() {
        return None;
    }
    Some(
        req.dockerfile
            .clone()
            .unwrap_or_else(|| req.context.join("Dockerfile")),
    )
}

/// Reads and parses the request's Dockerfile; the name is the one errors and steps give it.
/// The request's build context, with its stat cache in the store (so a rebuild re-reads only
/// what changed).
pub(crate) fn open_context(
    req: &BuildRequest,
    store: &rbuild_store::Store,
) -> Result<rbuild_context::Context, BuildError> {
    let dir = store.root().join(crate::cache::STAT_CACHE_DIR);
    Ok(
        rbuild_context::Context::open(&req.context, dockerfile_path(req).as_deref())?
            .with_stat_cache_in(&dir),
    )
}

pub(crate) fn parse_dockerfile(
    req: &BuildRequest,
) -> Result<(String, rbuild_dockerfile::Dockerfile), BuildError> {
    let (file_name, text) = read_dockerfile(req)?;
    let df = rbuild_dockerfile::parse(&file_name, &text)?;
    Ok((file_name, df))
}

/// [`parse_dockerfile`], reporting the parser's warnings as a build shows them, before its steps.
pub(crate) fn parse_reporting(
    req: &BuildRequest,
    progress: &dyn ProgressSink,
) -> Result<(String, rbuild_dockerfile::Dockerfile), BuildError> {
    let (file_name, df) = parse_dockerfile(req)?;
    for w in &df.warnings {
        progress.event(Event::Warning {
            message: format!("{}:{}: {}", w.file_name, w.line, w.message),
        });
    }
    Ok((file_name, df))
}

fn read_dockerfile(req: &BuildRequest) -> Result<(String, String), BuildError> {
    if let Some(text) = &req.dockerfile_text {
        return Ok(("Dockerfile".into(), text.clone()));
    }
    let path = dockerfile_path(req).unwrap_or_else(|| req.context.join("Dockerfile"));
    let text = std::fs::read_to_string(&path).map_err(|source| BuildError::ReadDockerfile {
        path: path.clone(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    Ok((name, text))
}

/// The platform of the machine we run on, in OCI terms (normalised: `linux/arm64` on arm64, as
/// the registry client and `BUILDPLATFORM` see it).
pub fn host_platform() -> Platform {
    Platform::host()
}

/// The plan options of `req`; with several `--platform`s, for the first one (a multi-platform
/// build plans once per platform, see `multi`).
pub(crate) fn plan_options(req: &BuildRequest) -> Result<PlanOptions, BuildError> {
    let build_platform = host_platform();
    let target_platform = match requested(req)? {
        Some(mut list) => list.remove(0),
        None => build_platform.clone(),
    };
    Ok(PlanOptions {
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        build_platform,
        target_platform,
    })
}

/// The platforms `req` asks for (`None` without `--platform`), normalised, duplicates dropped.
pub(crate) fn requested(req: &BuildRequest) -> Result<Option<Vec<Platform>>, BuildError> {
    match &req.platform {
        None => Ok(None),
        Some(p) => rbuild_platform::parse_list(p)
            .map(Some)
            .map_err(|e| BuildError::Request(format!("invalid --platform {p:?}: {e}"))),
    }
}
