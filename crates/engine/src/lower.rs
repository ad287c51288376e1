//! Lowering: the front end's plan becomes a graph of ops before anything runs, as BuildKit's
//! Dockerfile front end turns a Dockerfile into LLB.
//!
//! Everything Dockerfile-specific ends here: ARG and ENV scoping and word expansion, ONBUILD
//! triggers (lowered once the base image is resolved, so they are ordinary steps), the image
//! config each instruction leaves (config-only instructions are applied here: none depends on a
//! step's result), shell form, USER and WORKDIR as later steps see them, and the history text.
//! Base images (and `--from` images) are resolved here, pulling them when they are not local,
//! because their config shapes the stage. The graph that comes out carries only ops.
//!
//! Every stage has a platform (`FROM --platform`, else its parent stage's, else the target's):
//! its base is resolved for that platform (a local image of another platform is never used: it
//! is pulled for the right one, or the stage fails naming both), and its RUN steps carry it, so
//! they run under emulation when foreign and are cached per platform. A multi-platform build
//! lowers one plan per target platform into the same graph ([`lower_platforms`]).

use std::collections::HashMap;
use std::path::Path;

use rbuild_digest::Digest;
use rbuild_dockerfile::{
    Base, Command, Instruction, InstructionKind, NetworkMode, Plan, PlanOptions, Platform, Scope,
};
use rbuild_image::config::{History, ImageConfig};
use rbuild_image::{Images, LocalImage};

use crate::fsutil::join_workdir;
use crate::graph::{Graph, Step, VertexId};
use crate::key::Key;
use crate::meta::{self, Effect, StageConfig};
use crate::ops::{ConfigOp, CopyOp, ExecOp, FileOp, Op, SourceOp};
use crate::progress::{ProgressSink, StepId};
use crate::BuildError;

/// What lowering needs from the build besides the plan.
pub(crate) struct LowerEnv<'a> {
    pub images: &'a Images,
    pub registry: &'a crate::transfer::RegistryOptions,
    pub progress: &'a dyn ProgressSink,
    /// `--pull`: re-resolve base images in their registry even when they are local.
    pub pull: bool,
    /// `--network` default for RUN steps.
    pub network: Option<&'a str>,
    /// Identifies the Dockerfile across builds, for step lineages (see `explain`).
    pub dockerfile_id: &'a str,
}

/// A stage after lowering.
#[derive(Clone)]
pub(crate) struct LoweredStage {
    /// Its final config (history entries of this build have no time yet).
    pub config: StageConfig,
    /// The vertex whose result is the stage's filesystem.
    pub fs: VertexId,
    /// The vertex of the stage's last step (the end of the stage, for ordering).
    pub last: VertexId,
    /// History entries this build added: their index in `config.history`, and the vertex whose
    /// result carries their time (`None`: config-only, the build's time).
    pub slots: Vec<Slot>,
    /// The platform the stage's filesystem is for (`FROM --platform`, else its parent stage's,
    /// else the target platform): what its RUN steps execute as and what its base is pulled for.
    pub platform: Platform,
}

/// A history entry this build adds: its index, and the vertex whose result carries its time.
pub(crate) type Slot = (usize, Option<VertexId>);

/// The graph and the target stage.
pub(crate) struct Lowered {
    pub graph: Graph,
    pub target: LoweredStage,
    /// Steps in the build, as numbered in events.
    pub total_steps: usize,
    /// Stage labels, in the order they were lowered.
    pub stages: Vec<String>,
    /// The last step of every stage lowered: solving them runs (and shows) every step.
    pub ends: Vec<VertexId>,
}

/// Lowers the stages the target needs, dependencies first.
pub(crate) fn lower(
    plan: &Plan,
    opts: &PlanOptions,
    env: &LowerEnv<'_>,
) -> Result<Lowered, BuildError> {
    let mut all = lower_platforms(&[(plan, opts)], env)?;
    let target = all
        .targets
        .pop()
        .ok_or_else(|| BuildError::Task("target stage was not lowered".into()))?;
    Ok(Lowered {
        graph: all.graph,
        target,
        total_steps: all.total_steps,
        stages: all.stages,
        ends: all.ends,
    })
}

/// Several target platforms lowered into one graph: identical ops on identical inputs (a
/// platform-independent COPY into `scratch`, a stage on `--platform=$BUILDPLATFORM`) are one
/// vertex, and every vertex is cached by a key that covers its platform where the result
/// depends on it.
pub(crate) struct LoweredPlatforms {
    pub graph: Graph,
    /// The target stage of each plan, in the order given.
    pub targets: Vec<LoweredStage>,
    /// Steps in the build, as numbered in events.
    pub total_steps: usize,
    /// Stage labels (prefixed with the platform when there are several), in lowering order.
    pub stages: Vec<String>,
    /// The last step of every stage lowered.
    pub ends: Vec<VertexId>,
}

/// Lowers one plan per target platform (each planned with its own `TARGET*` args) into one graph.
pub(crate) fn lower_platforms(
    plans: &[(&Plan, &PlanOptions)],
    env: &LowerEnv<'_>,
) -> Result<LoweredPlatforms, BuildError> {
    let mut graph = Graph::default();
    let mut images = HashMap::new();
    let mut steps = 0;
    let (mut targets, mut stages, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    let many = plans.len() > 1;
    for &(plan, opts) in plans {
        let mut cx = Lowering {
            plan,
            opts,
            env,
            graph,
            done: HashMap::new(),
            images,
            steps,
            prefix: many.then(|| opts.target_platform.to_string()),
        };
        let order = plan.build_order();
        for &i in &order {
            let stage = cx.stage(i)?;
            cx.done.insert(i, stage);
        }
        ends.extend(order.iter().filter_map(|i| cx.done.get(i)).map(|s| s.last));
        stages.extend(order.iter().map(|&i| cx.label(i)));
        let target = cx
            .done
            .remove(&plan.target)
            .ok_or_else(|| BuildError::Task("target stage was not lowered".into()))?;
        targets.push(target);
        graph = cx.graph;
        images = cx.images;
        steps = cx.steps;
    }
    for v in &mut graph.vertices {
        for s in &mut v.steps {
            s.id.total = steps;
        }
    }
    Ok(LoweredPlatforms {
        graph,
        targets,
        total_steps: steps,
        stages,
        ends,
    })
}

struct Lowering<'a, 'e> {
    plan: &'a Plan,
    opts: &'a PlanOptions,
    env: &'a LowerEnv<'e>,
    graph: Graph,
    done: HashMap<usize, LoweredStage>,
    /// Images resolved so far, by name as written and platform, and their source vertex.
    images: HashMap<(String, Platform), (LocalImage, VertexId)>,
    /// Steps numbered so far.
    steps: usize,
    /// The target platform, prefixed to stage labels when one build has several.
    prefix: Option<String>,
}

impl Lowering<'_, '_> {
    fn label(&self, i: usize) -> String {
        match &self.prefix {
            Some(p) => format!("{p} {}", stage_label(self.plan, i)),
            None => stage_label(self.plan, i),
        }
    }

    /// The platform of stage `i`: its `FROM --platform` (already expanded by the planner), else
    /// its parent stage's, else the build's target platform.
    fn stage_platform(&self, i: usize) -> Result<Platform, BuildError> {
        let stage = &self.plan.stages[i];
        if let Some(p) = &stage.platform {
            return Platform::parse(p).map_err(|e| {
                BuildError::Request(format!(
                    "{}:{}: FROM --platform: {e}",
                    self.plan.file_name, stage.line
                ))
            });
        }
        if let Base::Stage(j) = stage.base {
            if let Some(parent) = self.done.get(&j) {
                return Ok(parent.platform.clone());
            }
        }
        Ok(self.opts.target_platform.clone())
    }

    fn stage(&mut self, i: usize) -> Result<LoweredStage, BuildError> {
        let plan = self.plan;
        let stage = &plan.stages[i];
        let label = self.label(i);
        let platform = self.stage_platform(i)?;
        let (mut st, fs, slots) = self.base(i, &platform)?;
        // Docker gives a stage whose base sets no PATH the default one before the first
        // instruction, so `$PATH` expands to it and RUN steps find their commands.
        if !st.config.env().iter().any(|e| e.starts_with("PATH=")) {
            st.config
                .env_mut()
                .insert(0, meta::DEFAULT_PATH.to_string());
        }
        let mut scope = Scope::new(plan, i, self.opts, st.config.env());
        // ONBUILD triggers of the base run first, then the image no longer carries them.
        let mut instrs: Vec<Instruction> = Vec::new();
        for trigger in st.config.take_onbuild() {
            let df = rbuild_dockerfile::parse(&plan.file_name, &trigger)?;
            for mut instr in df.instructions {
                instr.line = stage.line;
                instrs.push(instr);
            }
        }
        instrs.extend(stage.instructions.iter().cloned());

        let mut out = LoweredStage {
            config: st.clone(),
            fs,
            last: fs,
            slots,
            platform: platform.clone(),
        };
        for (pos, raw) in instrs.iter().enumerate() {
            self.steps += 1;
            let instr = scope.expand(raw)?;
            let step = Step {
                id: StepId {
                    index: self.steps,
                    total: 0,
                    stage: label.clone(),
                    line: raw.line,
                    text: raw.original.clone(),
                },
                lineage: lineage(self.env.dockerfile_id, &label, pos),
                args: scope.used_args(),
            };
            match meta::apply(&mut st, raw, &instr) {
                Effect::History(text) => {
                    st.config.history.push(history(text, true));
                    out.slots.push((st.config.history.len() - 1, None));
                    out.last =
                        self.graph
                            .add(Op::Config(ConfigOp), vec![], vec![out.last], Some(step));
                }
                Effect::Silent => {
                    out.last =
                        self.graph
                            .add(Op::Config(ConfigOp), vec![], vec![out.last], Some(step));
                }
                Effect::NotConfig => {
                    let (op, mut extra) =
                        self.fs_op(&mut st, &scope, &instr, &step.id, &platform)?;
                    let created_by = op.created_by().to_string();
                    let mut inputs = vec![out.fs];
                    inputs.append(&mut extra);
                    let after = if out.last != out.fs {
                        vec![out.last]
                    } else {
                        vec![]
                    };
                    let v = self.graph.add(Op::from(op), inputs, after, Some(step));
                    st.config.history.push(history(created_by, false));
                    out.slots.push((st.config.history.len() - 1, Some(v)));
                    out.fs = v;
                    out.last = v;
                }
            }
            scope.apply(&instr);
        }
        out.config = st;
        Ok(out)
    }

    /// The stage's starting config, filesystem vertex and inherited history slots.
    fn base(
        &mut self,
        i: usize,
        platform: &Platform,
    ) -> Result<(StageConfig, VertexId, Vec<Slot>), BuildError> {
        let stage = &self.plan.stages[i];
        match &stage.base {
            Base::Scratch => {
                // BuildKit's empty image for `scratch` has WorkingDir "/".
                let mut config = ImageConfig::empty(
                    &platform.os,
                    &platform.architecture,
                    platform.variant.as_deref(),
                );
                config.config.working_dir = Some("/".into());
                let v = self.graph.add(
                    Op::Source(SourceOp {
                        name: "scratch".into(),
                        layers: Vec::new(),
                    }),
                    vec![],
                    vec![],
                    None,
                );
                Ok((
                    StageConfig {
                        config,
                        cmd_set: false,
                    },
                    v,
                    Vec::new(),
                ))
            }
            Base::Stage(j) => {
                let parent = self.done.get(j).ok_or_else(|| {
                    BuildError::Task(format!("stage {j} needed by stage {i} was not lowered"))
                })?;
                let mut config = parent.config.config.clone();
                config.reset_for_child();
                Ok((
                    StageConfig {
                        config,
                        cmd_set: false,
                    },
                    parent.fs,
                    parent.slots.clone(),
                ))
            }
            Base::Image(name) => {
                let (img, v) = self
                    .image(name, platform)
                    .map_err(|why| BuildError::BaseImage {
                        file: self.plan.file_name.clone(),
                        line: stage.line,
                        image: name.clone(),
                        why,
                    })?;
                let mut config = img.config.clone();
                config.reset_for_child();
                Ok((
                    StageConfig {
                        config,
                        cmd_set: false,
                    },
                    v,
                    Vec::new(),
                ))
            }
        }
    }

    /// The vertex of a `--from` (another stage's filesystem, or an image's).
    fn input_of(
        &mut self,
        from: &str,
        step: &StepId,
        platform: &Platform,
    ) -> Result<VertexId, BuildError> {
        let found = match self.plan.resolve_from(from) {
            rbuild_dockerfile::FromRef::Stage(j) => self
                .done
                .get(&j)
                .map(|s| s.fs)
                .ok_or_else(|| format!("stage {from:?} has not been built")),
            rbuild_dockerfile::FromRef::Image(name) => self.image(&name, platform).map(|(_, v)| v),
        };
        found.map_err(|message| BuildError::Step {
            file: self.plan.file_name.clone(),
            line: step.line,
            step: format!("{}", step.index),
            text: step.text.clone(),
            message,
        })
    }

    /// A file or exec op for `instr`, and the extra inputs it reads (`--from` chains).
    fn fs_op(
        &mut self,
        st: &mut StageConfig,
        scope: &Scope,
        instr: &Instruction,
        step: &StepId,
        platform: &Platform,
    ) -> Result<(FsOp, Vec<VertexId>), BuildError> {
        let c = &mut st.config;
        Ok(match &instr.kind {
            InstructionKind::Workdir(w) => {
                let wd = join_workdir(c.working_dir(), w);
                let wd_s = wd.display().to_string();
                c.config.working_dir = Some(wd_s.clone());
                let op = FileOp::Workdir {
                    path: wd,
                    user: c.config.user.clone().filter(|u| !u.is_empty()),
                    created_by: format!("WORKDIR {wd_s}"),
                };
                (FsOp::File(Box::new(op)), vec![])
            }
            InstructionKind::Copy(copy)
            | InstructionKind::Add(rbuild_dockerfile::Add { copy, .. }) => {
                let add = match &instr.kind {
                    InstructionKind::Add(a) => Some(a.clone()),
                    _ => None,
                };
                let verb = if add.is_some() { "ADD" } else { "COPY" };
                let shown = if copy.heredocs.is_empty() {
                    format!("{} {} {}", verb, copy.sources.join(" "), copy.dest)
                } else {
                    instr.original.lines().next().unwrap_or("").to_string()
                };
                let extra = match &copy.from {
                    Some(from) if copy.heredocs.is_empty() => {
                        vec![self.input_of(from, step, platform)?]
                    }
                    _ => vec![],
                };
                let mut copy = copy.clone();
                if copy.heredocs.is_empty() && extra.is_empty() {
                    copy.from = None;
                }
                let op = FileOp::Copy(Box::new(CopyOp {
                    add: add.map(|mut a| {
                        a.copy = rbuild_dockerfile::Copy::default();
                        a
                    }),
                    copy,
                    workdir: c.working_dir().to_string(),
                    created_by: format!("{shown} # buildkit"),
                }));
                (FsOp::File(Box::new(op)), extra)
            }
            InstructionKind::Run(run) => {
                let argv = exec_argv(c, run);
                let network_host = match run.network {
                    Some(NetworkMode::None) => false,
                    Some(NetworkMode::Host) | Some(NetworkMode::Default) => true,
                    None => self.env.network != Some("none"),
                };
                let mut extra = Vec::new();
                let mut mount_inputs = Vec::new();
                for m in &run.mounts {
                    match m {
                        rbuild_dockerfile::Mount::Bind {
                            from: Some(from), ..
                        }
                        | rbuild_dockerfile::Mount::Cache {
                            from: Some(from), ..
                        } => {
                            extra.push(self.input_of(from, step, platform)?);
                            mount_inputs.push(Some(extra.len()));
                        }
                        _ => mount_inputs.push(None),
                    }
                }
                // History lists every ARG declared so far, as docker does (keys use the values).
                let used = scope.history_args();
                let args_prefix = if used.is_empty() {
                    String::new()
                } else {
                    let kv: Vec<String> = used.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("|{} {} ", used.len(), kv.join(" "))
                };
                let op = ExecOp {
                    created_by: format!("RUN {args_prefix}{} # buildkit", argv.join(" ")),
                    argv,
                    env: scope.run_env(),
                    cwd: c.working_dir().to_string(),
                    user: c.user().to_string(),
                    network_host,
                    mounts: run.mounts.clone(),
                    mount_inputs,
                    platform: platform.clone(),
                };
                (FsOp::Exec(Box::new(op)), extra)
            }
            other => {
                return Err(BuildError::Task(format!(
                    "instruction {other:?} is neither a config change nor a file or exec step"
                )))
            }
        })
    }

    /// Resolves an image by name for `platform` (local unless `--pull` or the local image is of
    /// another platform, else pulled) and adds its source vertex once per name and platform.
    fn image(&mut self, name: &str, platform: &Platform) -> Result<(LocalImage, VertexId), String> {
        let id = (name.to_string(), platform.clone());
        if let Some(hit) = self.images.get(&id) {
            return Ok(hit.clone());
        }
        let img = self.resolve_image(name, platform)?;
        let v = self.graph.add(
            Op::Source(SourceOp {
                name: name.to_string(),
                layers: img.layers.clone(),
            }),
            vec![],
            vec![],
            None,
        );
        self.images.insert(id, (img.clone(), v));
        Ok((img, v))
    }

    fn resolve_image(&self, name: &str, platform: &Platform) -> Result<LocalImage, String> {
        let images = self.env.images;
        if let Some(rest) = name.strip_prefix("oci-layout://") {
            let (path, tag) = split_layout_ref(rest);
            let loaded =
                rbuild_image::import::load(images, Path::new(path)).map_err(|e| e.to_string())?;
            let tagged: Vec<_> = loaded
                .iter()
                .filter(|l| match tag {
                    Some(t) => l.names.iter().any(|n| n.tag() == Some(t)),
                    None => true,
                })
                .collect();
            let pick = tagged
                .iter()
                .find(|l| crate::platform::image_is_for(&l.image, platform))
                .or_else(|| tagged.iter().find(|l| l.image.config.platform().is_none()));
            return match (pick, tagged.first()) {
                (Some(l), _) => Ok(l.image.clone()),
                (None, Some(other)) => Err(crate::platform::wrong_platform(
                    &format!("the image in the OCI layout {path}"),
                    &other.image,
                    platform,
                )),
                (None, None) => Err(format!(
                    "no image tagged {:?} in the OCI layout {path}",
                    tag.unwrap_or("")
                )),
            };
        }
        // As docker: a local image is used without network unless --pull asks to re-resolve,
        // but only when it is for the stage's platform: a local image of another platform is
        // never used in its place (it is pulled for the right one, or the build fails saying so).
        let mut local_other = None;
        if !self.env.pull {
            match images.resolve_for(name, platform) {
                Ok(img) if crate::platform::image_is_for(&img, platform) => return Ok(img),
                Ok(img) => local_other = Some(img),
                Err(_) => {}
            }
        }
        crate::transfer::pull_base(images, self.env.registry, name, platform, self.env.progress)
            .map_err(|e| match &local_other {
                Some(img) => format!(
                    "{}, and pulling it for {platform} failed: {e}",
                    crate::platform::wrong_platform(
                        &format!("the local image {name:?}"),
                        img,
                        platform
                    )
                ),
                None => e.to_string(),
            })
            .and_then(|img| {
                // A registry may serve one single-platform manifest whatever is asked.
                if crate::platform::image_is_for(&img, platform) {
                    Ok(img)
                } else {
                    Err(crate::platform::wrong_platform(
                        &format!("the image {name:?} in its registry"),
                        &img,
                        platform,
                    ))
                }
            })
    }
}

/// A file or exec op before it is wrapped.
pub(crate) enum FsOp {
    File(Box<FileOp>),
    Exec(Box<ExecOp>),
}

impl FsOp {
    fn created_by(&self) -> &str {
        match self {
            FsOp::File(f) => match f.as_ref() {
                FileOp::Workdir { created_by, .. } => created_by,
                FileOp::Copy(c) => &c.created_by,
            },
            FsOp::Exec(e) => &e.created_by,
        }
    }
}

impl From<FsOp> for Op {
    fn from(o: FsOp) -> Op {
        match o {
            FsOp::File(f) => Op::File(f),
            FsOp::Exec(e) => Op::Exec(e),
        }
    }
}

/// What identifies "the same step" across builds: the Dockerfile, the stage and the position
/// of the instruction in it. Editing the instruction keeps its lineage, so a miss can say
/// "the instruction changed" instead of "first build".
fn lineage(dockerfile_id: &str, stage: &str, pos: usize) -> Digest {
    let mut k = Key::new();
    k.str("lineage", dockerfile_id)
        .str("stage", stage)
        .u64("position", pos as u64);
    k.finish()
}

fn history(created_by: String, empty_layer: bool) -> History {
    History {
        created: None,
        created_by: Some(created_by),
        author: None,
        comment: Some("buildkit.dockerfile.v0".into()),
        empty_layer: if empty_layer { Some(true) } else { None },
    }
}

/// The argv a RUN executes: shell form through SHELL; heredocs as docker runs them.
fn exec_argv(c: &ImageConfig, run: &rbuild_dockerfile::Run) -> Vec<String> {
    let shell = meta::shell_of(c);
    match &run.command {
        Command::Exec(v) => v.clone(),
        Command::Shell(cmd) if run.heredocs.is_empty() => {
            let mut a = shell;
            a.push(cmd.clone());
            a
        }
        Command::Shell(cmd) => {
            let only = run.heredocs.len() == 1 && {
                let t = cmd.trim();
                let h = &run.heredocs[0];
                t.trim_start_matches("<<")
                    .trim_start_matches('-')
                    .trim_matches(|c| c == '"' || c == '\'')
                    == h.name
            };
            if only {
                // A lone heredoc is the script itself (a shebang picks its interpreter).
                let body = run.heredocs[0].body();
                if body.starts_with("#!") {
                    let mut a: Vec<String> = body
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim_start_matches("#!")
                        .split_whitespace()
                        .map(str::to_string)
                        .collect();
                    a.push("-c".into());
                    a.push(body);
                    return a;
                }
                let mut a = shell;
                a.push(body);
                a
            } else {
                // The shell itself reads the heredocs that follow the command.
                let mut script = cmd.clone();
                for h in &run.heredocs {
                    script.push('\n');
                    script.push_str(&h.content);
                    if !h.content.ends_with('\n') {
                        script.push('\n');
                    }
                    script.push_str(&h.name);
                }
                let mut a = shell;
                a.push(script);
                a
            }
        }
    }
}

fn split_layout_ref(rest: &str) -> (&str, Option<&str>) {
    // oci-layout://PATH[:TAG] — the tag is after the last ':' that follows the last '/'.
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    }
}

/// How progress names a stage: its name, else its index.
pub(crate) fn stage_label(plan: &Plan, i: usize) -> String {
    plan.stages[i]
        .name
        .clone()
        .unwrap_or_else(|| format!("stage-{i}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two platforms in one graph: a platform-independent COPY into `scratch` is one vertex for
    /// both, each RUN is its own (keyed with its platform), and `FROM --platform` sets a stage's
    /// platform whatever the target.
    #[test]
    fn platforms_share_what_does_not_depend_on_them() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::new(rbuild_store::Store::open(dir.path()).unwrap());
        let registry = crate::transfer::RegistryOptions::default();
        let env = LowerEnv {
            images: &images,
            registry: &registry,
            progress: &crate::progress::NoProgress,
            pull: false,
            network: None,
            dockerfile_id: "test",
        };
        let src = "FROM --platform=$BUILDPLATFORM scratch AS tools\nCOPY a /a\n\
                   FROM scratch\nCOPY --from=tools /a /a\nRUN true\n";
        let df = rbuild_dockerfile::parse("Dockerfile", src).unwrap();
        let plans: Vec<(Plan, PlanOptions)> = ["linux/amd64", "linux/arm64"]
            .iter()
            .map(|p| {
                let opts = PlanOptions {
                    build_platform: Platform::linux_amd64(),
                    target_platform: Platform::parse(p).unwrap(),
                    ..PlanOptions::default()
                };
                (rbuild_dockerfile::plan(&df, &opts).unwrap(), opts)
            })
            .collect();
        let refs: Vec<_> = plans.iter().map(|(p, o)| (p, o)).collect();
        let l = lower_platforms(&refs, &env).unwrap();
        let count = |f: &dyn Fn(&Op) -> bool| l.graph.vertices.iter().filter(|v| f(&v.op)).count();
        let runs: Vec<String> = l
            .graph
            .vertices
            .iter()
            .filter_map(|v| match &v.op {
                Op::Exec(e) => Some(e.platform.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(runs, ["linux/amd64", "linux/arm64"]);
        // `COPY a /a` of the build-platform stage is shared; `COPY --from=tools` reads the same
        // vertex onto the same (scratch) parent, so it is shared too.
        assert_eq!(count(&|o| matches!(o, Op::File(_))), 2);
        let platforms: Vec<String> = l.targets.iter().map(|t| t.platform.to_string()).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
        let archs: Vec<&str> = l
            .targets
            .iter()
            .map(|t| t.config.config.architecture.as_str())
            .collect();
        assert_eq!(archs, ["amd64", "arm64"]);
    }
}
