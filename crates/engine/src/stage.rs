//! Dispatch of one stage's instructions: each step either changes the image config (an empty layer in
//! the history) or changes the rootfs, whose changed paths become a layer in the content store.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dockerfile::{Base, Command, Heredoc, Instruction, InstructionKind, Plan, PlanOptions, Scope};
use image::config::{HealthConfig, History, ImageConfig};
use image::{Images, LayerDesc};

use crate::builder::stage_label;
use crate::fsutil::is_root;
use crate::fsutil::{join_workdir, mkdir_all_in_root};
use crate::progress::{Event, ProgressSink, StepId};
use crate::view::View;
use crate::BuildError;

/// The default PATH BuildKit gives a stage whose base sets none.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A stage while it runs and after it finished: its config and layers so far. Its filesystem is
/// the layer chain; steps see it through snapshots ([`View`]).
#[derive(Clone)]
pub struct StageState {
    /// The image config being built.
    pub config: ImageConfig,
    /// Layers of the image, base layers first.
    pub layers: Vec<LayerDesc>,
    /// Whether CMD was set in this stage (ENTRYPOINT resets an inherited CMD only).
    pub(crate) cmd_set: bool,
}

impl StageState {
    /// The layer chain (diff ids, base first) the stage's filesystem is made of.
    pub fn chain(&self) -> Vec<digest::Digest> {
        self.layers.iter().map(|l| l.diff_id).collect()
    }
}

/// Everything a stage needs from the build, borrowed for the build's duration.
pub struct StageRun<'a> {
    pub images: &'a Images,
    pub plan: &'a Plan,
    pub opts: &'a PlanOptions,
    pub file_name: &'a str,
    pub context: &'a context::Context,
    pub progress: &'a dyn ProgressSink,
    pub source_date_epoch: Option<i64>,
    pub step_counter: usize,
    pub total_steps: usize,
    pub finished: BTreeMap<usize, StageState>,
    /// `--pull`: re-resolve base images in their registry even when they are local.
    pub pull: bool,
    /// How to reach registries for base images.
    pub registry: &'a crate::pull::RegistryOptions,
    /// Snapshots of layer chains for the steps that touch files.
    pub snap: &'a snapshot::Snapshotter,
    /// Runs RUN steps.
    pub sandbox: &'a crate::run::Sandboxes,
    /// The build request (secrets, network default).
    pub req: &'a crate::BuildRequest,
    /// Cache keys of this build's steps (hits and new records), for `--cache-to`.
    pub cache_keys: Vec<digest::Digest>,
}

/// RFC 3339 timestamp for history and config `created`: SOURCE_DATE_EPOCH when set, else now.
pub fn timestamp(source_date_epoch: Option<i64>) -> String {
    let t = match source_date_epoch {
        Some(s) => {
            time::OffsetDateTime::from_unix_timestamp(s).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        }
        None => time::OffsetDateTime::now_utc(),
    };
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

impl<'a> StageRun<'a> {
    pub(crate) fn step_error(
        &self,
        instr: &Instruction,
        message: impl std::fmt::Display,
    ) -> BuildError {
        BuildError::Step {
            file: self.file_name.to_string(),
            line: instr.line,
            step: format!("{}/{}", self.step_counter, self.total_steps),
            text: instr.original.clone(),
            message: message.to_string(),
        }
    }

    /// Runs stage `i` to completion.
    pub fn run_stage(&mut self, i: usize) -> Result<StageState, BuildError> {
        let stage = &self.plan.stages[i];
        let mut state = self.base_state(i)?;
        // The default PATH goes in before the scope is made from the env, so `$PATH` and RUN
        // steps see it as in docker.
        if !state.config.env().iter().any(|e| e.starts_with("PATH=")) {
            state.config.env_mut().insert(0, DEFAULT_PATH.to_string());
        }
        let base_env = state.config.env().to_vec();
        let mut scope = Scope::new(self.plan, i, self.opts, &base_env);
        // ONBUILD triggers of the base run first, then the image no longer carries them.
        let triggers = state.config.take_onbuild();
        for trigger in triggers {
            let df = dockerfile::parse(self.file_name, &trigger)?;
            for mut instr in df.instructions {
                instr.line = stage.line;
                self.step(i, &mut state, &mut scope, &instr)?;
            }
        }
        for instr in &stage.instructions {
            self.step(i, &mut state, &mut scope, instr)?;
        }
        Ok(state)
    }

    fn base_state(&mut self, i: usize) -> Result<StageState, BuildError> {
        let stage = &self.plan.stages[i];
        match &stage.base {
            Base::Scratch => {
                let platform = match &stage.platform {
                    Some(p) => dockerfile::Platform::parse(p).map_err(|e| {
                        BuildError::Request(format!(
                            "{}:{}: invalid platform {p:?}: {e}",
                            self.file_name, stage.line
                        ))
                    })?,
                    None => self.opts.target_platform.clone(),
                };
                // BuildKit's empty image for `scratch` has WorkingDir "/".
                let mut config = ImageConfig::empty(
                    &platform.os,
                    &platform.architecture,
                    platform.variant.as_deref(),
                );
                config.config.working_dir = Some("/".into());
                Ok(StageState {
                    config,
                    layers: Vec::new(),
                    cmd_set: false,
                })
            }
            Base::Stage(j) => {
                let parent = self.finished.get(j).ok_or_else(|| {
                    BuildError::Task(format!("stage {j} needed by stage {i} has not run"))
                })?;
                let mut config = parent.config.clone();
                config.reset_for_child();
                Ok(StageState {
                    config,
                    layers: parent.layers.clone(),
                    cmd_set: false,
                })
            }
            Base::Image(name) => {
                let img = self
                    .resolve_image(name)
                    .map_err(|why| BuildError::BaseImage {
                        file: self.file_name.to_string(),
                        line: stage.line,
                        image: name.clone(),
                        why,
                    })?;
                let mut config = img.config.clone();
                config.reset_for_child();
                Ok(StageState {
                    config,
                    layers: img.layers.clone(),
                    cmd_set: false,
                })
            }
        }
    }

    /// The layer chain a `--from` names, stage or image, which is what the step reads of it.
    pub(crate) fn chain_of_from(
        &self,
        instr: &Instruction,
        from: &str,
    ) -> Result<Vec<digest::Digest>, BuildError> {
        Ok(match self.plan.resolve_from(from) {
            dockerfile::FromRef::Stage(j) => self
                .finished
                .get(&j)
                .ok_or_else(|| {
                    self.step_error(instr, format!("stage {from:?} has not been built"))
                })?
                .chain(),
            dockerfile::FromRef::Image(name) => self
                .resolve_image(&name)
                .map_err(|e| self.step_error(instr, e))?
                .layers
                .iter()
                .map(|l| l.diff_id)
                .collect(),
        })
    }

    fn resolve_image(&self, name: &str) -> Result<image::LocalImage, String> {
        if let Some(rest) = name.strip_prefix("oci-layout://") {
            let (path, tag) = split_layout_ref(rest);
            let loaded =
                image::import::load(self.images, Path::new(path)).map_err(|e| e.to_string())?;
            let pick = loaded.iter().find(|l| match tag {
                Some(t) => l.names.iter().any(|n| n.tag() == Some(t)),
                None => true,
            });
            return pick.map(|l| l.image.clone()).ok_or_else(|| {
                format!(
                    "no image tagged {:?} in the OCI layout {path}",
                    tag.unwrap_or("")
                )
            });
        }
        // As docker: a local image is used without network unless --pull asks to re-resolve.
        if !self.pull {
            if let Ok(img) = self.images.resolve(name) {
                return Ok(img);
            }
        }
        crate::pull::pull_base(
            self.images,
            self.registry,
            name,
            &self.opts.target_platform,
            self.progress,
        )
        .map_err(|e| e.to_string())
    }

    fn step(
        &mut self,
        stage: usize,
        state: &mut StageState,
        scope: &mut Scope,
        raw: &Instruction,
    ) -> Result<(), BuildError> {
        self.step_counter += 1;
        let id = StepId {
            index: self.step_counter,
            total: self.total_steps,
            stage: stage_label(self.plan, stage),
            line: raw.line,
            text: raw.original.clone(),
        };
        self.progress.event(Event::StepStarted(id.clone()));
        let started = Instant::now();
        let instr = scope.expand(raw)?;
        let key = self.cache_key(state, scope, &instr)?;
        let hit = match &key {
            Some(k) if !self.req.no_cache => self.cache_get(k),
            _ => None,
        };
        if let Some(cached) = hit {
            if let Some(k) = key {
                self.cache_keys.push(k);
            }
            *state = cached;
            scope.apply(&instr);
            self.progress.event(Event::StepCached(id));
            return Ok(());
        }
        self.dispatch(&id, state, scope, raw, &instr)?;
        if let Some(k) = &key {
            match self.cache_put(k, state) {
                Ok(()) => self.cache_keys.push(*k),
                Err(e) => self.progress.event(Event::Warning {
                    message: format!("step {}: not cached: {e}", id.index),
                }),
            }
        }
        scope.apply(&instr);
        self.progress.event(Event::StepDone {
            step: id,
            elapsed: started.elapsed(),
        });
        Ok(())
    }

    fn history(&self, created_by: String, empty_layer: bool) -> History {
        History {
            created: Some(timestamp(self.source_date_epoch)),
            created_by: Some(created_by),
            author: None,
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer: if empty_layer { Some(true) } else { None },
        }
    }

    fn meta(&self, state: &mut StageState, created_by: String) {
        let h = self.history(created_by, true);
        state.config.history.push(h);
    }

    fn dispatch(
        &mut self,
        id: &StepId,
        state: &mut StageState,
        scope: &Scope,
        raw: &Instruction,
        instr: &Instruction,
    ) -> Result<(), BuildError> {
        let c = &mut state.config;
        match &instr.kind {
            InstructionKind::From(_) => {}
            InstructionKind::Arg(args) => {
                // History shows each declared default (expanded), never a --build-arg override.
                let raw_args = match &raw.kind {
                    InstructionKind::Arg(r) => r.as_slice(),
                    _ => &[],
                };
                let text = args
                    .iter()
                    .zip(raw_args)
                    .map(|(a, r)| match (&r.default, &a.default) {
                        (Some(d), Some(v)) if d.contains('$') => format!("{}={}", a.name, v),
                        (Some(d), _) => format!("{}={}", a.name, d),
                        (None, _) => a.name.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                self.meta(state, format!("ARG {text}"));
            }
            InstructionKind::Env(kvs) => {
                for kv in kvs {
                    c.set_env(&kv.key, &kv.value);
                }
                let text = kvs
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect::<Vec<_>>()
                    .join(" ");
                self.meta(state, format!("ENV {text}"));
            }
            InstructionKind::Label(kvs) => {
                for kv in kvs {
                    c.set_label(&kv.key, &kv.value);
                }
                let text = kvs
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect::<Vec<_>>()
                    .join(" ");
                self.meta(state, format!("LABEL {text}"));
            }
            InstructionKind::Maintainer(m) => {
                c.author = Some(m.clone());
                self.meta(state, format!("MAINTAINER {m}"));
            }
            InstructionKind::Expose(ports) => {
                let mut keys = Vec::new();
                for key in ports.iter().flat_map(|p| dockerfile::expose_keys(p)) {
                    c.expose(&key);
                    keys.push(key);
                }
                keys.sort();
                keys.dedup();
                let text = keys
                    .iter()
                    .map(|k| format!("{k}:{{}}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                self.meta(state, format!("EXPOSE map[{text}]"));
            }
            InstructionKind::Volume(vols) => {
                for v in vols {
                    c.add_volume(v);
                }
                self.meta(state, format!("VOLUME [{}]", vols.join(" ")));
            }
            InstructionKind::User(u) => {
                c.config.user = Some(u.clone());
                self.meta(state, format!("USER {u}"));
            }
            InstructionKind::StopSignal(s) => {
                c.config.stop_signal = Some(s.clone());
                self.meta(state, format!("STOPSIGNAL {s}"));
            }
            InstructionKind::Shell(sh) => {
                c.config.shell = Some(sh.clone());
                self.meta(state, format!("SHELL [{}]", sh.join(" ")));
            }
            InstructionKind::Cmd(cmd) => {
                let (argv, escaped) = self.argv(c, cmd);
                // Docker 20.10 records an empty exec form (`CMD []`) as null.
                c.config.cmd = (!argv.is_empty()).then(|| argv.clone());
                if escaped {
                    c.config.args_escaped = Some(true);
                }
                state.cmd_set = true;
                self.meta(state, format!("CMD {}", go_quoted_list(&argv)));
            }
            InstructionKind::Entrypoint(cmd) => {
                let (argv, escaped) = self.argv(c, cmd);
                c.config.entrypoint = (!argv.is_empty()).then(|| argv.clone());
                if escaped {
                    c.config.args_escaped = Some(true);
                }
                if !state.cmd_set {
                    c.config.cmd = None;
                }
                self.meta(state, format!("ENTRYPOINT {}", go_quoted_list(&argv)));
            }
            InstructionKind::Healthcheck(hc) => {
                let health = match hc {
                    dockerfile::Healthcheck::None => HealthConfig {
                        test: Some(vec!["NONE".into()]),
                        ..Default::default()
                    },
                    dockerfile::Healthcheck::Check {
                        command,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let test = match command {
                            Command::Exec(v) => {
                                let mut t = vec!["CMD".to_string()];
                                t.extend(v.iter().cloned());
                                t
                            }
                            Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                        };
                        HealthConfig {
                            test: Some(test),
                            interval: interval.map(nanos),
                            timeout: timeout.map(nanos),
                            start_period: start_period.map(nanos),
                            start_interval: start_interval.map(nanos),
                            retries: *retries,
                        }
                    }
                };
                let text = format!("HEALTHCHECK {}", go_health(&health));
                c.config.healthcheck = Some(health);
                self.meta(state, text);
            }
            InstructionKind::Onbuild(inner) => {
                // BuildKit records ONBUILD in the config only, with no history entry.
                c.add_onbuild(inner.original.trim());
            }
            InstructionKind::Workdir(w) => {
                let wd = join_workdir(c.working_dir(), w);
                let wd_s = wd.display().to_string();
                c.config.working_dir = Some(wd_s.clone());
                // BuildKit 0.8 makes no directory (and no layer) for `WORKDIR /`.
                if wd_s == "/" {
                    self.meta(state, format!("WORKDIR {wd_s}"));
                    return Ok(());
                }
                let view = View::open(self.snap, self.images.store(), &state.chain())?;
                let root = view_root(&view)?;
                let owner = self
                    .user_ids(state, &root)
                    .map_err(|e| self.step_error(instr, e))?;
                mkdir_all_in_root(&root, &wd, owner).map_err(|e| self.step_error(instr, e))?;
                // BuildKit keeps WORKDIR's layer even when the directory already existed.
                self.commit_view(state, view, &[], format!("WORKDIR {wd_s}"), false)?;
            }
            InstructionKind::Copy(copy) => {
                self.copy(state, instr, copy, None)?;
            }
            InstructionKind::Add(add) => {
                self.copy(state, instr, &add.copy, Some(add))?;
            }
            InstructionKind::Run(run) => {
                self.run_step(id, state, instr, run, scope)?;
            }
        }
        Ok(())
    }

    /// Shell form wraps the command in the stage's SHELL, as docker does.
    fn argv(&self, c: &ImageConfig, cmd: &Command) -> (Vec<String>, bool) {
        match cmd {
            Command::Exec(v) => (v.clone(), false),
            Command::Shell(s) => {
                let mut argv = shell_of(c);
                argv.push(s.clone());
                (argv, true)
            }
        }
    }

    /// uid/gid of the stage's USER, for directories WORKDIR creates (as BuildKit chowns them).
    fn user_ids(&self, state: &StageState, root: &Path) -> Result<Option<(u32, u32)>, BuildError> {
        match state.config.config.user.as_deref() {
            None | Some("") => Ok(None),
            Some(u) => Ok(Some(context::passwd::resolve_chown(root, u)?)),
        }
    }

    /// Commits a view as the step's layer; `allow_empty` marks an unchanged filesystem as an empty
    /// layer in the history (RUN), otherwise the (empty) layer is kept as docker does for COPY.
    pub(crate) fn commit_view(
        &self,
        state: &mut StageState,
        view: View<'_>,
        exclude: &[PathBuf],
        created_by: String,
        allow_empty: bool,
    ) -> Result<(), BuildError> {
        let wopts = layer::WriteOptions {
            source_date_epoch: self.source_date_epoch,
            id_map: self.sandbox.id_map(),
            ..Default::default()
        };
        let c = view.commit(&wopts, exclude)?;
        if let Some(first) = c.unmapped.first() {
            self.progress.event(crate::progress::Event::Warning {
                message: format!(
                    "{created_by}: {} file(s) (first: /{first}) are owned by host ids outside the \
                     build's user namespace and were recorded as 65534 (nobody)",
                    c.unmapped.len()
                ),
            });
        }
        if c.empty && allow_empty {
            self.meta(state, created_by);
            return Ok(());
        }
        state.layers.push(LayerDesc {
            diff_id: c.diff_id,
            size: c.size,
        });
        state.config.rootfs.diff_ids.push(c.diff_id);
        let h = self.history(created_by, false);
        state.config.history.push(h);
        Ok(())
    }

    fn copy(
        &mut self,
        state: &mut StageState,
        instr: &Instruction,
        copy: &dockerfile::Copy,
        add: Option<&dockerfile::Add>,
    ) -> Result<(), BuildError> {
        let verb = if add.is_some() { "ADD" } else { "COPY" };
        let store = self.images.store();
        let mut view = View::open(self.snap, store, &state.chain())?;
        let root = view_root(&view)?;
        let chown = match copy.chown.as_deref() {
            Some(spec) => Some(
                context::passwd::resolve_chown(&root, spec)
                    .map_err(|e| self.step_error(instr, e))?,
            ),
            None => None,
        };
        let workdir = state.config.working_dir().to_string();

        if !copy.heredocs.is_empty() {
            // Heredoc sources become files in a scratch directory named after the heredoc.
            let dir = store.temp_dir("heredoc")?;
            write_heredocs(dir.path(), &copy.heredocs)?;
            let sources: Vec<String> = copy.heredocs.iter().map(|h| h.name.clone()).collect();
            let req = context::CopyRequest {
                src_root: dir.path(),
                ignore: None,
                sources: &sources,
                dest: &copy.dest,
                workdir: &workdir,
                dest_root: &root,
                chown,
                chmod: copy.chmod.as_deref(),
                parents: false,
                exclude: &copy.exclude,
                keep_ownership: false,
            };
            let out = context::copy(&req).map_err(|e| self.step_error(instr, e))?;
            view.record_owner(&out);
        } else {
            // The source tree: the context, another stage, or an image (`--from`).
            let mut _from_view = None;
            let from_root: Option<PathBuf> = match &copy.from {
                None => None,
                Some(from) => {
                    let chain = self.chain_of_from(instr, from)?;
                    let v = View::open(self.snap, store, &chain)?;
                    let r = view_root(&v)?;
                    _from_view = Some(v);
                    Some(r)
                }
            };
            let (src_root, ignore): (&Path, Option<&context::ignore::IgnoreMatcher>) =
                match &from_root {
                    Some(r) => (r.as_path(), None),
                    None => (self.context.root(), Some(self.context.ignore())),
                };
            // ADD: local archives are extracted, URLs fetched; everything else is a plain copy.
            let mut plain = Vec::new();
            for src in &copy.sources {
                if add.is_some() && (src.starts_with("http://") || src.starts_with("https://")) {
                    self.add_url(&root, src, copy, add, chown, &workdir)
                        .map_err(|e| self.step_error(instr, e))?;
                    continue;
                }
                let unpack = add.map(|a| a.unpack.unwrap_or(true)).unwrap_or(false);
                if unpack && from_root.is_none() {
                    // Archives among a source's matches (wildcards too) are extracted.
                    let parts = crate::addsrc::classify(self.context, src)
                        .map_err(|e| self.step_error(instr, e))?;
                    for part in parts {
                        match part {
                            crate::addsrc::AddSource::Archive(p) => self
                                .extract(&root, &p, &copy.dest, &workdir, chown)
                                .map_err(|e| self.step_error(instr, e))?,
                            crate::addsrc::AddSource::Plain(s) => plain.push(s),
                        }
                    }
                    continue;
                }
                plain.push(src.clone());
            }
            if !plain.is_empty() {
                let req = context::CopyRequest {
                    src_root,
                    ignore,
                    sources: &plain,
                    dest: &copy.dest,
                    workdir: &workdir,
                    dest_root: &root,
                    chown,
                    chmod: copy.chmod.as_deref(),
                    parents: copy.parents,
                    exclude: &copy.exclude,
                    keep_ownership: copy.from.is_some() && chown.is_none(),
                };
                let out = context::copy(&req).map_err(|e| self.step_error(instr, e))?;
                view.record_owner(&out);
            }
        }
        let shown = if copy.heredocs.is_empty() {
            format!("{} {} {}", verb, copy.sources.join(" "), copy.dest)
        } else {
            instr.original.lines().next().unwrap_or("").to_string()
        };
        self.commit_view(state, view, &[], format!("{shown} # buildkit"), false)
    }

    /// ADD of a URL: downloaded into a scratch dir, then copied as a local file would be.
    fn add_url(
        &self,
        root: &Path,
        url: &str,
        copy: &dockerfile::Copy,
        add: Option<&dockerfile::Add>,
        chown: Option<(u32, u32)>,
        workdir: &str,
    ) -> Result<(), BuildError> {
        let name = match crate::fetch::file_name(url) {
            Some(n) => n,
            None if !copy.dest.ends_with('/') => "download".to_string(),
            None => {
                return Err(BuildError::Request(format!(
                    "cannot determine a file name from {url}; give a destination file name"
                )))
            }
        };
        let scratch = self.images.store().temp_dir("add-url")?;
        let checksum = add.and_then(|a| a.checksum.as_deref());
        crate::fetch::fetch(url, scratch.path(), &name, checksum)
            .map_err(|e| BuildError::Request(e.to_string()))?;
        let req = context::CopyRequest {
            src_root: scratch.path(),
            ignore: None,
            sources: std::slice::from_ref(&name),
            dest: &copy.dest,
            workdir,
            dest_root: root,
            chown,
            chmod: copy.chmod.as_deref(),
            parents: false,
            exclude: &[],
            keep_ownership: false,
        };
        context::copy(&req)?;
        Ok(())
    }

    /// ADD of a local tar: extracted into a scratch dir, then copied with the archive's ownership.
    fn extract(
        &self,
        root: &Path,
        archive: &Path,
        dest: &str,
        workdir: &str,
        chown: Option<(u32, u32)>,
    ) -> Result<(), BuildError> {
        let scratch = self.images.store().temp_dir("add-extract")?;
        set_root_mode(scratch.path())?;
        let f = std::fs::File::open(archive).map_err(|e| BuildError::io(archive, e))?;
        let r = layer::compress::decompress(f).map_err(|e| BuildError::io(archive, e))?;
        layer::apply_layer(
            scratch.path(),
            r,
            &layer::ApplyOptions {
                same_owner: is_root(),
                id_map: None,
            },
        )?;
        let dest_abs = join_workdir(workdir, dest);
        // --chown owns the directories ADD creates for the archive, not its entries.
        if chown.is_some() {
            mkdir_all_in_root(root, &dest_abs, chown)?;
        }
        let req = context::CopyRequest {
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
        };
        // As docker's untar: archive entries replace what is in their way.
        context::copy_replacing(&req)?;
        Ok(())
    }
}

/// The writable path of a view opened for a file step.
fn view_root(view: &View<'_>) -> Result<PathBuf, BuildError> {
    view.path()
        .map(Path::to_path_buf)
        .ok_or_else(|| BuildError::Task("snapshot view has no writable path".into()))
}

/// The stage's SHELL, or docker's default, for shell-form commands.
pub(crate) fn shell_of(c: &ImageConfig) -> Vec<String> {
    c.config
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
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

fn split_layout_ref(rest: &str) -> (&str, Option<&str>) {
    // oci-layout://PATH[:TAG] — the tag is after the last ':' that follows the last '/'.
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    }
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// BuildKit prints the health config with Go's `%v` of a struct pointer: `&{["CMD" "x"] "5s" "0s" "0s" '\x00'}`.
fn go_health(h: &HealthConfig) -> String {
    let d = |n: Option<i64>| format!("{:?}", go_duration(n.unwrap_or(0)));
    let mut parts = vec![
        go_quoted_list(h.test.as_deref().unwrap_or(&[])),
        d(h.interval),
        d(h.timeout),
        d(h.start_period),
    ];
    if h.start_interval.is_some() {
        parts.push(d(h.start_interval));
    }
    let r = h.retries.unwrap_or(0);
    parts.push(match char::from_u32(r) {
        Some(c) if !c.is_control() && r != 0 => format!("'{c}'"),
        _ => format!("'\\x{r:02x}'"),
    });
    format!("&{{{}}}", parts.join(" "))
}

/// Go's `time.Duration.String()`: `1h2m3s`, `1.5s`, `500ms`, `0s`.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", trim_frac(u as f64 / 1e3))
    } else if u < 1_000_000_000 {
        format!("{}ms", trim_frac(u as f64 / 1e6))
    } else {
        let total_s = u / 1_000_000_000;
        let frac = u % 1_000_000_000;
        let (h, m, s) = (total_s / 3600, (total_s % 3600) / 60, total_s % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if frac == 0 {
            out.push_str(&format!("{s}s"));
        } else {
            let f = format!("{frac:09}");
            out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
        }
        out
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

fn trim_frac(v: f64) -> String {
    let s = format!("{v:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Go's `%q`-list formatting used by BuildKit in history: `["a" "b"]`.
fn go_quoted_list(items: &[String]) -> String {
    let inner = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ");
    format!("[{inner}]")
}

fn set_root_mode(p: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| BuildError::io(p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases = [
            (0, "0s"),
            (5_000_000_000, "5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (1_500_000_000, "1.5s"),
            (500_000_000, "500ms"),
            (1_500, "1.5µs"),
            (7, "7ns"),
        ];
        for (ns, want) in cases {
            assert_eq!(go_duration(ns), want, "{ns}");
        }
    }

    #[test]
    fn health_history_matches_buildkit() {
        let h = HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), "true".into()]),
            interval: Some(5_000_000_000),
            timeout: Some(3_000_000_000),
            retries: Some(2),
            ..Default::default()
        };
        assert_eq!(
            go_health(&h),
            r#"&{["CMD-SHELL" "true"] "5s" "3s" "0s" '\x02'}"#
        );
    }
}
