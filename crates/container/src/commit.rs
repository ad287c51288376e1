//! `docker commit`: the container's writable layer as one new layer on its image, written by
//! the build's layer writer, with a history entry and the config changes asked for.

use std::path::PathBuf;

use rbuild_image::config::{History, ImageConfig};
use rbuild_image::{LayerDesc, LocalImage, Reference};

use crate::record::Record;
use crate::{ContainerError, Containers, REF_PREFIX};

/// What `commit` records besides the layer.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `IMAGE[:TAG]` to tag the result with.
    pub reference: Option<String>,
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// `-a`: the image's author.
    pub author: Option<String>,
    /// `--pause`: stop every process of the container while its layer is read (SIGSTOP, then
    /// SIGCONT; there is no freezer cgroup), so the layer is consistent.
    pub pause: bool,
}

/// Pids in the same pid namespace as `pid` (the container's processes, as the host sees them).
fn container_pids(pid: i32) -> Vec<i32> {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let Some(target) = ns(&pid.to_string()) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| ns(&p.to_string()).as_ref() == Some(&target))
        .collect()
}

/// Sends SIGCONT to the paused processes when dropped.
struct Paused(Vec<i32>);

impl Drop for Paused {
    fn drop(&mut self) {
        for &p in &self.0 {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(p, libc::SIGCONT) };
        }
    }
}

pub(crate) fn commit(
    cs: &Containers,
    rec: &Record,
    opts: &CommitOptions,
    edit: &dyn Fn(&mut ImageConfig) -> Result<(), String>,
) -> Result<LocalImage, ContainerError> {
    let images = cs.images();
    let store = images.store();
    let reference = opts
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let manifest = store
        .get_ref(&format!("{REF_PREFIX}{}", rec.id))?
        .ok_or_else(|| {
            ContainerError::Invalid(format!(
                "the image of container {} is missing from the store",
                rec.name
            ))
        })?;
    let base = images.load_manifest(&manifest.digest)?;
    let mut config = base.config.clone();
    edit(&mut config).map_err(ContainerError::Invalid)?;
    let _paused = if opts.pause && Containers::status(rec) == crate::Status::Running {
        let pids = container_pids(rec.state.pid);
        for &p in &pids {
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGSTOP) };
        }
        Some(Paused(pids))
    } else {
        None
    };
    let snap = cs.snapshotter()?;
    let upper = cs.dir_of(rec).join("upper");
    let mut exclude: Vec<PathBuf> = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"]
        .iter()
        .map(PathBuf::from)
        .collect();
    for m in &rec.host.mounts {
        let t = match m {
            crate::Mount::Bind { target, .. } | crate::Mount::Tmpfs { target, .. } => target,
        };
        exclude.push(PathBuf::from(t));
    }
    let committed = snap.commit_upper(
        &upper,
        &rec.lowers,
        &rbuild_layer::WriteOptions::default(),
        &exclude,
    )?;
    drop(_paused);
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
    config.created = Some(now.clone());
    if let Some(a) = &opts.author {
        config.author = Some(a.clone());
    }
    config.history.push(History {
        created: Some(now),
        created_by: Some(rec.process.args.join(" ")),
        author: opts.author.clone(),
        comment: opts.message.clone(),
        empty_layer: None,
    });
    let mut layers: Vec<LayerDesc> = base.layers.clone();
    layers.push(LayerDesc {
        diff_id: committed.diff_id,
        size: committed.size,
    });
    let img = images.commit(&config, &layers)?;
    if let Some(r) = reference {
        images.tag(&img, &r)?;
    }
    Ok(img)
}
