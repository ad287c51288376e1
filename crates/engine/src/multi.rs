//! Multi-platform builds (`--platform linux/amd64,linux/arm64`), as `docker buildx build` does
//! them: the Dockerfile is planned once per target platform (each with its own `TARGET*` args),
//! every plan is lowered into *one* graph and solved at once, and the images become one OCI
//! index.
//!
//! Sharing falls out of the graph and the keys: a step whose definition and inputs are the same
//! for two platforms (a stage `FROM --platform=$BUILDPLATFORM`, a COPY into `scratch`) is one
//! vertex and runs once; a RUN is keyed with its platform (see `ops::exec`), so an arm64 step
//! never reuses an amd64 result. Outputs: the store tags point at the index, an OCI layout holds
//! the index under each name, a registry gets every manifest and the index; a docker archive or
//! a rootfs tar holds one platform only, so they are refused before anything runs, and a local
//! directory export gets one subdirectory per platform (`linux_arm64/`), as BuildKit writes it.

use rbuild_dockerfile::Platform;
use rbuild_image::reference::Reference;
use rbuild_image::LocalImage;

use crate::deliver::{commit_target, export, push_destinations};
use crate::frontend::{dockerfile_id, open_context, parse_reporting, plan_options, requested};
use crate::outcome::{BuildOutcome, Pushed};
use crate::progress::{Event, ProgressSink};
use crate::request::{BuildRequest, Output};
use crate::resources::Resources;
use crate::shared::Cancel;
use crate::BuildError;

/// The platforms of a multi-platform build, or `None` when `req` asks for at most one.
pub(crate) fn platforms(req: &BuildRequest) -> Result<Option<Vec<Platform>>, BuildError> {
    Ok(requested(req)?.filter(|l| l.len() > 1))
}

/// The outputs that hold one image only are refused before the build, naming the platforms.
fn check_outputs(req: &BuildRequest, platforms: &[Platform]) -> Result<(), BuildError> {
    let list = platforms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    for o in &req.outputs {
        let kind = match o {
            Output::Docker { .. } => "docker",
            Output::Tar { .. } => "tar",
            _ => continue,
        };
        return Err(BuildError::Request(format!(
            "the {kind} output holds one platform, but the build is for {list}: build with one \
             --platform, or use -o type=oci or --push for a multi-platform image"
        )));
    }
    Ok(())
}

/// Builds every platform of `req` in one graph; see the module docs.
pub(crate) fn build(
    b: &std::sync::Arc<Resources>,
    req: &BuildRequest,
    platforms: &[Platform],
    progress: &dyn ProgressSink,
    cancel: &Cancel,
) -> Result<BuildOutcome, BuildError> {
    check_outputs(req, platforms)?;
    let images = &b.images;
    let _lock = images.store().lock_shared()?;
    let (file_name, df) = parse_reporting(req, progress)?;
    let base = plan_options(req)?;
    let mut plans = Vec::with_capacity(platforms.len());
    for p in platforms {
        let mut opts = base.clone();
        opts.target_platform = p.clone();
        let plan = rbuild_dockerfile::plan(&df, &opts)?;
        plans.push((plan, opts));
    }
    for arg in &plans[0].0.unused_build_args {
        progress.event(Event::Warning {
            message: format!("build argument {arg:?} was not consumed by any stage"),
        });
    }
    let tags = req
        .tags
        .iter()
        .map(|t| Reference::parse(t).map_err(BuildError::from))
        .collect::<Result<Vec<_>, _>>()?;
    let id = dockerfile_id(req);
    let refs: Vec<_> = plans.iter().map(|(p, o)| (p, o)).collect();
    let lowered = crate::lower::lower_platforms(
        &refs,
        &crate::lower::LowerEnv {
            images,
            registry: &b.registry,
            progress,
            pull: req.pull,
            network: req.network.as_deref(),
            dockerfile_id: &id,
        },
    )?;
    progress.event(Event::Planned {
        steps: lowered.total_steps,
        stages: lowered.stages.clone(),
    });

    let ctx = open_context(req, images.store())?;
    let snap = b.snapshotter(progress)?;
    let devices = crate::devices::resolve(req, &file_name)?;
    let imported = crate::cacheio::import_all(images, &b.registry, req, progress);
    let shared = crate::shared::Shared {
        imported: &imported,
        devices: &devices,
        ..b.shared(snap, &ctx, req, progress, cancel, &file_name)
    };
    let jobs = req.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut targets = lowered.ends.clone();
    targets.extend(lowered.targets.iter().map(|t| t.fs));
    let solved = crate::solve::solve(&lowered.graph, &targets, &shared, jobs)?;
    let mut built = Vec::with_capacity(platforms.len());
    for (target, platform) in lowered.targets.iter().zip(platforms) {
        built.push(commit_target(images, target, Some(platform), &solved, req)?);
    }
    let (index, _) = images.commit_index(&built)?;
    let created = built.first().and_then(|i| i.config.created.clone());
    let mut applied = Vec::new();
    for t in &tags {
        images.tag_index(&index, t, created.clone())?;
        applied.push(t.to_string());
    }
    progress.event(Event::ImageWritten {
        id: index.to_string(),
        tags: applied.clone(),
    });
    let pushed = export_all(b, &built, &tags, req, progress)?;
    // Cache records are shared by the platforms; `mode=min` keeps those of the first image.
    crate::cacheio::export_all(images, &b.registry, req, &solved.keys, &built[0], progress)?;
    Ok(BuildOutcome {
        image: built[0].clone(),
        tags: applied,
        pushed,
        steps: Vec::new(),
        platforms: built,
        index: Some(index),
    })
}

/// Writes every output of a multi-platform build (the store tags are already set).
fn export_all(
    b: &std::sync::Arc<Resources>,
    built: &[LocalImage],
    tags: &[Reference],
    req: &BuildRequest,
    progress: &dyn ProgressSink,
) -> Result<Vec<Pushed>, BuildError> {
    let images = &b.images;
    let mut pushed = Vec::new();
    let outputs = crate::deliver::outputs(req);
    for out in &outputs {
        match out {
            Output::Store => {}
            Output::Oci { dest, tar } => {
                rbuild_image::export::oci_layout_index(
                    images,
                    built,
                    tags,
                    dest,
                    *tar,
                    rbuild_image::export::ExportCompression::Gzip,
                )?;
                progress.event(Event::Exported {
                    kind: "oci".into(),
                    dest: dest.display().to_string(),
                });
            }
            Output::Local { dest } => {
                for img in built {
                    let p = img
                        .config
                        .platform()
                        .map(|p| p.normalized().to_string())
                        .unwrap_or_else(|| "unknown".into());
                    let one = BuildRequest {
                        outputs: vec![Output::Local {
                            dest: dest.join(p.replace('/', "_")),
                        }],
                        push: false,
                        ..req.clone()
                    };
                    export(
                        images,
                        &b.registry,
                        img,
                        &[],
                        &one,
                        &Default::default(),
                        progress,
                    )?;
                }
            }
            Output::Docker { .. } | Output::Tar { .. } => {
                return Err(BuildError::Task(
                    "single-platform output reached a multi-platform export".into(),
                ))
            }
            Output::Registry { names, compression } => {
                let dests = push_destinations(names, tags)?;
                let settings = crate::transfer::PushSettings {
                    compression: *compression,
                    mount_from: Vec::new(),
                    annotations: Default::default(),
                };
                let digests = crate::transfer::push_index(
                    images,
                    &b.registry,
                    built,
                    &dests,
                    &settings,
                    progress,
                )?;
                for (dest, digest) in dests.iter().zip(digests) {
                    pushed.push(Pushed {
                        name: dest.to_string(),
                        digest,
                    });
                }
            }
        }
    }
    Ok(pushed)
}
