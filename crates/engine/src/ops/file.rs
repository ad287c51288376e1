//! File ops: COPY, ADD and WORKDIR, done by the engine on a writable snapshot of the stage.

use std::io::Write;
use std::path::{Path, PathBuf};

use rbuild_dockerfile::Heredoc;

use super::{commit_layer, ContextSources, Reads};
use crate::chain::Chain;
use crate::fsutil::{is_root, join_workdir, mkdir_all_in_root};
use crate::key::Key;
use crate::progress::StepId;
use crate::shared::Shared;
use crate::view::View;
use crate::BuildError;

/// A file op.
pub(crate) enum FileOp {
    /// WORKDIR: the directory (absolute, cleaned) and the USER whose ids own what is created.
    Workdir {
        path: PathBuf,
        user: Option<String>,
        created_by: String,
    },
    /// COPY or ADD.
    Copy(Box<CopyOp>),
}

/// COPY or ADD, expanded.
pub(crate) struct CopyOp {
    /// ADD's own options; `None` for COPY.
    pub add: Option<rbuild_dockerfile::Add>,
    /// The copy (sources, destination, flags, heredocs).
    pub copy: rbuild_dockerfile::Copy,
    /// The stage's working directory, against which a relative destination is resolved.
    pub workdir: String,
    /// The history text.
    pub created_by: String,
}

impl FileOp {
    /// Key fields: `workdir`: `path`, `user`. `copy`/`add`: `sources`, `dest`, `workdir`, `from`
    /// (whether the sources come from another stage or image, whose chain is an input), `chown`,
    /// `chmod`, `link`, `parents`, `exclude`, `heredocs` (name and body of each) and, for ADD,
    /// `checksum`, `unpack` and `keep-git-dir`.
    pub fn define(&self, k: &mut Key) {
        match self {
            FileOp::Workdir { path, user, .. } => {
                k.str("op", "workdir")
                    .str("path", &path.to_string_lossy())
                    .opt_str("user", user.as_deref());
            }
            FileOp::Copy(c) => {
                let copy = &c.copy;
                k.str("op", if c.add.is_some() { "add" } else { "copy" })
                    .strs("sources", &copy.sources)
                    .str("dest", &copy.dest)
                    .str("workdir", &c.workdir)
                    .bool("from", copy.from.is_some())
                    .opt_str("chown", copy.chown.as_deref())
                    .opt_str("chmod", copy.chmod.as_deref())
                    .bool("link", copy.link)
                    .bool("parents", copy.parents)
                    .strs("exclude", &copy.exclude);
                k.list("heredocs", copy.heredocs.len());
                for h in &copy.heredocs {
                    k.str("name", &h.name).str("body", &h.body());
                }
                if let Some(a) = &c.add {
                    k.opt_str("checksum", a.checksum.as_deref())
                        .opt_str("unpack", a.unpack.map(|u| if u { "true" } else { "false" }))
                        .bool("keep-git-dir", a.keep_git_dir);
                }
            }
        }
    }

    /// What the op reads besides its inputs: context files for a COPY or ADD without `--from`.
    pub fn reads(&self, sh: &Shared<'_>, step: &StepId) -> Result<Reads, BuildError> {
        let FileOp::Copy(c) = self else {
            return Ok(Reads::Nothing);
        };
        if let Some(a) = &c.add {
            let remote = c.copy.sources.iter().any(|s| is_url(s));
            if remote || a.checksum.is_some() {
                return Ok(Reads::Unkeyable);
            }
        }
        if !c.copy.heredocs.is_empty() || c.copy.from.is_some() {
            return Ok(Reads::Nothing);
        }
        let manifest = sh
            .context
            .source_manifest(&c.copy.sources)
            .map_err(|e| sh.step_error(step, e))?;
        Ok(Reads::Context(ContextSources {
            patterns: c.copy.sources.clone(),
            digest: manifest.digest(),
            manifest: Some(std::sync::Arc::new(manifest)),
        }))
    }

    /// Does the copy or mkdir on a snapshot of `inputs[0]` (sources from `inputs[1]` for
    /// `--from`) and commits it as a layer.
    pub fn run(
        &self,
        sh: &Shared<'_>,
        step: &StepId,
        inputs: &[&Chain],
    ) -> Result<Chain, BuildError> {
        let parent = inputs
            .first()
            .ok_or_else(|| BuildError::Task("file op without a filesystem input".into()))?;
        match self {
            FileOp::Workdir {
                path,
                user,
                created_by,
            } => {
                let view = View::open(sh.snap, sh.images.store(), &parent.diff_ids())?;
                let root = view_root(&view)?;
                let owner = match user.as_deref() {
                    None | Some("") => None,
                    Some(u) => Some(
                        rbuild_context::passwd::resolve_chown(&root, u)
                            .map_err(|e| sh.step_error(step, e))?,
                    ),
                };
                let made =
                    mkdir_all_in_root(&root, path, owner).map_err(|e| sh.step_error(step, e))?;
                if !made.is_empty() {
                    // As COPY's: the layer is then a function of the path and the user alone.
                    stamp_parents(&root, path, dir_time(sh)).map_err(|e| sh.step_error(step, e))?;
                }
                // BuildKit keeps WORKDIR's layer even when the directory already existed.
                commit_layer(sh, parent, view, &[], created_by)
            }
            FileOp::Copy(c) => {
                let from = c.copy.from.as_ref().and(inputs.get(1).copied());
                c.run(sh, step, parent, from)
            }
        }
    }
}

impl CopyOp {
    fn run(
        &self,
        sh: &Shared<'_>,
        step: &StepId,
        parent: &Chain,
        from: Option<&Chain>,
    ) -> Result<Chain, BuildError> {
        let copy = &self.copy;
        let add = self.add.as_ref();
        let store = sh.images.store();
        let err = |e: &dyn std::fmt::Display| sh.step_error(step, e);
        // A cancelled build stops the copy between entries, not after it.
        let flag = sh.cancel.flag();
        let flag = flag.as_ref();
        let copy_err = |e: rbuild_context::ContextError| match e {
            rbuild_context::ContextError::Cancelled => BuildError::Cancelled,
            e => err(&e),
        };
        let mut view = View::open(sh.snap, store, &parent.diff_ids())?;
        let root = view_root(&view)?;
        let chown = match copy.chown.as_deref() {
            Some(spec) => {
                Some(rbuild_context::passwd::resolve_chown(&root, spec).map_err(|e| err(&e))?)
            }
            None => None,
        };
        let workdir = self.workdir.as_str();

        let remember = match self.plan_layer(sh, &view, &root, chown)? {
            Planned::Copy(key) => key,
            Planned::Found(layer) => {
                // The layer this COPY makes is already here: nothing to write (see `copyplan`).
                drop(view);
                sh.event(crate::progress::Event::StepLog {
                    step: step.clone(),
                    text: format!(
                        "the layer {} is already in the store: nothing copied",
                        layer.diff_id
                    ),
                });
                return Ok(super::with_layer(sh, parent, layer.diff_id, layer.size));
            }
            Planned::Written(layer, key) => {
                if sh.cancel.is_cancelled() {
                    return Err(BuildError::Cancelled);
                }
                let c = view.commit_written(&sh.write_options(), &layer)?;
                // Only a hint for the next build, as below.
                let _ = remember_layer(store, &key, &c.diff_id);
                return Ok(super::with_layer(sh, parent, c.diff_id, c.size));
            }
        };

        if !copy.heredocs.is_empty() {
            // Heredoc sources become files in a scratch directory named after the heredoc.
            let dir = store.temp_dir("heredoc")?;
            write_heredocs(dir.path(), &copy.heredocs)?;
            let sources: Vec<String> = copy.heredocs.iter().map(|h| h.name.clone()).collect();
            let req = rbuild_context::CopyRequest {
                src_root: dir.path(),
                ignore: None,
                sources: &sources,
                dest: &copy.dest,
                workdir,
                dest_root: &root,
                chown,
                chmod: copy.chmod.as_deref(),
                parents: false,
                exclude: &copy.exclude,
                keep_ownership: false,
                cancel: Some(flag),
            };
            let out = rbuild_context::copy(&req).map_err(copy_err)?;
            view.record_owner(&out);
        } else {
            // The source tree: the context, another stage, or an image (`--from`).
            let mut _from_view = None;
            let from_root: Option<PathBuf> = match from {
                None => None,
                Some(chain) => {
                    let v = View::open(sh.snap, store, &chain.diff_ids())?;
                    let r = view_root(&v)?;
                    _from_view = Some(v);
                    Some(r)
                }
            };
            let (src_root, ignore): (&Path, Option<&rbuild_context::ignore::IgnoreMatcher>) =
                match &from_root {
                    Some(r) => (r.as_path(), None),
                    None => (sh.context.root(), Some(sh.context.ignore())),
                };
            // ADD: local archives are extracted, URLs fetched; everything else is a plain copy.
            let mut plain = Vec::new();
            for src in &copy.sources {
                if add.is_some() && is_url(src) {
                    self.add_url(sh, &root, src, chown).map_err(|e| err(&e))?;
                    continue;
                }
                let unpack = add.map(|a| a.unpack.unwrap_or(true)).unwrap_or(false);
                if unpack && from_root.is_none() {
                    // Archives among a source's matches (wildcards too) are extracted.
                    let parts = crate::addsrc::classify(sh.context, src).map_err(|e| err(&e))?;
                    for part in parts {
                        match part {
                            crate::addsrc::AddSource::Archive(p) => {
                                extract(sh, &root, &p, &copy.dest, workdir, chown)
                                    .map_err(|e| err(&e))?
                            }
                            crate::addsrc::AddSource::Plain(s) => plain.push(s),
                        }
                    }
                    continue;
                }
                plain.push(src.clone());
            }
            if !plain.is_empty() {
                let req = rbuild_context::CopyRequest {
                    src_root,
                    ignore,
                    sources: &plain,
                    dest: &copy.dest,
                    workdir,
                    dest_root: &root,
                    chown,
                    chmod: copy.chmod.as_deref(),
                    parents: copy.parents,
                    exclude: &copy.exclude,
                    keep_ownership: from.is_some() && chown.is_none(),
                    cancel: Some(flag),
                };
                let out = rbuild_context::copy(&req).map_err(copy_err)?;
                view.record_owner(&out);
            }
        }
        if sh.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        let dest = join_workdir(workdir, &copy.dest);
        stamp_parents(&root, &dest, dir_time(sh)).map_err(|e| err(&e))?;
        let chain = commit_layer(sh, parent, view, &[], &self.created_by)?;
        if let (Some(key), Some(layer)) = (remember, chain.layers.last()) {
            // Only a hint for the next build: failing to write it costs that build a copy.
            let _ = remember_layer(store, &key, &layer.diff_id);
        }
        Ok(chain)
    }

    /// For the plain case `copyplan` covers: whether this COPY's layer is already in the store
    /// (then nothing needs copying), computed from the sources when the index says the same
    /// entries made a layer before; else the copy written into the view with its layer computed
    /// in the same walk, when the snapshotter keeps the upper directory as the layer's tree.
    /// Otherwise the key to remember the committed layer under, if the COPY is plain.
    fn plan_layer(
        &self,
        sh: &Shared<'_>,
        view: &View<'_>,
        root: &Path,
        chown: Option<(u32, u32)>,
    ) -> Result<Planned, BuildError> {
        use super::copyplan::Stop;
        let copy = &self.copy;
        let plain = self.add.is_none()
            && copy.heredocs.is_empty()
            && copy.from.is_none()
            && !copy.parents
            && !copy.link
            && copy.exclude.is_empty()
            && copy.sources.len() == 1
            && rustix::process::geteuid().is_root()
            && matches!(
                sh.snap.kind(),
                rbuild_snapshot::Kind::Overlay { userxattr: false }
            );
        let (Some(source), true) = (copy.sources.first(), plain) else {
            return Ok(Planned::Copy(None));
        };
        let Some(rbuild_snapshot::MountPlan::Overlay { lowers, .. }) = view.plan() else {
            return Ok(Planned::Copy(None));
        };
        let dest = join_workdir(&self.workdir, &copy.dest);
        let flag = sh.cancel.flag();
        let plan = super::copyplan::Plan {
            context: sh.context,
            source,
            dest: &dest,
            chown,
            chmod: copy.chmod.as_deref(),
            merged: root,
            lowers: &lowers,
            dir_time: dir_time(sh),
            cancel: flag.as_ref(),
        };
        let opts = sh.write_options();
        let key = match plan.index_key(&opts) {
            Ok(k) => k,
            Err(Stop::NotPlain) => return Ok(Planned::Copy(None)),
            Err(Stop::Failed(e)) => return Err(e),
        };
        let remembered = std::fs::read_to_string(index_path(sh.images.store(), &key))
            .ok()
            .and_then(|s| s.trim().parse::<rbuild_digest::Digest>().ok());
        if remembered.is_some_and(|d| sh.snap.has_layer(&d)) {
            match plan.layer(&opts) {
                Ok(info) if sh.snap.has_layer(&info.diff_id) => return Ok(Planned::Found(info)),
                Ok(_) | Err(Stop::NotPlain) => {}
                Err(Stop::Failed(e)) => return Err(e),
            }
        }
        if !sh.snap.adopts(&opts) {
            return Ok(Planned::Copy(Some(key)));
        }
        match plan.write(&opts) {
            Ok(layer) => {
                tracing::debug!(
                    "COPY {source} {}: written and hashed in one walk: {}",
                    dest.display(),
                    layer.diff_id
                );
                Ok(Planned::Written(layer, key))
            }
            // The index key's walk found the plain case a moment ago: the sources changed since.
            Err(Stop::NotPlain) => Err(BuildError::Task(format!(
                "COPY {source}: the source changed while it was copied; build again"
            ))),
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    /// ADD of a URL: downloaded into a scratch dir, then copied as a local file would be.
    fn add_url(
        &self,
        sh: &Shared<'_>,
        root: &Path,
        url: &str,
        chown: Option<(u32, u32)>,
    ) -> Result<(), BuildError> {
        let copy = &self.copy;
        let name = match crate::fetch::file_name(url) {
            Some(n) => n,
            None if !copy.dest.ends_with('/') => "download".to_string(),
            None => {
                return Err(BuildError::Request(format!(
                    "cannot determine a file name from {url}; give a destination file name"
                )))
            }
        };
        let scratch = sh.images.store().temp_dir("add-url")?;
        let flag = sh.cancel.flag();
        let flag = flag.as_ref();
        let checksum = self.add.as_ref().and_then(|a| a.checksum.as_deref());
        crate::fetch::fetch(sh.registry, url, scratch.path(), &name, checksum)
            .map_err(|e| BuildError::Request(e.to_string()))?;
        let req = rbuild_context::CopyRequest {
            src_root: scratch.path(),
            ignore: None,
            sources: std::slice::from_ref(&name),
            dest: &copy.dest,
            workdir: &self.workdir,
            dest_root: root,
            chown,
            chmod: copy.chmod.as_deref(),
            parents: false,
            exclude: &[],
            keep_ownership: false,
            cancel: Some(flag),
        };
        rbuild_context::copy(&req)?;
        Ok(())
    }
}

/// What [`CopyOp::plan_layer`] found.
enum Planned {
    /// The layer is in the store: nothing to copy.
    Found(rbuild_layer::LayerInfo),
    /// Copy and commit, then remember the layer under this index key (when there is one).
    Copy(Option<rbuild_digest::Digest>),
    /// Written into the view as this layer: commit it as that, then remember it under the key.
    Written(rbuild_layer::LayerInfo, rbuild_digest::Digest),
}

/// Where the layer a plain COPY of the entries with this `copyplan` index key made is noted.
fn index_path(store: &rbuild_store::Store, key: &rbuild_digest::Digest) -> PathBuf {
    store
        .root()
        .join(crate::cache::COPY_PLAN_DIR)
        .join(key.hex())
}

/// Notes `diff_id` under `key`, written whole or not at all (temp file, then rename).
fn remember_layer(
    store: &rbuild_store::Store,
    key: &rbuild_digest::Digest,
    diff_id: &rbuild_digest::Digest,
) -> Result<(), BuildError> {
    let path = index_path(store, key);
    let dir = path.parent().unwrap_or(store.root());
    std::fs::create_dir_all(dir).map_err(|e| BuildError::io(dir, e))?;
    let scratch = store.temp_dir(crate::cache::COPY_PLAN_DIR)?;
    let tmp = scratch.path().join("entry");
    std::fs::write(&tmp, diff_id.to_string()).map_err(|e| BuildError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| BuildError::io(&path, e))
}

/// The time COPY and ADD give the directories on the way to their destination (created, or
/// changed by what was added into them), and WORKDIR the ones it creates and their parents, when
/// `SOURCE_DATE_EPOCH` is not set: the Unix epoch.
/// Stamping them with the build's time (as BuildKit does) would make two runners' layers differ
/// for the same inputs; with a fixed time the layer is a function of its inputs alone.
pub(crate) const FIXED_DIR_TIME: i64 = 0;

/// The time of the directories a file op creates: `SOURCE_DATE_EPOCH`, else [`FIXED_DIR_TIME`].
fn dir_time(sh: &Shared<'_>) -> i64 {
    sh.req.source_date_epoch.unwrap_or(FIXED_DIR_TIME)
}

/// Sets the mtime of `/` and each directory on the path to `dest` (itself included when it is
/// one) to `when`, resolving every component inside `root`.
fn stamp_parents(root: &Path, dest: &Path, when: i64) -> Result<(), BuildError> {
    let mut prefix = PathBuf::from("/");
    let mut dirs = vec![prefix.clone()];
    for c in dest.components() {
        if let std::path::Component::Normal(n) = c {
            prefix.push(n);
            dirs.push(prefix.clone());
        }
    }
    let ts = crate::fsutil::timestamps((when, 0), (when, 0));
    for d in dirs {
        let Ok(real) = crate::fsutil::real_path_in_root(root, &d) else {
            break;
        };
        match std::fs::symlink_metadata(&real) {
            Ok(m) if m.is_dir() => {}
            _ => break,
        }
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &real,
            &ts,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| BuildError::io(&real, e.into()))?;
    }
    Ok(())
}

/// ADD of a local tar: extracted into a scratch dir, then copied with the archive's ownership.
fn extract(
    sh: &Shared<'_>,
    root: &Path,
    archive: &Path,
    dest: &str,
    workdir: &str,
    chown: Option<(u32, u32)>,
) -> Result<(), BuildError> {
    let scratch = sh.images.store().temp_dir("add-extract")?;
    let flag = sh.cancel.flag();
    let flag = flag.as_ref();
    set_root_mode(scratch.path())?;
    let f = std::fs::File::open(archive).map_err(|e| BuildError::io(archive, e))?;
    let r = rbuild_layer::compress::decompress(f).map_err(|e| BuildError::io(archive, e))?;
    rbuild_layer::apply_layer(
        scratch.path(),
        r,
        &rbuild_layer::ApplyOptions {
            same_owner: is_root(),
            id_map: None,
        },
    )?;
    let dest_abs = join_workdir(workdir, dest);
    // --chown owns the directories ADD creates for the archive, not its entries.
    if chown.is_some() {
        mkdir_all_in_root(root, &dest_abs, chown)?;
    }
    let req = rbuild_context::CopyRequest {
        src_root: scratch.path(),
        ignore: None,
        sources: &[".".to_string()],
        dest: &format!("{}/", dest_abs.display()),
        workdir,
        dest_root: root,
        chown: None,
        chmod: None,
        parents: false,
        exclude: &[],
        keep_ownership: true,
        cancel: Some(flag),
    };
    // As docker's untar: archive entries replace what is in their way.
    rbuild_context::copy_replacing(&req)?;
    Ok(())
}

/// The writable path of a view opened for a file step.
fn view_root(view: &View<'_>) -> Result<PathBuf, BuildError> {
    view.path()
        .map(Path::to_path_buf)
        .ok_or_else(|| BuildError::Task("snapshot view has no writable path".into()))
}

pub(crate) fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@")
}

fn write_heredocs(dir: &Path, docs: &[Heredoc]) -> Result<(), BuildError> {
    for h in docs {
        let p = dir.join(&h.name);
        let mut f = std::fs::File::create(&p).map_err(|e| BuildError::io(&p, e))?;
        f.write_all(h.body().as_bytes())
            .map_err(|e| BuildError::io(&p, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| BuildError::io(&p, e))?;
    }
    Ok(())
}

fn set_root_mode(p: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| BuildError::io(p, e))
}
