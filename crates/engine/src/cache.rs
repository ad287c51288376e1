//! The build cache: a step whose key was seen before is not run again; its recorded result (the
//! layer chain it produced) is reused, as `docker build` does.
//!
//! Keys are computed before the work (see `ops` for what each op's key covers and `key` for the
//! encoding). A result is a small JSON record blob shaped like an OCI manifest (`layers`), so the
//! store's gc keeps the layers it points to, behind the reference `@cache/<key hex>` (never listed
//! as an image). Records are written blob first, reference second, both atomic, so a killed build
//! leaves either no record or a whole one; concurrent builds writing the same key both write a
//! valid record. A record whose layers are gone is a miss. `rbuild prune` drops all records, and
//! the step lineages `explain` keeps. Exported caches (`--cache-to`/`--cache-from`) carry these
//! records in their own format: see `cachefmt`.

use rbuild_digest::Digest;
use rbuild_image::LayerDesc;
use rbuild_store::{RefTarget, Store};
use serde_json::{json, Value};

use crate::chain::Chain;
use crate::BuildError;

const REF_PREFIX: &str = "@cache/";
/// The reference prefix of step lineages (`explain`'s records of what each step last saw), kept
/// here with the records' own so that pruning the cache knows both.
pub(crate) const LINEAGE_PREFIX: &str = "@steps/";
/// v2 records hold the step's layer chain and time; v1 records (a whole stage state under
/// `Debug`-text keys) are never looked up again and go with `rbuild prune`.
const MEDIA_TYPE: &str = "application/vnd.rbuild.cache.step.v2+json";

/// The store directory of the contexts' stat caches; [`prune`] clears it with the cache.
pub(crate) const STAT_CACHE_DIR: &str = "contexts";
/// The store directory of the COPY plan's index (see `ops::copyplan`); [`prune`] clears it too.
pub(crate) const COPY_PLAN_DIR: &str = "copyplan";

/// Deletes every build-cache record and step lineage, so the next gc can reclaim what only the
/// cache kept, the contexts' stat caches (which would otherwise stay for contexts long gone;
/// the next build of a context re-hashes it once) and the COPY plan's index; returns how many
/// records there were.
pub fn prune(store: &Store) -> Result<usize, BuildError> {
    let mut n = 0;
    for (name, _) in store.list_refs()? {
        if name.starts_with(REF_PREFIX) && store.delete_ref(&name)? {
            n += 1;
        }
        if name.starts_with(LINEAGE_PREFIX) {
            store.delete_ref(&name)?;
        }
    }
    // The COPY plan's index only names layers; its notes go with the cache.
    for dir in [STAT_CACHE_DIR, COPY_PLAN_DIR] {
        let dir = store.root().join(dir);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(BuildError::io(&dir, e))
            }
            _ => {}
        }
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
