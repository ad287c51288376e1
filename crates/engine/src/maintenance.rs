//! Store-wide operations a front end offers besides building: `--check` (lint without building)
//! and `prune`. They live here, not in the CLI, so an embedder gets the same answers: the same
//! Dockerfile name in diagnostics as a build reports, and prune's steps in the one order that
//! frees everything.

use rbuild_dockerfile::Diagnostic;

use crate::{BuildError, BuildRequest, Builder};

/// What `rbuild build --check` found: the Dockerfile parsed and planned; these are the lint
/// findings (BuildKit's build checks), in file order.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The Dockerfile's name as diagnostics and build errors show it.
    pub file_name: String,
    /// The findings; empty means clean.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses, plans and lints the request's Dockerfile without building or touching a store, as
/// `docker build --check`. Parse and plan errors are errors; lint findings are the report.
pub fn check(req: &BuildRequest) -> Result<CheckReport, BuildError> {
    let (file_name, df) = crate::frontend::parse_dockerfile(req)?;
    let opts = crate::frontend::plan_options(req)?;
    rbuild_dockerfile::plan(&df, &opts)?;
    Ok(CheckReport {
        diagnostics: rbuild_dockerfile::check(&df, &opts),
        file_name,
    })
}

/// What [`Builder::prune`] removed.
#[derive(Debug)]
pub struct PruneReport {
    /// Build cache records deleted.
    pub cache_records: usize,
    /// Untagged images deleted, and the bytes their unreferenced data freed.
    pub images: rbuild_image::PruneStats,
    /// Snapshot trees deleted, and their bytes.
    pub snapshots: rbuild_snapshot::Pruned,
}

impl PruneReport {
    /// Bytes given back, in all.
    pub fn bytes_freed(&self) -> u64 {
        self.images.bytes_freed + self.snapshots.bytes
    }
}

impl Builder {
    /// Removes untagged images, the build cache and unreferenced data, as `docker system prune`.
    ///
    /// The order matters: cache records go first (they are what keeps step results alive), then
    /// images and the garbage collection of blobs nothing references any more, then the snapshot
    /// trees of layers the store no longer holds. Any other order leaves data behind until the
    /// next prune.
    pub fn prune(&self) -> Result<PruneReport, BuildError> {
        self.prune_keeping(&Default::default())
    }

    /// [`Builder::prune`], keeping the images in `keep` (by id) even when no tag names them:
    /// the images containers run, which docker's prune keeps too.
    pub fn prune_keeping(
        &self,
        keep: &std::collections::HashSet<rbuild_digest::Digest>,
    ) -> Result<PruneReport, BuildError> {
        let cache_records = crate::cache::prune(self.images().store())?;
        let images = self.images().prune_keeping(keep)?;
        let snapshots = self.prune_snapshots()?;
        Ok(PruneReport {
            cache_records,
            images,
            snapshots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_dockerfile_as_builds_do() {
        let dir = tempfile::tempdir().unwrap();
        let df = dir.path().join("app.Dockerfile");
        std::fs::write(&df, "FROM scratch AS Build\nCMD echo hi\n").unwrap();
        let req = BuildRequest {
            context: dir.path().into(),
            dockerfile: Some(df),
            ..Default::default()
        };
        let report = check(&req).unwrap();
        assert_eq!(report.file_name, "app.Dockerfile");
        let rules: Vec<&str> = report.diagnostics.iter().map(|d| d.rule.as_str()).collect();
        assert!(rules.contains(&"StageNameCasing"), "{rules:?}");
        assert!(rules.contains(&"JSONArgsRecommended"), "{rules:?}");
        assert!(report
            .diagnostics
            .iter()
            .all(|d| d.file_name == "app.Dockerfile"));
    }

    fn rootfs_tar(dir: &std::path::Path, content: &str) -> std::path::PathBuf {
        let path = dir.join(format!("{content}.tar"));
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "file.txt", content.as_bytes())
            .unwrap();
        b.finish().unwrap();
        path
    }

    #[test]
    fn prune_removes_untagged_images_and_keeps_tagged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let builder = Builder::open(crate::BuilderOptions {
            root: dir.path().join("store"),
            registry: Default::default(),
            isolation: Default::default(),
        })
        .unwrap();
        let platform = crate::host_platform();
        let kept_ref = rbuild_image::Reference::parse("kept:1").unwrap();
        let kept = crate::import_rootfs(
            builder.images(),
            &rootfs_tar(dir.path(), "kept"),
            Some(&kept_ref),
            &platform,
            None,
        )
        .unwrap();
        let loose = crate::import_rootfs(
            builder.images(),
            &rootfs_tar(dir.path(), "loose"),
            None,
            &platform,
            None,
        )
        .unwrap();
        let report = builder.prune().unwrap();
        assert_eq!(report.images.images_deleted, vec![loose.id]);
        assert!(report.bytes_freed() > 0, "{report:?}");
        assert!(builder.images().resolve(&loose.id.to_string()).is_err());
        assert_eq!(builder.images().resolve("kept:1").unwrap().id, kept.id);
        // Nothing is left to remove the second time.
        let again = builder.prune().unwrap();
        assert!(again.images.images_deleted.is_empty());
        assert_eq!(again.cache_records, 0);
    }

    #[test]
    fn check_fails_on_parse_errors_with_the_same_name() {
        let req = BuildRequest {
            context: ".".into(),
            dockerfile_text: Some("FROM scratch\nFOO bar\n".into()),
            ..Default::default()
        };
        match check(&req) {
            Err(BuildError::Dockerfile(e)) => {
                assert_eq!((e.file_name.as_str(), e.line), ("Dockerfile", 2));
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }
}
