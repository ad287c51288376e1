//! The build cache: a step whose key was seen before is not run again; its recorded result (the
//! layer chain it produced) is reused, as `docker build` does.
//!
//! Keys are computed before the work (see `ops` for what each op's key covers and `key` for the
//! encoding). A result is a small JSON record blob shaped like an OCI manifest (`layers`), so the
//! store's gc keeps the layers it points to, behind the reference `@cache/<key hex>` (never listed
//! as an image). Records are written blob first, reference second, both atomic, so a killed build
//! leaves either no record or a whole one; concurrent builds writing the same key both write a
//! valid record. A record whose layers are gone is a miss. `rbuild prune` drops all records, and
//! the step lineages `explain` keeps.

use std::path::Path;

use rbuild_digest::Digest;
use rbuild_image::LayerDesc;
use rbuild_store::{RefTarget, Store};
use serde_json::{json, Value};

use crate::chain::Chain;
use crate::BuildError;

const REF_PREFIX: &str = "@cache/";
/// v2 records hold the step's layer chain and time; v1 records (a whole stage state under
/// `Debug`-text keys) are never looked up again and go with `rbuild prune`.
const MEDIA_TYPE: &str = "application/vnd.rbuild.cache.step.v2+json";

/// Deletes every build-cache record and step lineage, so the next gc can reclaim what only the
/// cache kept, and the contexts' stat caches (which would otherwise stay for contexts long
/// gone; the next build of a context re-hashes it once); returns how many records there were.
pub fn prune(store: &Store) -> Result<usize, BuildError> {
    let mut n = 0;
    for (name, _) in store.list_refs()? {
        if name.starts_with(REF_PREFIX) && store.delete_ref(&name)? {
            n += 1;
        }
        if name.starts_with(crate::explain::REF_PREFIX) {
            store.delete_ref(&name)?;
        }
    }
    let stat_caches = store.root().join("contexts");
    match std::fs::remove_dir_all(&stat_caches) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(BuildError::io(&stat_caches, e))
        }
        _ => {}
    }
    Ok(n)
}

/// The result recorded for `key`, if every layer it needs is still in the store.
pub(crate) fn get(store: &Store, key: &Digest) -> Option<Chain> {
    let target = store.get_ref(&ref_name(key)).ok()??;
    if target.media_type != MEDIA_TYPE {
        return None;
    }
    let record: Value = serde_json::from_slice(&store.read_blob(&target.digest).ok()?).ok()?;
    let mut layers = Vec::new();
    for l in record["layers"].as_array()? {
        let diff_id: Digest = l["digest"].as_str()?.parse().ok()?;
        let size = l["size"].as_u64()?;
        if !rbuild_image::layers::layer_available(store, &diff_id).ok()? {
            return None;
        }
        layers.push(LayerDesc { diff_id, size });
    }
    Some(Chain {
        layers,
        created: record["created"].as_str().map(str::to_string),
    })
}

/// Records `chain` as the result of the step with `key`. A failure only costs a future
/// cache hit, so the caller reports it as a warning, never as a failed build.
pub(crate) fn put(store: &Store, key: &Digest, chain: &Chain) -> Result<(), BuildError> {
    let layers: Vec<Value> = chain
        .layers
        .iter()
        .map(|l| json!({"digest": l.diff_id.to_string(), "size": l.size}))
        .collect();
    let record = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE,
        "layers": layers,
        "created": chain.created,
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

fn ref_name(key: &Digest) -> String {
    format!("{REF_PREFIX}{}", key.hex())
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
        for l in parsed["layers"].as_array().into_iter().flatten() {
            let Some(diff_id) = digest_at(l) else {
                continue;
            };
            copy_blob(&blobs, &diff_id, || {
                Ok(Box::new(rbuild_image::layers::open_layer(store, &diff_id)?))
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
            if !rbuild_image::layers::layer_available(store, d)? {
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
