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
        .or(outcome.index)
        .unwrap_or(image.manifest_digest);
    // A multi-platform build's descriptor is its index, as buildx writes it.
    let media_type = if outcome.index.is_some() {
        rbuild_image::manifest::MEDIA_TYPE_OCI_INDEX
    } else {
        MEDIA_TYPE_OCI_MANIFEST
    };
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
                "mediaType": media_type,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pushed;
    use rbuild_image::{config::ImageConfig, Images};

    #[test]
    fn local_and_pushed_documents() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::new(Store::open(dir.path().join("s")).unwrap());
        let image = images
            .commit(&ImageConfig::empty("linux", "amd64", None), &[])
            .unwrap();
        let mut outcome = BuildOutcome {
            image: image.clone(),
            tags: vec!["docker.io/library/app:1".into()],
            pushed: Vec::new(),
            steps: Vec::new(),
            platforms: Vec::new(),
            index: None,
        };
        let doc = build_metadata(&outcome, images.store());
        assert_eq!(doc["containerimage.config.digest"], image.id.to_string());
        assert_eq!(
            doc["containerimage.digest"],
            image.manifest_digest.to_string()
        );
        let size = images.store().blob_size(&image.manifest_digest).unwrap();
        assert_eq!(doc["containerimage.descriptor"]["size"], size);
        assert_eq!(doc["image.name"], "docker.io/library/app:1");
        assert!(doc.get("rbuild.pushed").is_none());

        let d = rbuild_digest::Digest::of(b"pushed manifest");
        outcome.pushed = vec![
            Pushed {
                name: "r:5000/a:1".into(),
                digest: d,
            },
            Pushed {
                name: "r:5000/b:1".into(),
                digest: d,
            },
        ];
        let doc = build_metadata(&outcome, images.store());
        assert_eq!(doc["containerimage.digest"], d.to_string());
        // Not in the store: no descriptor rather than a wrong size.
        assert!(doc.get("containerimage.descriptor").is_none());
        assert_eq!(doc["image.name"], "r:5000/a:1,r:5000/b:1");
        assert_eq!(doc["rbuild.pushed"][1]["name"], "r:5000/b:1");

        let file = dir.path().join("meta.json");
        write_metadata_file(&file, &doc).unwrap();
        let back: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(back, doc);
        assert!(write_metadata_file(&dir.path().join("no/such/dir/m.json"), &doc).is_err());
    }
}
