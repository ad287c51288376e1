//! Layer tars: deterministic writer, safe apply into a rootfs, compression
