//! The ops a build graph is made of, each defined once: what it needs, what its cache key
//! covers, how it runs.
//!
//! - [`SourceOp`]: a base image's layers (or `scratch`), resolved before the graph is built.
//! - [`ConfigOp`]: an instruction that changes only the image config (ENV, LABEL, CMD...); its
//!   effect is applied while lowering, so it does no work and has no key, but it is a step the
//!   build shows.
//! - [`FileOp`]: COPY, ADD and WORKDIR, done by the engine itself on a snapshot.
//! - [`ExecOp`]: RUN, done by the sandbox on a snapshot.
//!
//! # Keys
//! A file or exec op's key (see [`crate::key`] for the encoding) is, in this order: `op` (the op
//! kind), the fields its `define` writes (documented there), `parent` (the chain id of the
//! filesystem it changes), `inputs` (chain ids of the other stages or images it reads), `sources`
//! (the content digest of the context files it reads), `epoch` (`SOURCE_DATE_EPOCH`, which
//! clamps the layer's times) and `ids` (the id map the layer is written with). Nothing else can
//! change the result: the image config is not part of it beyond what the op itself uses (a LABEL
//! before a RUN does not invalidate it, as in BuildKit), and secret values never are.

mod copyplan;
mod exec;
mod file;

pub(crate) use exec::ExecOp;
pub(crate) use file::{CopyOp, FileOp};

use rbuild_digest::Digest;
use rbuild_image::LayerDesc;

use crate::chain::Chain;
use crate::key::Key;
use crate::progress::StepId;
use crate::shared::Shared;
use crate::BuildError;

/// A base image (or `scratch`): its layers are known before anything runs.
pub(crate) struct SourceOp {
    /// How the image was named (for identity: two stages on one image share the vertex).
    pub name: String,
    /// Its layers, base first.
    pub layers: Vec<LayerDesc>,
}

/// A config-only step: applied while lowering, shown when its turn comes.
pub(crate) struct ConfigOp;

/// One op of the graph.
pub(crate) enum Op {
    Source(SourceOp),
    Config(ConfigOp),
    File(Box<FileOp>),
    Exec(Box<ExecOp>),
}

/// What a key is made of, kept so a miss can be explained against the previous record.
#[derive(Clone, Debug)]
pub(crate) struct KeyParts {
    /// The key.
    pub key: Digest,
    /// The op's own definition (`define`).
    pub definition: Digest,
    /// The chain id of the filesystem the op changes.
    pub parent: String,
    /// The chain ids of other stages or images it reads.
    pub inputs: Vec<String>,
    /// The digest of the context files it reads, when it reads any.
    pub sources: Option<ContextSources>,
}

/// The context files an op reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContextSources {
    /// The sources as written (`.`, `src/`, `*.txt`).
    pub patterns: Vec<String>,
    /// Their content digest.
    pub digest: String,
    /// Each file's entry, kept so a later miss can name the files that changed.
    pub manifest: Option<std::sync::Arc<rbuild_context::SourceManifest>>,
}

/// What an op reads from outside the graph, for its key.
pub(crate) enum Reads {
    /// Nothing outside its inputs.
    Nothing,
    /// Context files.
    Context(ContextSources),
    /// Something that cannot be keyed before it is fetched (a URL): the op always runs.
    Unkeyable,
}

impl Op {
    /// Whether an identical op on the same inputs may stand for several steps. Config steps are
    /// each shown on their own.
    pub fn shareable(&self) -> bool {
        !matches!(self, Op::Config(_))
    }

    /// Writes the op's definition: what it does, independent of its inputs' results.
    pub fn define(&self, k: &mut Key) {
        match self {
            Op::Source(s) => {
                k.str("op", "source").str("name", &s.name);
                k.list("layers", s.layers.len());
                for l in &s.layers {
                    k.str("#", &l.diff_id.to_string());
                }
            }
            Op::Config(_) => {
                k.str("op", "config");
            }
            Op::File(f) => f.define(k),
            Op::Exec(e) => e.define(k),
        }
    }

    /// The op's cache key over its inputs' results, or `None` when it has no cached result
    /// (sources, config steps, URL downloads).
    pub fn key(
        &self,
        sh: &Shared<'_>,
        step: &StepId,
        inputs: &[&Chain],
    ) -> Result<Option<KeyParts>, BuildError> {
        let reads = match self {
            Op::Source(_) | Op::Config(_) => return Ok(None),
            Op::File(f) => f.reads(sh, step)?,
            Op::Exec(e) => e.reads(sh, step)?,
        };
        let sources = match reads {
            Reads::Unkeyable => return Ok(None),
            Reads::Nothing => None,
            Reads::Context(c) => Some(c),
        };
        let mut def = Key::new();
        self.define(&mut def);
        let definition = def.finish();
        let parent = inputs.first().map(|c| c.id()).unwrap_or_default();
        let others: Vec<String> = inputs.iter().skip(1).map(|c| c.id()).collect();
        let mut k = Key::new();
        k.str("definition", &definition.to_string())
            .str("parent", &parent)
            .strs("inputs", &others);
        match &sources {
            Some(s) => k.strs("sources", &s.patterns).str("digest", &s.digest),
            None => k.opt_str("sources", None),
        };
        k.opt_i64("epoch", sh.req.source_date_epoch);
        match &sh.id_map {
            None => {
                k.opt_str("ids", None);
            }
            Some(m) => {
                k.list("ids", m.uids.len() + m.gids.len());
                for (kind, ranges) in [("uid", &m.uids), ("gid", &m.gids)] {
                    for r in ranges {
                        k.str(
                            "#",
                            &format!("{kind} {} {} {}", r.container, r.host, r.size),
                        );
                    }
                }
            }
        }
        if let (Op::Exec(_), false) = (self, sh.devices.is_empty()) {
            // Written only when there are devices, so keys of builds without them are unchanged
            // (see `crate::key`'s format notes).
            k.strs("devices", &sh.devices.names);
        }
        Ok(Some(KeyParts {
            key: k.finish(),
            definition,
            parent,
            inputs: others,
            sources,
        }))
    }

    /// Does the op's work on its inputs' results and returns its own.
    pub fn run(
        &self,
        sh: &Shared<'_>,
        step: &StepId,
        inputs: &[&Chain],
    ) -> Result<Chain, BuildError> {
        match self {
            Op::Source(s) => Ok(Chain {
                layers: s.layers.clone(),
                created: None,
            }),
            Op::Config(_) => Ok(Chain::default()),
            Op::File(f) => f.run(sh, step, inputs),
            Op::Exec(e) => e.run(sh, step, inputs),
        }
    }
}

/// Commits a view as the step's layer on top of `parent`. Every file and exec step makes a layer,
/// even an empty one, as BuildKit does for COPY, WORKDIR and RUN.
pub(crate) fn commit_layer(
    sh: &Shared<'_>,
    parent: &Chain,
    view: crate::view::View<'_>,
    exclude: &[std::path::PathBuf],
    created_by: &str,
) -> Result<Chain, BuildError> {
    let c = view.commit(&sh.write_options(), exclude)?;
    if let Some(first) = c.unmapped.first() {
        sh.event(crate::progress::Event::Warning {
            message: format!(
                "{created_by}: {} file(s) (first: /{first}) are owned by host ids outside the \
                 build's user namespace and were recorded as 65534 (nobody)",
                c.unmapped.len()
            ),
        });
    }
    Ok(with_layer(sh, parent, c.diff_id, c.size))
}

/// `parent` with one more layer, made by the step now.
pub(crate) fn with_layer(
    sh: &Shared<'_>,
    parent: &Chain,
    diff_id: rbuild_digest::Digest,
    size: u64,
) -> Chain {
    let mut layers = parent.layers.clone();
    layers.push(LayerDesc { diff_id, size });
    Chain {
        layers,
        created: Some(crate::meta::timestamp(sh.req.source_date_epoch)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> ExecOp {
        ExecOp {
            argv: vec!["/bin/sh".into(), "-c".into(), "make".into()],
            env: vec!["PATH=/usr/bin:/bin".into(), "V=1".into()],
            cwd: "/src".into(),
            user: "app".into(),
            network_host: true,
            mounts: vec![
                rbuild_dockerfile::Mount::Cache {
                    target: "/root/.cache".into(),
                    id: None,
                    read_only: false,
                    sharing: rbuild_dockerfile::CacheSharing::Locked,
                    from: None,
                    source: None,
                    mode: Some(0o755),
                    uid: None,
                    gid: None,
                },
                rbuild_dockerfile::Mount::Secret {
                    id: Some("tok".into()),
                    target: None,
                    env: None,
                    required: true,
                    mode: None,
                    uid: None,
                    gid: None,
                },
            ],
            mount_inputs: vec![None, None],
            created_by: "ignored: history only".into(),
            platform: rbuild_dockerfile::Platform::linux_amd64(),
        }
    }

    fn copy() -> FileOp {
        FileOp::Copy(Box::new(CopyOp {
            add: None,
            copy: rbuild_dockerfile::Copy {
                sources: vec!["src/".into(), "*.toml".into()],
                dest: "/app/".into(),
                chown: Some("1000:1000".into()),
                ..Default::default()
            },
            workdir: "/".into(),
            created_by: "ignored".into(),
        }))
    }

    fn definition(op: &Op) -> String {
        let mut k = Key::new();
        op.define(&mut k);
        k.finish().to_string()
    }

    /// Each op's definition encoding, pinned: if one of these fails, the op's keys changed and
    /// every cached result of that op kind is lost; bump `KEY_FORMAT` if that is intended.
    #[test]
    fn golden_definitions() {
        assert_eq!(
            definition(&Op::Exec(Box::new(exec()))),
            "sha256:09dc9b6e1994f111b53b3f744cac4cc7c78843873587f001a1d55d25983e12a4"
        );
        assert_eq!(
            definition(&Op::File(Box::new(copy()))),
            "sha256:4fac08347884e3d923c9bfbea82ee88be1a21f1357efc5fddf9ef56d53246874"
        );
        assert_eq!(
            definition(&Op::File(Box::new(FileOp::Workdir {
                path: "/app".into(),
                user: None,
                created_by: "WORKDIR /app".into(),
            }))),
            "sha256:8e30e07a55b2093a6c092a2fefa204664d25a77e3b611c83f162296bdbbe86be"
        );
    }

    /// What can change a result changes the definition; the history text does not.
    #[test]
    fn definitions_cover_what_changes_the_result() {
        let base = definition(&Op::Exec(Box::new(exec())));
        type Change = Box<dyn Fn(&mut ExecOp)>;
        let changed: Vec<Change> = vec![
            Box::new(|e| e.argv[2] = "make all".into()),
            Box::new(|e| e.env[1] = "V=2".into()),
            Box::new(|e| e.cwd = "/".into()),
            Box::new(|e| e.user = "root".into()),
            Box::new(|e| e.network_host = false),
            Box::new(|e| {
                if let rbuild_dockerfile::Mount::Cache { sharing, .. } = &mut e.mounts[0] {
                    *sharing = rbuild_dockerfile::CacheSharing::Shared;
                }
            }),
            Box::new(|e| e.mounts.pop().map(drop).unwrap_or(())),
            Box::new(|e| e.platform = rbuild_dockerfile::Platform::parse("linux/arm64").unwrap()),
        ];
        for (i, f) in changed.iter().enumerate() {
            let mut e = exec();
            f(&mut e);
            assert_ne!(
                definition(&Op::Exec(Box::new(e))),
                base,
                "change {i} is not in the key"
            );
        }
        let mut e = exec();
        e.created_by = "something else".into();
        assert_eq!(definition(&Op::Exec(Box::new(e))), base);
    }
}
