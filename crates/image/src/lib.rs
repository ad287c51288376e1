//! Images: OCI/Docker config and manifest types, canonical JSON, OCI layout and docker-archive import/export
