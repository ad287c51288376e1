//! `--metadata-file`: what a build produced, as the JSON document `docker buildx build
//! --metadata-file` writes, so CI scripts written for buildx read rbuild's unchanged
//! (`containerimage.digest` to pin a deployment, `image.name` to know what was pushed).

use std::path::Path;

use rbuild_image::manifest::MEDIA_TYPE_OCI_MANIFEST;
use rbuild_store::Store;
use serde_json::{json, Value};

use crate::{BuildError, BuildOutcome};

/// The metadata document of `outcome`. `containerimage.digest` and `containerimage.descriptor`
/// are the pushed manifest when the image was pushed (what a registry serves and a deployment
/// pins), else the local manifest; `image.name` lists the pushed names, else the tags;
/// `rbuild.pushed` pairs each pushed name with its digest (they differ when compressions do).
pub fn build_metadata(outcome: &BuildOutcome, store: &Store) -> Value {
    let image = &outcome.image;
    let manifest = outcome
        .pushed
        .first()
        .map(|p| p.digest)
        .unwrap_or(image.manifest_digest);
    let mut doc = serde_json::Map::new();
    doc.insert(
        "containerimage.config.digest".into(),
        image.id.to_string().into(),
    );
    doc.insert("containerimage.digest".into(), manifest.to_string().into());
    if let Ok(size) = store.blob_size(&manifest) {
        doc.insert(
            "containerimage.descriptor".into(),
            json!({
                "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                "digest": manifest.to_string(),
                "size": size,
            }),
        );
    }
    let names: Vec<&str> = if outcome.pushed.is_empty() {
        outcome.tags.iter().map(String::as_str).collect()
    } else {
        outcome.pushed.iter().map(|p| p.name.as_str()).collect()
    };
    if !names.is_empty() {
        doc.insert("image.name".into(), names.join(",").into());
    }
    if !outcome.pushed.is_empty() {
        doc.insert(
            "rbuild.pushed".into(),
            outcome
                .pushed
                .iter()
                .map(|p| json!({"name": p.name, "digest": p.digest.to_string()}))
                .collect(),
        );
    }
    Value::Object(doc)
}

/// Writes `doc` to `path` through a temp file in the same directory and a rename, so a reader
/// (a CI step polling for it) never sees half a document.
pub fn write_metadata_file(path: &Path, doc: &Value) -> Result<(), BuildError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| BuildError::io(dir, e))?;
    let mut bytes = serde_json::to_vec_pretty(doc).unwrap_or_default();
    bytes.push(b'\n');
    std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| BuildError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| BuildError::io(path, e.error))?;
    Ok(())
}
