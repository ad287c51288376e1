//! The end of a build: the target stage committed as an image, then exported to every output
//! asked for (layouts, archives, a local directory, registries).

use rbuild_dockerfile::Platform;
use rbuild_image::reference::Reference;
use rbuild_image::{Images, LocalImage};

use crate::outcome::Pushed;
use crate::progress::{Event, ProgressSink};
use crate::request::{BuildRequest, Output};
use crate::BuildError;

/// Exports `image` to the request's outputs (`--push` included); returns what was pushed where.
pub(crate) fn export(
    images: &Images,
    registry: &crate::transfer::RegistryOptions,
    image: &LocalImage,
    tags: &[Reference],
    req: &BuildRequest,
    inline_cache: &std::collections::BTreeMap<String, String>,
    progress: &dyn ProgressSink,
) -> Result<Vec<Pushed>, BuildError> {
    let mut pushed = Vec::new();
    let outputs = outputs(req);
    for out in &outputs {
        let items = vec![(image.clone(), tags.to_vec())];
        let (kind, dest) = match out {
            Output::Store => continue,
            Output::Oci { dest, tar: false } => {
                rbuild_image::export::oci_layout(
                    images,
                    &items,
                    dest,
                    false,
                    rbuild_image::export::ExportCompression::Gzip,
                )?;
                ("oci", dest)
            }
            // One exporter for archives, shared with `save` (and `dest=-` for stdout).
            Output::Oci { dest, tar: true } | Output::Docker { dest } | Output::Tar { dest } => {
                use rbuild_image::export::ArchiveFormat;
                let (format, kind) = match out {
                    Output::Oci { .. } => (ArchiveFormat::Oci, "oci"),
                    Output::Docker { .. } => (ArchiveFormat::Docker, "docker"),
                    _ => (ArchiveFormat::Rootfs, "tar"),
                };
                crate::save::save(images, &items, format, Default::default(), dest)?;
                (kind, dest)
            }
            Output::Local { dest } => {
                // The flattened tree streams through a pipe into the safe applier, so nothing in
                // the image can write outside `dest`.
                std::fs::create_dir_all(dest).map_err(|e| BuildError::io(dest, e))?;
                let (reader, writer) = std::io::pipe().map_err(|e| BuildError::io(dest, e))?;
                let applied = std::thread::scope(|s| {
                    let apply = s.spawn(|| {
                        rbuild_layer::apply_layer(
                            dest,
                            std::io::BufReader::new(reader),
                            &rbuild_layer::ApplyOptions {
                                // Files land in the caller's directory: keep the image's
                                // owners only for real root, never as subordinate ids the
                                // rootless caller could not delete.
                                same_owner: crate::fsutil::is_root()
                                    && !rbuild_sandbox::in_user_namespace(),
                                ..Default::default()
                            },
                        )
                    });
                    let written = rbuild_image::export::rootfs_tar(images, image, writer).map(drop);
                    let applied = apply
                        .join()
                        .map_err(|_| BuildError::Task("local export thread panicked".into()))?;
                    written?;
                    applied.map_err(BuildError::from)
                });
                applied?;
                ("local", dest)
            }
            // --- registry push (owned by the registry integration) ---
            Output::Registry { names, compression } => {
                let dests = push_destinations(names, tags)?;
                let settings = crate::transfer::PushSettings {
                    compression: *compression,
                    mount_from: Vec::new(),
                    annotations: inline_cache.clone(),
                };
                let digests = crate::transfer::push_all(
                    images, registry, image, &dests, &settings, progress,
                )?;
                pushed.extend(dests.iter().zip(digests).map(|(d, digest)| Pushed {
                    name: d.to_string(),
                    digest,
                }));
                continue;
            }
        };
        progress.event(Event::Exported {
            kind: kind.into(),
            dest: dest.display().to_string(),
        });
    }
    Ok(pushed)
}

/// The request's outputs, `--push` included: it is `-o type=registry` with the build's tags.
pub(crate) fn outputs(req: &BuildRequest) -> Vec<Output> {
    let mut outputs = req.outputs.clone();
    if req.push && !outputs.iter().any(|o| matches!(o, Output::Registry { .. })) {
        outputs.push(Output::Registry {
            names: Vec::new(),
            compression: Default::default(),
        });
    }
    outputs
}

/// Where `-o type=registry` pushes: its `name=`s, else the build's tags.
pub(crate) fn push_destinations(
    names: &[String],
    tags: &[Reference],
) -> Result<Vec<Reference>, BuildError> {
    let dests = if names.is_empty() {
        tags.to_vec()
    } else {
        names
            .iter()
            .map(|n| Reference::parse(n).map_err(BuildError::from))
            .collect::<Result<Vec<_>, _>>()?
    };
    if dests.is_empty() {
        return Err(BuildError::Request(
            "pushing needs a name: give -t NAME or -o type=registry,name=NAME".into(),
        ));
    }
    Ok(dests)
}

/// Commits a target stage as an image. A step's history time is when its layer was made (kept by
/// the cache, so a cached step keeps its first build's time), and the image's time is its last
/// step's: a rebuild that hits the cache throughout gives the same image id, as BuildKit's does.
/// `platform` names the stage in the error of a multi-platform build.
pub(crate) fn commit_target(
    images: &Images,
    target: &crate::lower::LoweredStage,
    platform: Option<&Platform>,
    solved: &crate::solve::Solved,
    req: &BuildRequest,
) -> Result<LocalImage, BuildError> {
    let chain = solved.results[target.fs].clone().ok_or_else(|| {
        BuildError::Task(match platform {
            Some(p) => format!("target stage for {p} did not run"),
            None => "target stage did not run".into(),
        })
    })?;
    let mut config = target.config.config.clone();
    // SOURCE_DATE_EPOCH is the time of everything the build adds (the layer steps already carry
    // it: it is part of their cache keys).
    let epoch = req
        .source_date_epoch
        .map(|s| crate::meta::timestamp(Some(s)));
    for &(i, v) in &target.slots {
        if let Some(h) = config.history.get_mut(i) {
            h.created = v
                .and_then(|v| solved.results[v].as_ref()?.created.clone())
                .or_else(|| epoch.clone());
        }
    }
    config.created = epoch.or_else(|| fill_history_times(&mut config.history));
    for (k, v) in &req.labels {
        config.set_label(k, v);
    }
    Ok(images.commit(&config, &chain.layers)?)
}

/// Gives every history entry without a time (the metadata-only steps) the time of the layer step
/// before it, or of the first layer step after it when none of the stage's steps precedes it;
/// returns the image's time, the last entry's. BuildKit's exporter does the same, so a stage of
/// metadata steps alone on a base image takes the base's time, and one with no time anywhere
/// (`FROM scratch` and metadata) has none.
fn fill_history_times(history: &mut [rbuild_image::config::History]) -> Option<String> {
    // The first time after an entry without one; else the last time there is.
    let mut fill = None;
    let mut gap = false;
    for h in history.iter() {
        match &h.created {
            Some(t) => {
                fill = Some(t.clone());
                if gap {
                    break;
                }
            }
            None => gap = true,
        }
    }
    let mut gap = false;
    for h in history.iter_mut() {
        match &h.created {
            Some(t) if gap => fill = Some(t.clone()),
            Some(_) => {}
            None => {
                gap = true;
                h.created = fill.clone();
            }
        }
    }
    history.iter().rev().find_map(|h| h.created.clone())
}

#[cfg(test)]
mod tests {
    use rbuild_image::config::History;

    fn times(entries: &[Option<&str>]) -> (Vec<Option<String>>, Option<String>) {
        let mut history: Vec<History> = entries
            .iter()
            .map(|t| History {
                created: t.map(str::to_string),
                ..Default::default()
            })
            .collect();
        let image = super::fill_history_times(&mut history);
        (history.into_iter().map(|h| h.created).collect(), image)
    }

    fn some(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|t| Some(t.to_string())).collect()
    }

    #[test]
    fn metadata_steps_take_the_time_of_the_layer_step_before_them() {
        // base, ENV, COPY (t2), CMD, RUN (t4), LABEL
        let (h, image) = times(&[Some("t0"), None, Some("t2"), None, Some("t4"), None]);
        assert_eq!(h, some(&["t0", "t2", "t2", "t2", "t4", "t4"]));
        assert_eq!(image.as_deref(), Some("t4"));
    }

    #[test]
    fn metadata_steps_alone_take_the_base_time() {
        let (h, image) = times(&[Some("t0"), Some("t1"), None, None]);
        assert_eq!(h, some(&["t0", "t1", "t1", "t1"]));
        assert_eq!(image.as_deref(), Some("t1"));
    }

    #[test]
    fn no_time_anywhere_gives_none() {
        let (h, image) = times(&[None, None]);
        assert_eq!(h, vec![None, None]);
        assert_eq!(image, None);
    }
}
