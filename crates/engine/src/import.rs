//! `rbuild import`: a root filesystem tarball becomes a one-layer image, as `docker import` does, so
//! a base image can be made without any registry.

use std::io::Write;
use std::path::Path;

use rbuild_dockerfile::Platform;
use rbuild_image::config::{History, ImageConfig};
use rbuild_image::reference::Reference;
use rbuild_image::{Images, LayerDesc, LocalImage};

use crate::BuildError;

/// Imports the (optionally compressed) tar at `path` as a single layer and tags it `reference`.
pub fn import_rootfs(
    images: &Images,
    path: &Path,
    reference: Option<&Reference>,
    platform: &Platform,
    changes_created: Option<String>,
) -> Result<LocalImage, BuildError> {
    let _lock = images.store().lock_shared()?;
    let f = std::fs::File::open(path).map_err(|e| BuildError::io(path, e))?;
    let mut r = rbuild_layer::compress::decompress(f).map_err(|e| BuildError::io(path, e))?;
    let mut ingest = images.store().ingest()?;
    std::io::copy(&mut r, &mut ingest).map_err(|e| BuildError::io(path, e))?;
    ingest.flush().map_err(|e| BuildError::io(path, e))?;
    // Reading the whole layer once proves it is a tar before it becomes an image.
    let (diff_id, size) = ingest.commit(None)?;
    let blob = images.store().open_blob(&diff_id)?;
    rbuild_layer::list_layer(std::io::BufReader::new(blob))?;
    let mut config = ImageConfig::empty(
        &platform.os,
        &platform.architecture,
        platform.variant.as_deref(),
    );
    let created = changes_created.unwrap_or_else(|| crate::meta::timestamp(None));
    config.created = Some(created.clone());
    config.history.push(History {
        created: Some(created),
        created_by: None,
        author: None,
        comment: Some(format!("Imported from {}", path.display())),
        empty_layer: None,
    });
    let img = images.commit(&config, &[LayerDesc { diff_id, size }])?;
    if let Some(r) = reference {
        images.tag(&img, r)?;
    }
    Ok(img)
}
