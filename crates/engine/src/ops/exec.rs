//! The exec op: one RUN executed by the sandbox on an active snapshot of the stage, whose upper
//! directory (or, with the copy snapshotter, whose compared tree) becomes the step's layer.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rbuild_dockerfile::Mount;
use rbuild_sandbox::{MountKind, MountSpec, Network, RootfsSpec, RunSpec, Stream};
use rbuild_snapshot::MountPlan;

use super::{commit_layer, ContextSources, Reads};
use crate::chain::Chain;
use crate::key::Key;
use crate::progress::{Event, StepId};
use crate::request::SecretFrom;
use crate::shared::Shared;
use crate::view::View;
use crate::BuildError;

/// The hostname docker build gives steps.
const HOSTNAME: &str = "buildkitsandbox";
/// How many trailing output lines a failed step shows.
const TAIL_LINES: usize = 20;

/// A RUN, with everything the stage's config contributes already resolved by lowering.
pub(crate) struct ExecOp {
    /// What runs (shell form already wrapped in the stage's SHELL, heredocs resolved).
    pub argv: Vec<String>,
    /// The environment the step sees: the image's, then the build arguments in scope.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// USER, resolved against the step's own rootfs when it runs; empty for root.
    pub user: String,
    /// Whether the step gets the host's network.
    pub network_host: bool,
    /// `RUN --mount`s, expanded.
    pub mounts: Vec<Mount>,
    /// For each mount, the index in the vertex's inputs of the chain it reads (`from=`).
    pub mount_inputs: Vec<Option<usize>>,
    /// The history text.
    pub created_by: String,
    /// The platform the step runs as (the stage's): a foreign one runs under emulation, and
    /// the same command gives other results on another platform (`uname -m`, what a package
    /// manager installs), so it is part of the key.
    pub platform: rbuild_dockerfile::Platform,
}

impl ExecOp {
    /// Key fields: `argv`, `env`, `cwd`, `user`, `network` (`host` or `none`), `hostname`,
    /// `platform` (normalised `os/arch[/variant]`, since key format 3), then
    /// `mounts`, each as `type` and its options (`target`, `source`, `from` as a flag (the chain
    /// is an input), `rw`, `id`, `sharing`, `mode`, `uid`, `gid`, `size`, `env`, `required`).
    /// A secret's or an agent's value never is: changing a secret does not rerun the step, as in
    /// BuildKit.
    pub fn define(&self, k: &mut Key) {
        k.str("op", "exec")
            .strs("argv", &self.argv)
            .strs("env", &self.env)
            .str("cwd", &self.cwd)
            .str("user", &self.user)
            .str("network", if self.network_host { "host" } else { "none" })
            .str("hostname", HOSTNAME)
            .str("platform", &self.platform.normalized().to_string());
        k.list("mounts", self.mounts.len());
        for m in &self.mounts {
            match m {
                Mount::Bind {
                    target,
                    source,
                    from,
                    read_write,
                } => {
                    k.str("type", "bind")
                        .str("target", target)
                        .opt_str("source", source.as_deref())
                        .bool("from", from.is_some())
                        .bool("rw", *read_write);
                }
                Mount::Cache {
                    target,
                    id,
                    read_only,
                    sharing,
                    from,
                    source,
                    mode,
                    uid,
                    gid,
                } => {
                    k.str("type", "cache")
                        .str("target", target)
                        .opt_str("id", id.as_deref())
                        .bool("ro", *read_only)
                        .str(
                            "sharing",
                            match sharing {
                                rbuild_dockerfile::CacheSharing::Shared => "shared",
                                rbuild_dockerfile::CacheSharing::Private => "private",
                                rbuild_dockerfile::CacheSharing::Locked => "locked",
                            },
                        )
                        .opt_str("from", from.as_deref())
                        .opt_str("source", source.as_deref());
                    owner_mode(k, mode, uid, gid);
                }
                Mount::Tmpfs { target, size } => {
                    k.str("type", "tmpfs")
                        .str("target", target)
                        .opt_u64("size", *size);
                }
                Mount::Secret {
                    id,
                    target,
                    env,
                    required,
                    mode,
                    uid,
                    gid,
                } => {
                    k.str("type", "secret")
                        .opt_str("id", id.as_deref())
                        .opt_str("target", target.as_deref())
                        .opt_str("env", env.as_deref())
                        .bool("required", *required);
                    owner_mode(k, mode, uid, gid);
                }
                Mount::Ssh {
                    id,
                    target,
                    required,
                    mode,
                    uid,
                    gid,
                } => {
                    k.str("type", "ssh")
                        .opt_str("id", id.as_deref())
                        .opt_str("target", target.as_deref())
                        .bool("required", *required);
                    owner_mode(k, mode, uid, gid);
                }
            }
        }
    }

    /// Context files the step's bind mounts read (`--mount=type=bind` without `from`).
    pub fn reads(&self, sh: &Shared<'_>, step: &StepId) -> Result<Reads, BuildError> {
        let mut patterns = Vec::new();
        let mut digests = Vec::new();
        let mut manifests = Vec::new();
        for m in &self.mounts {
            if let Mount::Bind {
                source, from: None, ..
            } = m
            {
                let source = source.clone().unwrap_or_else(|| ".".into());
                let m = sh
                    .context
                    .source_manifest(std::slice::from_ref(&source))
                    .map_err(|e| sh.step_error(step, e))?;
                patterns.push(source);
                digests.push(m.digest());
                manifests.push(m);
            }
        }
        Ok(match digests.len() {
            0 => Reads::Nothing,
            1 => Reads::Context(ContextSources {
                patterns,
                digest: digests.remove(0),
                manifest: manifests.pop().map(std::sync::Arc::new),
            }),
            _ => {
                let mut k = Key::new();
                k.strs("bind-sources", &digests);
                Reads::Context(ContextSources {
                    patterns,
                    digest: k.finish().to_string(),
                    manifest: None,
                })
            }
        })
    }

    /// Runs the step on a snapshot of `inputs[0]` and commits what it changed.
    pub fn run(
        &self,
        sh: &Shared<'_>,
        step: &StepId,
        inputs: &[&Chain],
    ) -> Result<Chain, BuildError> {
        let parent = inputs
            .first()
            .ok_or_else(|| BuildError::Task("exec op without a filesystem input".into()))?;
        crate::platform::check_can_run(&self.platform).map_err(|e| sh.step_error(step, e))?;
        let sandbox = sh.sandbox.get()?;
        let store = sh.images.store();
        let view = View::prepare(sh.snap, &parent.diff_ids())?;
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
            .run_user(sh, &plan)
            .map_err(|e| sh.step_error(step, e))?;
        let mut env = self.env.clone();
        crate::userenv::add_home(&mut env, merged_file(&plan, "etc/passwd").as_deref(), uid);
        // RUN --mount sources live in scratch dirs that outlive the step's run.
        let scratch = store.temp_dir("run-mounts")?;
        let mut mounts = Vec::new();
        let mut exclude: Vec<PathBuf> = Vec::new();
        // Snapshots of `--mount=type=bind,from=…` sources, alive until the step has run.
        let mut from_views: Vec<View<'_>> = Vec::new();
        // Cache locks and agent proxies of the step's mounts, held until the step has run.
        let mut guards: Vec<Box<dyn std::any::Any>> = Vec::new();
        for (n, m) in self.mounts.iter().enumerate() {
            // BuildKit numbers default ssh targets among the step's ssh mounts only.
            let ssh_n = self.mounts[..n]
                .iter()
                .filter(|m| matches!(m, Mount::Ssh { .. }))
                .count();
            let from = self
                .mount_inputs
                .get(n)
                .copied()
                .flatten()
                .and_then(|i| inputs.get(i).copied());
            let spec = mount_spec(
                sh,
                m,
                from,
                (n, ssh_n),
                scratch.path(),
                &mut env,
                (&mut from_views, &mut guards),
            )
            .map_err(|e| sh.step_error(step, e))?;
            if let Some(spec) = spec {
                exclude.push(PathBuf::from(&spec.target));
                mounts.push(spec);
            }
        }
        let mut spec = RunSpec {
            rootfs,
            args: self.argv.clone(),
            env,
            cwd: match self.cwd.as_str() {
                "" => "/".to_string(),
                w => w.to_string(),
            },
            uid,
            gid,
            additional_gids,
            hostname: HOSTNAME.into(),
            network: if self.network_host {
                Network::Host
            } else {
                Network::None
            },
            mounts,
            stdin: None,
            hosts: Vec::new(),
            timeout: None,
            cancel: Some(sh.cancel.flag()),
            ..RunSpec::default()
        };
        // `--device`s: in the step's environment and mounts only, never in the image's config;
        // their mount points outside /dev are kept out of the layer like RUN --mount targets.
        rbuild_cdi::apply(sh.devices, &mut spec);
        exclude.extend(crate::devices::layer_exclusions(&spec.devices));
        let mut tail: Vec<String> = Vec::new();
        let mut partial = String::new();
        let mut on_output = |_s: Stream, bytes: &[u8]| {
            partial.push_str(&String::from_utf8_lossy(bytes));
            while let Some(i) = partial.find('\n') {
                let line: String = partial.drain(..=i).collect();
                let line = line.trim_end_matches('\n').to_string();
                sh.event(Event::StepLog {
                    step: step.clone(),
                    text: line.clone(),
                });
                tail.push(line);
                if tail.len() > TAIL_LINES {
                    tail.remove(0);
                }
            }
        };
        // Set-up hooks of `--device`s write into a layer of their own (see `devices`).
        let hook_layer =
            crate::devices::run_setup_hooks_apart(store, sandbox, &mut spec, &mut on_output)
                .map_err(|e| sh.step_error(step, e))?;
        let result = match sandbox.run(&spec, &mut on_output) {
            Ok(r) => r,
            Err(rbuild_sandbox::SandboxError::Cancelled) => return Err(BuildError::Cancelled),
            Err(e) => return Err(sh.step_error(step, e)),
        };
        drop(guards);
        if !partial.is_empty() {
            sh.event(Event::StepLog {
                step: step.clone(),
                text: partial.clone(),
            });
            tail.push(partial);
        }
        for w in &result.warnings {
            sh.event(Event::Warning { message: w.clone() });
        }
        if result.code != Some(0) {
            let status = match (result.code, result.signal) {
                (Some(c), _) => format!("exit code: {c}"),
                (None, Some(s)) => format!("killed by signal {s}"),
                _ => "unknown status".into(),
            };
            let shown = tail.join("\n");
            return Err(sh.step_error(
                step,
                format!(
                    "process {:?} did not complete successfully: {status}{}",
                    self.argv.join(" "),
                    if shown.is_empty() {
                        String::new()
                    } else {
                        format!("\n--- last output ---\n{shown}")
                    }
                ),
            ));
        }
        exclude.extend(result.mount_stubs.iter().map(PathBuf::from));
        drop(from_views);
        // BuildKit keeps a RUN's layer even when the step changed nothing.
        let chain = commit_layer(sh, parent, view, &exclude, &self.created_by);
        drop(hook_layer);
        chain
    }

    /// Resolves USER (names through the image's passwd and group) to ids and groups.
    fn run_user(
        &self,
        sh: &Shared<'_>,
        plan: &MountPlan,
    ) -> Result<(u32, u32, Vec<u32>), BuildError> {
        if self.user.is_empty() {
            return Ok((0, 0, Vec::new()));
        }
        let dir = sh.images.store().temp_dir("passwd")?;
        std::fs::create_dir_all(dir.path().join("etc"))
            .map_err(|e| BuildError::io(dir.path(), e))?;
        for f in ["etc/passwd", "etc/group"] {
            if let Some(bytes) = merged_file(plan, f) {
                let p = dir.path().join(f);
                std::fs::write(&p, bytes).map_err(|e| BuildError::io(&p, e))?;
            }
        }
        let u = rbuild_context::passwd::resolve_user(dir.path(), &self.user)?;
        Ok((u.uid, u.gid, u.additional_gids))
    }
}

/// The `mode`, `uid` and `gid` fields a cache, secret or ssh mount's key has.
fn owner_mode(k: &mut Key, mode: &Option<u32>, uid: &Option<u32>, gid: &Option<u32>) {
    let ou32 = |v: &Option<u32>| v.map(u64::from);
    k.opt_u64("mode", ou32(mode))
        .opt_u64("uid", ou32(uid))
        .opt_u64("gid", ou32(gid));
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

/// The host path of a view opened writable, for binding it into a step.
fn view_path(view: &View<'_>) -> Result<PathBuf, BuildError> {
    view.path()
        .map(Path::to_path_buf)
        .ok_or_else(|| BuildError::Task("snapshot view has no path to bind".into()))
}

/// Turns one `RUN --mount` into a sandbox mount; secrets with `env=` go to the environment.
fn mount_spec<'s>(
    sh: &Shared<'s>,
    m: &Mount,
    from: Option<&Chain>,
    (n, ssh_n): (usize, usize),
    scratch: &Path,
    env: &mut Vec<String>,
    (from_views, guards): (&mut Vec<View<'s>>, &mut Vec<Box<dyn std::any::Any>>),
) -> Result<Option<MountSpec>, BuildError> {
    let store = sh.images.store();
    Ok(match m {
        Mount::Tmpfs { target, size } => Some(MountSpec {
            target: target.clone(),
            kind: MountKind::Tmpfs { size: *size },
        }),
        Mount::Cache {
            target,
            id,
            read_only,
            sharing,
            source,
            mode,
            uid,
            gid,
            ..
        } => {
            // `from=`: a new cache starts as `source` of that stage or image, whose snapshot
            // is opened only when the cache has to be made (see `cachemount`).
            let seed_of = from.map(|chain| {
                let src = crate::fsutil::clean_abs(source.as_deref().unwrap_or("/"));
                let base = rbuild_digest::chain_id(&chain.diff_ids())
                    .map_or_else(|| "scratch".into(), |d| d.hex());
                (chain.diff_ids(), src, base)
            });
            let mut open_seed = || -> Result<PathBuf, BuildError> {
                let Some((chain, src, _)) = &seed_of else {
                    return Err(BuildError::Task("cache mount has no from".into()));
                };
                let view = View::open(sh.snap, store, chain)?;
                let root = view_path(&view)?;
                from_views.push(view);
                crate::fsutil::real_path_in_root(&root, src)
            };
            let seed = seed_of
                .as_ref()
                .map(|(_, src, base)| crate::cachemount::CacheSeed {
                    base: base.clone(),
                    source: src.clone(),
                    resolve: &mut open_seed,
                });
            let (spec, guard) = crate::cachemount::prepare(
                store,
                sh.sandbox.get()?,
                crate::cachemount::CacheMountSpec {
                    target,
                    id: id.as_deref(),
                    read_only: *read_only,
                    sharing: *sharing,
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    seed,
                },
            )?;
            guards.push(Box::new(guard));
            Some(spec)
        }
        Mount::Secret {
            id,
            target,
            env: env_name,
            required,
            mode,
            uid,
            gid,
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
            let value = secret_value(sh, &id)?;
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
            crate::mountfile::write_secret(
                sh.sandbox.get()?,
                &file,
                &value,
                crate::mountfile::FileAccess {
                    uid: *uid,
                    gid: *gid,
                    mode: mode.unwrap_or(crate::mountfile::SECRET_MODE),
                },
            )?;
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
            read_write,
            ..
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
                    let view = View::open(sh.snap, store, &[])?;
                    let dir = view_path(&view)?;
                    from_views.push(view);
                    crate::ctxmount::materialize(sh.context, &src, &dir)?
                }
                // Read-only: a copy in the step's scratch directory, removed with it.
                None => {
                    let dir = scratch.join(format!("context-{n}"));
                    std::fs::create_dir(&dir).map_err(|e| BuildError::io(&dir, e))?;
                    crate::ctxmount::materialize(sh.context, &src, &dir)?
                }
                // Another stage or an image: a snapshot of its layers. Writes to a `rw`
                // mount land in that snapshot's scratch upper and are discarded with it.
                Some(chain) => {
                    let view = View::open(sh.snap, store, &chain.diff_ids())?;
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
            mode,
            uid,
            gid,
        } => {
            // A socket of the step's own, with the requested owner and mode, forwards to the
            // agent (whose own socket keeps the host's owner and mode).
            let id = id.as_deref().unwrap_or("default");
            let Some(src) = sh.req.ssh.iter().find(|s| s.id == id) else {
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
            let socket = scratch.join(format!("ssh-{n}.sock"));
            let proxy = crate::mountfile::agent_proxy(
                sh.sandbox.get()?,
                &src.socket,
                &socket,
                crate::mountfile::FileAccess {
                    uid: *uid,
                    gid: *gid,
                    mode: mode.unwrap_or(crate::mountfile::SSH_MODE),
                },
            )?;
            guards.push(Box::new(proxy));
            Some(MountSpec {
                target,
                kind: MountKind::Bind {
                    source: socket,
                    readonly: false,
                },
            })
        }
    })
}

/// A secret's bytes from the request; never logged, never stored.
fn secret_value(sh: &Shared<'_>, id: &str) -> Result<Option<Vec<u8>>, BuildError> {
    let Some(s) = sh.req.secrets.iter().find(|s| s.id == id) else {
        return Ok(None);
    };
    match &s.source {
        SecretFrom::File(p) => std::fs::read(p).map(Some).map_err(|e| BuildError::io(p, e)),
        SecretFrom::Env(v) => Ok(std::env::var_os(v).map(|x| x.into_encoded_bytes())),
    }
}
