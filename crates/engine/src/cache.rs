//! The build cache: a step whose definition and inputs were seen before is not run again; its
//! recorded result (config, layers) is reused, as `docker build` does.
//!
//! As in BuildKit, a key is computed before the work, from what decides the step's result:
//! - the stage state the step starts from (the config without its timestamps, the layer chain by
//!   diff id), which already covers the base image, SHELL, USER, WORKDIR and every earlier step;
//! - the instruction after expansion (flags included; heredoc bodies are part of it);
//! - for `RUN`, the build arguments it sees as environment, and the build's default network;
//! - how layers are written: `SOURCE_DATE_EPOCH` and the id map of rootless builds;
//! - the content of what the step reads from outside the stage: context sources of COPY/ADD and
//!   of `RUN --mount=type=bind` (a digest of paths, modes, sizes, contents and link targets),
//!   and the layer chain of a `--from` stage or image.
//!
//! Secret contents never enter a key (only the mount's id and target, which are part of the
//! instruction), nor do cache-mount contents (including a `from=` seed), as in BuildKit. A step that fetches a URL (`ADD
//! https://…`) has no key and always runs; the steps after it still hit when it produced the same
//! layer, because keys chain through the resulting state, not through the steps that led to it.
//!
//! A result is a small JSON record blob shaped like an OCI manifest (`config`, `layers`), so the
//! store's gc keeps the config and layers it points to, behind the reference `@cache/<key hex>`
//! (never listed as an image). Records are written blob first, reference second, both atomic, so a
//! killed build leaves either no record or a whole one; concurrent builds writing the same key
//! both write a valid record. A record whose blobs are gone is a miss. `rbuild prune` drops all
//! records.

use std::path::Path;

use digest::{Digest, Hasher};
use dockerfile::{Instruction, InstructionKind, Mount, Scope};
use image::config::ImageConfig;
use image::LayerDesc;
use serde_json::{json, Value};
use store::{RefTarget, Store};

use crate::stage::{StageRun, StageState};
use crate::BuildError;

const REF_PREFIX: &str = "@cache/";
const MEDIA_TYPE: &str = "application/vnd.rbuild.cache.step.v1+json";
/// Keys change with the format of this module and with rbuild's version, whose instruction
/// semantics they hash.
const KEY_VERSION: &str = concat!("rbuild-step-cache-v1 ", env!("CARGO_PKG_VERSION"));

/// Deletes every build-cache record, so the next gc can reclaim what only the cache kept;
/// returns how many there were.
pub fn prune(store: &Store) -> Result<usize, BuildError> {
    let mut n = 0;
    for (name, _) in store.list_refs()? {
        if name.starts_with(REF_PREFIX) && store.delete_ref(&name)? {
            n += 1;
        }
    }
    Ok(n)
}

/// A digest of everything in a stage state that later steps can observe; timestamps (the config's
/// and history's `created`) are left out, so a rebuild at another time gets the same keys.
pub(crate) fn state_digest(state: &StageState) -> Digest {
    let mut config: Value =
        serde_json::from_slice(&state.config.to_canonical_json()).unwrap_or(Value::Null);
    if let Some(obj) = config.as_object_mut() {
        obj.remove("created");
        if let Some(history) = obj.get_mut("history").and_then(Value::as_array_mut) {
            for h in history {
                if let Some(h) = h.as_object_mut() {
                    h.remove("created");
                }
            }
        }
    }
    let layers: Vec<String> = state.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let v = json!({"config": config, "layers": layers, "cmdSet": state.cmd_set});
    Digest::of(&serde_json::to_vec(&v).unwrap_or_default())
}

/// Builds a key from labelled parts; the labels and lengths keep `("a","bc")` and `("ab","c")`
/// apart.
struct KeyBuilder(Hasher);

impl KeyBuilder {
    fn new() -> Self {
        let mut k = KeyBuilder(Hasher::new());
        k.part("version", KEY_VERSION.as_bytes());
        k
    }
    fn part(&mut self, label: &str, bytes: &[u8]) {
        for piece in [label.as_bytes(), bytes] {
            self.0.update(&(piece.len() as u64).to_le_bytes());
            self.0.update(piece);
        }
    }
    fn finish(self) -> Digest {
        self.0.finish()
    }
}

impl StageRun<'_> {
    /// The step's cache key, or `None` when the step must always run (a URL fetch) or has no
    /// result worth caching (config-only steps are cheaper to redo than to look up).
    pub(crate) fn cache_key(
        &self,
        state: &StageState,
        scope: &Scope,
        instr: &Instruction,
    ) -> Result<Option<Digest>, BuildError> {
        // Config-only steps have no key: decide that before hashing the parent state.
        if !matches!(
            instr.kind,
            InstructionKind::Workdir(_)
                | InstructionKind::Copy(_)
                | InstructionKind::Add(_)
                | InstructionKind::Run(_)
        ) {
            return Ok(None);
        }
        let mut k = KeyBuilder::new();
        k.part("parent", state_digest(state).to_string().as_bytes());
        // The expanded instruction, without its position in the file.
        k.part("instruction", format!("{:?}", instr.kind).as_bytes());
        // How the layer is written: timestamps clamped (SOURCE_DATE_EPOCH) and the id map
        // (a single-id rootless build squashes owners a full map keeps).
        k.part("epoch", format!("{:?}", self.source_date_epoch).as_bytes());
        k.part("ids", format!("{:?}", self.sandbox.id_map()).as_bytes());
        match &instr.kind {
            InstructionKind::Workdir(_) => {}
            InstructionKind::Copy(copy) => self.copy_inputs(&mut k, instr, copy)?,
            InstructionKind::Add(add) => {
                let remote = add.copy.sources.iter().any(|s| is_url(s));
                if remote || add.checksum.is_some() {
                    return Ok(None);
                }
                self.copy_inputs(&mut k, instr, &add.copy)?;
            }
            InstructionKind::Run(run) => {
                for (name, value) in scope.used_args() {
                    k.part("arg", format!("{name}={value}").as_bytes());
                }
                k.part(
                    "network",
                    self.req.network.as_deref().unwrap_or("default").as_bytes(),
                );
                for m in &run.mounts {
                    if let Mount::Bind { source, from, .. } = m {
                        let source = source.clone().unwrap_or_else(|| ".".into());
                        match from {
                            None => {
                                let d = self
                                    .context
                                    .digest_sources(std::slice::from_ref(&source))
                                    .map_err(|e| self.step_error(instr, e))?;
                                k.part("bind", format!("{source} {d}").as_bytes());
                            }
                            Some(from) => {
                                let chain = self.chain_of_from(instr, from)?;
                                k.part("bind-from", format!("{source} {chain:?}").as_bytes());
                            }
                        }
                    }
                }
            }
            _ => return Ok(None),
        }
        Ok(Some(k.finish()))
    }

    fn copy_inputs(
        &self,
        k: &mut KeyBuilder,
        instr: &Instruction,
        copy: &dockerfile::Copy,
    ) -> Result<(), BuildError> {
        if !copy.heredocs.is_empty() {
            return Ok(()); // the bodies are part of the instruction
        }
        match &copy.from {
            None => {
                let d = self
                    .context
                    .digest_sources(&copy.sources)
                    .map_err(|e| self.step_error(instr, e))?;
                k.part("context", d.as_bytes());
            }
            Some(from) => {
                let chain = self.chain_of_from(instr, from)?;
                k.part("from", format!("{chain:?}").as_bytes());
            }
        }
        Ok(())
    }

    /// The state recorded for `key`, if every blob it needs is still in the store.
    pub(crate) fn cache_get(&self, key: &Digest) -> Option<StageState> {
        let store = self.images.store();
        let target = store.get_ref(&ref_name(key)).ok()??;
        if target.media_type != MEDIA_TYPE {
            return None;
        }
        let record: Value = serde_json::from_slice(&store.read_blob(&target.digest).ok()?).ok()?;
        let config_digest: Digest = record["config"]["digest"].as_str()?.parse().ok()?;
        let config = ImageConfig::from_json(&store.read_blob(&config_digest).ok()?).ok()?;
        let mut layers = Vec::new();
        for l in record["layers"].as_array()? {
            let diff_id: Digest = l["digest"].as_str()?.parse().ok()?;
            let size = l["size"].as_u64()?;
            if !image::layers::layer_available(store, &diff_id).ok()? {
                return None;
            }
            layers.push(LayerDesc { diff_id, size });
        }
        let cmd_set = record["rbuild"]["cmdSet"].as_bool()?;
        Some(StageState {
            config,
            layers,
            cmd_set,
        })
    }

    /// Records `state` as the result of the step with `key`. A failure only costs a future
    /// cache hit, so it is reported as a warning by the caller, never as a failed build.
    pub(crate) fn cache_put(&self, key: &Digest, state: &StageState) -> Result<(), BuildError> {
        let store = self.images.store();
        let config = store.put_bytes(&state.config.to_canonical_json())?;
        let layers: Vec<Value> = state
            .layers
            .iter()
            .map(|l| json!({"digest": l.diff_id.to_string(), "size": l.size}))
            .collect();
        let record = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE,
            "config": {"digest": config.to_string()},
            "layers": layers,
            "rbuild": {"cmdSet": state.cmd_set},
        });
        let digest = store.put_bytes(&serde_json::to_vec(&record).unwrap_or_default())?;
        store.set_ref(
            &ref_name(key),
            &RefTarget {
                digest,
                media_type: MEDIA_TYPE.into(),
                created: None,
            },
        )?;
        Ok(())
    }
}

fn ref_name(key: &Digest) -> String {
    format!("{REF_PREFIX}{}", key.hex())
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@")
}

/// The annotation naming a record's key in an exported cache's `index.json`.
const KEY_ANNOTATION: &str = "dev.rbuild.cache.key";

/// Writes the records of `keys` (the steps of one build), with their configs and layers, as an
/// OCI layout in `dir` (`--cache-to type=local,dest=DIR`), so another machine or a later CI job
/// can start from them. Blobs are written to temp names and renamed; `index.json` goes last, so
/// a reader never sees a record whose blobs are missing. Returns how many records were written.
pub(crate) fn export_local(
    store: &Store,
    dir: &Path,
    keys: &[Digest],
) -> Result<usize, BuildError> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| BuildError::io(&blobs, e))?;
    let mut manifests = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for key in keys {
        if !seen.insert(*key) {
            continue;
        }
        let Some(target) = store.get_ref(&ref_name(key))? else {
            continue;
        };
        let record = store.read_blob(&target.digest)?;
        let parsed: Value = serde_json::from_slice(&record)
            .map_err(|e| BuildError::Task(format!("cache record {}: {e}", target.digest)))?;
        let digest_at = |v: &Value| v["digest"].as_str().and_then(|s| s.parse::<Digest>().ok());
        let config = digest_at(&parsed["config"]).ok_or_else(|| {
            BuildError::Task(format!("cache record {} has no config", target.digest))
        })?;
        copy_blob(&blobs, &config, || Ok(Box::new(store.open_blob(&config)?)))?;
        for l in parsed["layers"].as_array().into_iter().flatten() {
            let Some(diff_id) = digest_at(l) else {
                continue;
            };
            copy_blob(&blobs, &diff_id, || {
                Ok(Box::new(image::layers::open_layer(store, &diff_id)?))
            })?;
        }
        let record_digest = target.digest;
        copy_blob(&blobs, &record_digest, || {
            Ok(Box::new(std::io::Cursor::new(record.clone())))
        })?;
        manifests.push(json!({
            "mediaType": MEDIA_TYPE,
            "digest": record_digest.to_string(),
            "size": record.len(),
            "annotations": {KEY_ANNOTATION: key.hex()},
        }));
    }
    let count = manifests.len();
    write_atomic(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index = json!({"schemaVersion": 2, "manifests": manifests});
    write_atomic(
        &dir.join("index.json"),
        &serde_json::to_vec(&index).unwrap_or_default(),
    )?;
    Ok(count)
}

/// Loads the records of an exported cache (`--cache-from type=local,src=DIR`) into the store,
/// every blob verified against its digest on the way in, so the build's lookups can hit them.
/// Returns how many records were imported.
pub(crate) fn import_local(store: &Store, dir: &Path) -> Result<usize, BuildError> {
    let index_path = dir.join("index.json");
    let index: Value = serde_json::from_slice(
        &std::fs::read(&index_path).map_err(|e| BuildError::io(&index_path, e))?,
    )
    .map_err(|e| BuildError::Request(format!("{}: {e}", index_path.display())))?;
    let blob = |d: &Digest| dir.join("blobs/sha256").join(d.hex());
    let mut count = 0;
    for m in index["manifests"].as_array().into_iter().flatten() {
        if m["mediaType"].as_str() != Some(MEDIA_TYPE) {
            continue;
        }
        let key = m["annotations"][KEY_ANNOTATION].as_str().and_then(|h| {
            (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| format!("sha256:{h}").parse::<Digest>().ok())
                .flatten()
        });
        let Some(key) = key else { continue };
        let Some(record_digest) = m["digest"].as_str().and_then(|s| s.parse::<Digest>().ok())
        else {
            continue;
        };
        let (record_digest, _) = store.put_file(&blob(&record_digest), Some(&record_digest))?;
        let record: Value = serde_json::from_slice(&store.read_blob(&record_digest)?)
            .map_err(|e| BuildError::Request(format!("cache record {record_digest}: {e}")))?;
        let mut needed: Vec<Digest> = Vec::new();
        if let Some(d) = record["config"]["digest"]
            .as_str()
            .and_then(|s| s.parse().ok())
        {
            needed.push(d);
        }
        for l in record["layers"].as_array().into_iter().flatten() {
            if let Some(d) = l["digest"].as_str().and_then(|s| s.parse().ok()) {
                needed.push(d);
            }
        }
        for d in &needed {
            if !image::layers::layer_available(store, d)? {
                store.put_file(&blob(d), Some(d))?;
            }
        }
        store.set_ref(
            &ref_name(&key),
            &RefTarget {
                digest: record_digest,
                media_type: MEDIA_TYPE.into(),
                created: None,
            },
        )?;
        count += 1;
    }
    Ok(count)
}

/// Copies a blob into an exported layout unless it is there already, through a temp file.
fn copy_blob(
    blobs: &Path,
    digest: &Digest,
    open: impl FnOnce() -> Result<Box<dyn std::io::Read>, BuildError>,
) -> Result<(), BuildError> {
    let dest = blobs.join(digest.hex());
    if dest.exists() {
        return Ok(());
    }
    let mut src = open()?;
    let tmp = blobs.join(format!(".tmp-{}-{}", std::process::id(), digest.hex()));
    let mut out = std::fs::File::create(&tmp).map_err(|e| BuildError::io(&tmp, e))?;
    std::io::copy(&mut src, &mut out).map_err(|e| BuildError::io(&tmp, e))?;
    out.sync_all().map_err(|e| BuildError::io(&tmp, e))?;
    std::fs::rename(&tmp, &dest).map_err(|e| BuildError::io(&dest, e))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| BuildError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| BuildError::io(path, e))
}
