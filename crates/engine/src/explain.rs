//! Why a step runs instead of coming from the cache.
//!
//! A key says only *whether* a step can be reused. To say *why not*, each step keeps a lineage
//! record: what its key was made of the last time it was solved (the parent chain, its own
//! definition and text, the build arguments it saw, the context files it read). A lineage is
//! "the same step" across builds: the Dockerfile, the stage and the instruction's position in it
//! (see `lower::lineage`), so editing an instruction is explained as such rather than as a first
//! build. On a miss the current parts are compared with the record, nearest cause first.
//!
//! Records are small JSON blobs behind `@steps/<lineage hex>`; the context manifest a record
//! names is listed under `manifests` so the store's gc keeps it. `rbuild prune` drops them with
//! the cache.

use rbuild_digest::Digest;
use rbuild_store::{RefTarget, Store};
use serde_json::{json, Value};

use crate::graph::Step;
use crate::ops::KeyParts;
use crate::progress::MissReason;

use crate::cache::LINEAGE_PREFIX as REF_PREFIX;
const MEDIA_TYPE: &str = "application/vnd.rbuild.step-lineage.v1+json";
/// How many changed file names a reason lists.
const SHOWN_FILES: usize = 5;

fn ref_name(lineage: &Digest) -> String {
    format!("{REF_PREFIX}{}", lineage.hex())
}

/// The previous record of a step's lineage, if any.
fn previous(store: &Store, lineage: &Digest) -> Option<Value> {
    let target = store.get_ref(&ref_name(lineage)).ok()??;
    if target.media_type != MEDIA_TYPE {
        return None;
    }
    serde_json::from_slice(&store.read_blob(&target.digest).ok()?).ok()
}

/// Explains a miss of `step` whose key is `parts`, against the step's previous record.
/// `changed_files` lists the context paths that differ from the previous manifest, when known.
pub(crate) fn why(
    store: &Store,
    step: &Step,
    parts: &KeyParts,
    changed_files: &dyn Fn(Option<&str>) -> Option<Vec<String>>,
) -> MissReason {
    let Some(prev) = previous(store, &step.lineage) else {
        return MissReason::FirstBuild;
    };
    let s = |k: &str| prev[k].as_str().map(str::to_string);
    if s("key").as_deref() == Some(parts.key.to_string().as_str()) {
        return MissReason::ResultPruned;
    }
    if s("parent").as_deref() != Some(parts.parent.as_str()) {
        return MissReason::PreviousStepChanged;
    }
    if s("text").as_deref() != Some(step.id.text.as_str()) {
        return MissReason::InstructionChanged {
            was: s("text").unwrap_or_default(),
        };
    }
    let old_args: Vec<(String, String)> = prev["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a[0].as_str()?.to_string(), a[1].as_str()?.to_string())))
        .collect();
    let mut names: Vec<String> = step
        .args
        .iter()
        .filter(|a| !old_args.contains(a))
        .map(|a| a.0.clone())
        .chain(
            old_args
                .iter()
                .filter(|a| !step.args.contains(a))
                .map(|a| a.0.clone()),
        )
        .collect();
    names.sort();
    names.dedup();
    if !names.is_empty() {
        return MissReason::BuildArgsChanged { names };
    }
    let old_sources = s("sources");
    let new_sources = parts.sources.as_ref().map(|c| c.digest.clone());
    if old_sources != new_sources {
        let old_manifest = prev["manifests"][0]["digest"].as_str();
        let files = changed_files(old_manifest).unwrap_or_default();
        return MissReason::ContextChanged {
            count: files.len(),
            files: files.into_iter().take(SHOWN_FILES).collect(),
        };
    }
    let old_inputs: Vec<&str> = prev["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if old_inputs != parts.inputs.iter().map(String::as_str).collect::<Vec<_>>() {
        return MissReason::FromChanged;
    }
    MissReason::DefinitionChanged
}

/// Records what `step`'s key was made of this time, for the next miss's explanation; a failure
/// only costs a less precise explanation later. `manifest` stores the context manifest and is
/// only called when the record changes (a no-op rebuild writes nothing).
pub(crate) fn record(
    store: &Store,
    step: &Step,
    parts: &KeyParts,
    manifest: &dyn Fn() -> Option<Digest>,
) -> Result<(), rbuild_store::StoreError> {
    if let Some(prev) = previous(store, &step.lineage) {
        if prev["key"].as_str() == Some(parts.key.to_string().as_str())
            && prev["text"].as_str() == Some(step.id.text.as_str())
        {
            return Ok(());
        }
    }
    let args: Vec<Value> = step.args.iter().map(|(k, v)| json!([k, v])).collect();
    let manifests: Vec<Value> = manifest()
        .iter()
        .map(|d| json!({"digest": d.to_string()}))
        .collect();
    let rec = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE,
        "key": parts.key.to_string(),
        "text": step.id.text,
        "parent": parts.parent,
        "definition": parts.definition.to_string(),
        "inputs": parts.inputs,
        "args": args,
        "sources": parts.sources.as_ref().map(|c| c.digest.clone()),
        "manifests": manifests,
    });
    let digest = store.put_bytes(&serde_json::to_vec(&rec).unwrap_or_default())?;
    store.set_ref(
        &ref_name(&step.lineage),
        &RefTarget {
            digest,
            media_type: MEDIA_TYPE.into(),
            created: None,
        },
    )
}
