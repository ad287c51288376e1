//! The result of every vertex of the build graph: a layer chain.

use rbuild_digest::Digest;
use rbuild_image::LayerDesc;

/// A layer chain and when its last layer was made (for the history), the result of every vertex.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Chain {
    /// Layers, base first.
    pub layers: Vec<LayerDesc>,
    /// RFC 3339 time the step that made the top layer ran (kept by the cache), if a step did.
    pub created: Option<String>,
}

impl Chain {
    /// The chain's identity for keys: its chain id, or `scratch` for no layers.
    pub fn id(&self) -> String {
        let ids: Vec<Digest> = self.layers.iter().map(|l| l.diff_id).collect();
        rbuild_digest::chain_id(&ids)
            .map(|d| d.to_string())
            .unwrap_or_else(|| "scratch".into())
    }

    /// The diff ids, base first, as the snapshotter takes them.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id).collect()
    }
}
