//! Content store: blobs by digest with crash-safe ingestion, image references, locking
