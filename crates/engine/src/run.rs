//! RUN: one step executed by the sandbox on an active snapshot of the stage, whose upper directory
//! (or, with the copy snapshotter, whose compared tree) becomes the step's layer.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dockerfile::{Command, Instruction, Mount, NetworkMode, Scope};
use sandbox::{
    MountKind, MountSpec, Network, RootfsSpec, RunSpec, Sandbox, SandboxOptions, Stream,
};
use snapshot::MountPlan;

use crate::progress::{Event, StepId};
use crate::request::SecretFrom;
use crate::stage::{StageRun, StageState};
use crate::view::View;
use crate::BuildError;

/// The hostname docker build gives steps.
const HOSTNAME: &str = "buildkitsandbox";
/// How many trailing output lines a failed step shows.
const TAIL_LINES: usize = 20;

/// The sandbox, configured on first use (reading /etc/subuid costs nothing, but a build without
/// RUN should not fail because the sandbox cannot be set up).
#[derive(Default)]
pub struct Sandboxes {
    cell: OnceLock<Result<Sandbox, String>>,
}

impl Sandboxes {
    fn get(&self) -> Result<&Sandbox, BuildError> {
        self.cell
            .get_or_init(|| Sandbox::new(SandboxOptions::default()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| BuildError::Sandbox(e.clone()))
    }

    /// Removes a tree steps wrote, from inside the user namespace when there is one (see
    /// [`Sandbox::remove_tree`]), for snapshots the caller cannot delete alone.
    pub(crate) fn remove_tree(&self, path: &Path) -> std::io::Result<()> {
        let sb = self
            .get()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        sb.remove_tree(path)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// The map every layer must be written with so it records the ids steps saw in their user
    /// namespace rather than the host's (`None` as root without one). Without a usable sandbox a
    /// non-root build still maps its own ids to container root, since that is what it wrote.
    pub(crate) fn id_map(&self) -> Option<layer::IdMap> {
        let conv = |r: &[sandbox::MapRange]| -> Vec<layer::IdRange> {
            r.iter()
                .map(|r| layer::IdRange {
                    container: r.container,
                    host: r.host,
                    size: r.size,
                })
                .collect()
        };
        match self.get() {
            Ok(sb) => sb.id_map().map(|m| layer::IdMap {
                uids: conv(&m.uids),
                gids: conv(&m.gids),
            }),
            Err(_) => {
                let (uid, gid) = (rustix::process::geteuid(), rustix::process::getegid());
                if uid.is_root() {
                    return None;
                }
                Some(layer::IdMap {
                    uids: conv(&[sandbox::MapRange {
                        container: 0,
                        host: uid.as_raw(),
                        size: 1,
                    }]),
                    gids: conv(&[sandbox::MapRange {
                        container: 0,
                        host: gid.as_raw(),
                        size: 1,
                    }]),
                })
            }
        }
    }
}

/// The host path of a view opened writable, for binding it into a step.
fn view_path(view: &View<'_>) -> Result<PathBuf, BuildError> {
    view.path()
        .map(Path::to_path_buf)
        .ok_or_else(|| BuildError::Task("snapshot view has no path to bind".into()))
}

/// Reads `rel` (e.g. `etc/passwd`) from the merged view of a mount plan without mounting it.
fn merged_file(plan: &MountPlan, rel: &str) -> Option<Vec<u8>> {
    let lowers: Vec<PathBuf> = match plan {
        MountPlan::Dir(p) => vec![p.clone()],
        MountPlan::Overlay { lowers, .. } => lowers.clone(),
    };
    for l in lowers {
        let p = l.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => return None,
            Ok(m) if m.is_file() => return std::fs::read(&p).ok(),
            _ => continue,
        }
    }
    None
}

impl<'a> StageRun<'a> {
    /// Resolves USER (names through the image's passwd and group) to ids and groups.
    fn run_user(
        &self,
        state: &StageState,
        plan: &MountPlan,
    ) -> Result<(u32, u32, Vec<u32>), BuildError> {
        let user = state.config.user();
        if user.is_empty() {
            return Ok((0, 0, Vec::new()));
        }
        let dir = self.images.store().temp_dir("passwd")?;
        std::fs::create_dir_all(dir.path().join("etc"))
            .map_err(|e| BuildError::io(dir.path(), e))?;
        for f in ["etc/passwd", "etc/group"] {
            if let Some(bytes) = merged_file(plan, f) {
                let p = dir.path().join(f);
                std::fs::write(&p, bytes).map_err(|e| BuildError::io(&p, e))?;
            }
        }
        let u = context::passwd::resolve_user(dir.path(), user)?;
        Ok((u.uid, u.gid, u.additional_gids))
    }

    /// The argv a RUN executes: shell form through SHELL; heredocs as docker runs them.
    fn run_argv(&self, state: &StageState, run: &dockerfile::Run) -> Vec<String> {
        let shell = crate::stage::shell_of(&state.config);
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
                        let interp: Vec<String> = body
                            .lines()
                            .next()
                            .unwrap_or("")
                            .trim_start_matches("#!")
                            .split_whitespace()
                            .map(str::to_string)
                            .collect();
                        let mut a = interp;
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

    /// Runs one RUN step and commits what it changed.
    pub(crate) fn run_step(
        &mut self,
        id: &StepId,
        state: &mut StageState,
        instr: &Instruction,
        run: &dockerfile::Run,
        scope: &Scope,
    ) -> Result<(), BuildError> {
        let sandbox = self.sandbox.get()?;
        let store = self.images.store();
        let view = View::prepare(self.snap, &state.chain())?;
        let plan = view
            .plan()
            .ok_or_else(|| BuildError::Task("prepared snapshot has no mount plan".into()))?;
        let rootfs = match &plan {
            MountPlan::Overlay {
                lowers,
                upper,
                work,
                ..
            } => RootfsSpec::Overlay {
                lowers: lowers.clone(),
                upper: upper.clone(),
                work: work.clone(),
                // Commit syncs the upper it keeps (and deletes the rest): the step's fsyncs and
                // the sync at unmount would only make it wait.
                volatile: true,
            },
            MountPlan::Dir(p) => RootfsSpec::Dir(p.clone()),
        };
        let (uid, gid, additional_gids) = self
            .run_user(state, &plan)
            .map_err(|e| self.step_error(instr, e))?;
        let mut env = scope.run_env();
        crate::userenv::add_home(&mut env, merged_file(&plan, "etc/passwd").as_deref(), uid);
        let network = match run.network {
            Some(NetworkMode::None) => Network::None,
            Some(NetworkMode::Host) | Some(NetworkMode::Default) => Network::Host,
            None => match self.req.network.as_deref() {
                Some("none") => Network::None,
                _ => Network::Host,
            },
        };
        // RUN --mount sources live in scratch dirs that outlive the step's run.
        let scratch = store.temp_dir("run-mounts")?;
        let mut mounts = Vec::new();
        let mut exclude: Vec<PathBuf> = Vec::new();
        // Snapshots of `--mount=type=bind,from=…` sources, alive until the step has run.
        let mut from_views: Vec<View<'_>> = Vec::new();
        for (n, m) in run.mounts.iter().enumerate() {
            // BuildKit numbers default ssh targets among the step's ssh mounts only.
            let ssh_n = run.mounts[..n]
                .iter()
                .filter(|m| matches!(m, Mount::Ssh { .. }))
                .count();
            let spec = self
                .mount_spec(
                    instr,
                    m,
                    (n, ssh_n),
                    scratch.path(),
                    &mut env,
                    &mut from_views,
                )
                .map_err(|e| self.step_error(instr, e))?;
            if let Some(spec) = spec {
                exclude.push(PathBuf::from(&spec.target));
                mounts.push(spec);
            }
        }
        let argv = self.run_argv(state, run);
        let spec = RunSpec {
            rootfs,
            args: argv.clone(),
            env,
            cwd: match state.config.working_dir() {
                "" => "/".to_string(),
                w => w.to_string(),
            },
            uid,
            gid,
            additional_gids,
            hostname: HOSTNAME.into(),
            network,
            mounts,
            stdin: None,
            hosts: Vec::new(),
            timeout: None,
            cancel: None,
        };
        let mut tail: Vec<String> = Vec::new();
        let mut partial = String::new();
        let progress = self.progress;
        let mut on_output = |_s: Stream, bytes: &[u8]| {
            partial.push_str(&String::from_utf8_lossy(bytes));
            while let Some(i) = partial.find('\n') {
                let line: String = partial.drain(..=i).collect();
                let line = line.trim_end_matches('\n').to_string();
                progress.event(Event::StepLog {
                    step: id.clone(),
                    text: line.clone(),
                });
                tail.push(line);
                if tail.len() > TAIL_LINES {
                    tail.remove(0);
                }
            }
        };
        let result = sandbox
            .run(&spec, &mut on_output)
            .map_err(|e| self.step_error(instr, e))?;
        if !partial.is_empty() {
            progress.event(Event::StepLog {
                step: id.clone(),
                text: partial.clone(),
            });
            tail.push(partial);
        }
        for w in &result.warnings {
            progress.event(Event::Warning { message: w.clone() });
        }
        if result.code != Some(0) {
            let status = match (result.code, result.signal) {
                (Some(c), _) => format!("exit code: {c}"),
                (None, Some(s)) => format!("killed by signal {s}"),
                _ => "unknown status".into(),
            };
            let shown = tail.join("\n");
            return Err(self.step_error(
                instr,
                format!(
                    "process {:?} did not complete successfully: {status}{}",
                    argv.join(" "),
                    if shown.is_empty() {
                        String::new()
                    } else {
                        format!("\n--- last output ---\n{shown}")
                    }
                ),
            ));
        }
        exclude.extend(result.mount_stubs.iter().map(PathBuf::from));
        let used = scope.history_args();
        let args_prefix = if used.is_empty() {
            String::new()
        } else {
            let kv: Vec<String> = used.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("|{} {} ", used.len(), kv.join(" "))
        };
        let created_by = format!("RUN {args_prefix}{} # buildkit", argv.join(" "));
        // BuildKit keeps a RUN's layer even when the step changed nothing.
        self.commit_view(state, view, &exclude, created_by, false)
    }

    /// Turns one `RUN --mount` into a sandbox mount; secrets with `env=` go to the environment.
    fn mount_spec(
        &self,
        instr: &Instruction,
        m: &Mount,
        (n, ssh_n): (usize, usize),
        scratch: &Path,
        env: &mut Vec<String>,
        from_views: &mut Vec<View<'a>>,
    ) -> Result<Option<MountSpec>, BuildError> {
        let store = self.images.store();
        Ok(match m {
            Mount::Tmpfs { target, size } => Some(MountSpec {
                target: target.clone(),
                kind: MountKind::Tmpfs { size: *size },
            }),
            Mount::Cache { target, id, .. } => {
                let key = id.clone().unwrap_or_else(|| target.clone());
                let safe: String = key
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let dir = store.root().join("cache-mounts").join(format!(
                    "{safe}-{}",
                    digest::Digest::of(key.as_bytes()).short()
                ));
                std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
                Some(MountSpec {
                    target: target.clone(),
                    kind: MountKind::Bind {
                        source: dir,
                        readonly: false,
                    },
                })
            }
            Mount::Secret {
                id,
                target,
                env: env_name,
                required,
                ..
            } => {
                // BuildKit: the id defaults to the target's file name.
                let id = id
                    .clone()
                    .or_else(|| {
                        target
                            .as_deref()
                            .and_then(|t| Path::new(t).file_name())
                            .map(|n| n.to_string_lossy().into_owned())
                    })
                    .unwrap_or_default();
                let value = self.secret_value(&id)?;
                let Some(value) = value else {
                    if *required {
                        return Err(BuildError::Request(format!(
                            "secret {id:?} is required but was not given (--secret id={id},src=FILE)"
                        )));
                    }
                    return Ok(None);
                };
                if let Some(name) = env_name {
                    env.push(format!("{name}={}", String::from_utf8_lossy(&value)));
                    if target.is_none() {
                        return Ok(None);
                    }
                }
                let file = scratch.join(format!("secret-{n}"));
                std::fs::write(&file, &value).map_err(|e| BuildError::io(&file, e))?;
                Some(MountSpec {
                    target: target
                        .clone()
                        .unwrap_or_else(|| format!("/run/secrets/{id}")),
                    kind: MountKind::Bind {
                        source: file,
                        readonly: true,
                    },
                })
            }
            Mount::Bind {
                target,
                source,
                from,
                read_write,
            } => {
                let src = source.clone().unwrap_or_else(|| "/".into());
                let host = match from {
                    // The context: never the user's directory, but a copy of it as filtered by
                    // `.dockerignore` (see `ctxmount`), so ignored files stay invisible and a
                    // `rw` step cannot change the host's files.
                    None if *read_write => {
                        // A throwaway snapshot holds the writable copy: it is discarded after the
                        // step, through the snapshotter's removal, which also deletes what the
                        // step gave subordinate ids rootless.
                        let view = View::open(self.snap, store, &[])?;
                        let dir = view_path(&view)?;
                        from_views.push(view);
                        crate::ctxmount::materialize(self.context, &src, &dir)?
                    }
                    // Read-only: a copy in the step's scratch directory, removed with it.
                    None => {
                        let dir = scratch.join(format!("context-{n}"));
                        std::fs::create_dir(&dir).map_err(|e| BuildError::io(&dir, e))?;
                        crate::ctxmount::materialize(self.context, &src, &dir)?
                    }
                    // Another stage or an image: a snapshot of its layers. Writes to a `rw`
                    // mount land in that snapshot's scratch upper and are discarded with it.
                    Some(from) => {
                        let chain = self.chain_of_from(instr, from)?;
                        let view = View::open(self.snap, store, &chain)?;
                        let root = view_path(&view)?;
                        from_views.push(view);
                        crate::fsutil::real_path_in_root(&root, Path::new(&src))?
                    }
                };
                Some(MountSpec {
                    target: target.clone(),
                    kind: MountKind::Bind {
                        source: host,
                        readonly: !read_write,
                    },
                })
            }
            Mount::Ssh {
                id,
                target,
                required,
                ..
            } => {
                // The agent's own socket is bound in (its owner and mode stay the host's, so a
                // step running as another user than the socket's owner cannot use it).
                let id = id.as_deref().unwrap_or("default");
                let Some(src) = self.req.ssh.iter().find(|s| s.id == id) else {
                    if *required {
                        return Err(BuildError::Request(format!(
                            "ssh agent {id:?} is required but was not given (--ssh {id}=SOCKET)"
                        )));
                    }
                    return Ok(None);
                };
                let target = target
                    .clone()
                    .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_n}"));
                env.retain(|e| !e.starts_with("SSH_AUTH_SOCK="));
                env.push(format!("SSH_AUTH_SOCK={target}"));
                Some(MountSpec {
                    target,
                    kind: MountKind::Bind {
                        source: src.socket.clone(),
                        readonly: false,
                    },
                })
            }
        })
    }

    /// A secret's bytes from the request; never logged, never stored.
    fn secret_value(&self, id: &str) -> Result<Option<Vec<u8>>, BuildError> {
        let Some(s) = self.req.secrets.iter().find(|s| s.id == id) else {
            return Ok(None);
        };
        match &s.source {
            SecretFrom::File(p) => std::fs::read(p).map(Some).map_err(|e| BuildError::io(p, e)),
            SecretFrom::Env(v) => Ok(std::env::var_os(v).map(|x| x.into_encoded_bytes())),
        }
    }
}
