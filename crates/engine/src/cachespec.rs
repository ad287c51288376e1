//! `--cache-from` / `--cache-to` specs, parsed in the library so every front end accepts the
//! same syntax docker buildx does (`type=registry,ref=REF,mode=max`, a bare `REF` meaning a
//! registry import) and refuses the same mistakes, with the spec in the message.

use std::path::PathBuf;

use rbuild_image::export::ExportCompression;

use crate::BuildError;

/// Which steps a cache export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Only the steps whose results are part of the final image (BuildKit's default).
    #[default]
    Min,
    /// Every step of every stage the build ran or reused.
    Max,
}

/// Where a build loads cache records from before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheImport {
    /// An OCI layout directory written by `--cache-to type=local`.
    Local {
        /// The layout directory.
        src: PathBuf,
    },
    /// A cache artifact (or an image pushed with an inline cache) in a registry.
    Registry {
        /// The reference, as typed.
        reference: String,
    },
}

/// Where a build writes its cache records after it succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheExport {
    /// An OCI layout directory.
    Local {
        /// The layout directory (created, or replaced entry by entry).
        dest: PathBuf,
        /// Which steps.
        mode: CacheMode,
        /// Layer compression.
        compression: ExportCompression,
        /// `ignore-error=true`: a failed export is a warning, not a failed build.
        ignore_error: bool,
    },
    /// A cache artifact pushed to a registry.
    Registry {
        /// The reference, as typed.
        reference: String,
        /// Which steps.
        mode: CacheMode,
        /// Layer compression.
        compression: ExportCompression,
        /// `ignore-error=true`: a failed export is a warning, not a failed build.
        ignore_error: bool,
    },
    /// Records carried in the pushed image's manifest, so the image itself seeds later builds
    /// (`--cache-from type=registry,ref=IMAGE`). Always `mode=min`: the image has no other layers.
    Inline,
}

struct Fields {
    kind: String,
    pairs: Vec<(String, String)>,
}

fn fields(flag: &str, spec: &str) -> Result<Fields, BuildError> {
    let bad = |why: String| BuildError::Request(format!("invalid {flag} {spec:?}: {why}"));
    if !spec.contains('=') {
        if spec.trim().is_empty() {
            return Err(bad("empty".into()));
        }
        // docker: `--cache-from user/app:cache` is a registry reference.
        return Ok(Fields {
            kind: "registry".into(),
            pairs: vec![("ref".into(), spec.trim().to_string())],
        });
    }
    let mut kind = None;
    let mut pairs = Vec::new();
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("{part:?} is not key=value")))?;
        let (k, v) = (k.trim(), v.trim());
        if k == "type" {
            kind = Some(v.to_string());
        } else {
            pairs.push((k.to_string(), v.to_string()));
        }
    }
    let kind = kind.ok_or_else(|| bad("missing type=".into()))?;
    Ok(Fields { kind, pairs })
}

impl CacheImport {
    /// Parses one `--cache-from` value.
    pub fn parse(spec: &str) -> Result<CacheImport, BuildError> {
        let flag = "--cache-from";
        let bad = |why: String| BuildError::Request(format!("invalid {flag} {spec:?}: {why}"));
        let f = fields(flag, spec)?;
        let get = |key: &str| {
            f.pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        match f.kind.as_str() {
            "local" => Ok(CacheImport::Local {
                src: PathBuf::from(
                    get("src").ok_or_else(|| bad("type=local needs src=DIR".into()))?,
                ),
            }),
            "registry" => Ok(CacheImport::Registry {
                reference: get("ref").ok_or_else(|| bad("type=registry needs ref=REF".into()))?,
            }),
            other => Err(bad(format!(
                "unsupported type {other:?}; use type=local,src=DIR or type=registry,ref=REF"
            ))),
        }
    }
}

impl CacheExport {
    /// Parses one `--cache-to` value.
    pub fn parse(spec: &str) -> Result<CacheExport, BuildError> {
        let flag = "--cache-to";
        let bad = |why: String| BuildError::Request(format!("invalid {flag} {spec:?}: {why}"));
        if !spec.contains('=') {
            return Err(bad(
                "expected type=registry,ref=REF, type=local,dest=DIR or type=inline".into(),
            ));
        }
        let f = fields(flag, spec)?;
        let mut mode = CacheMode::Min;
        let mut compression = ExportCompression::Gzip;
        let mut ignore_error = false;
        let mut location = None;
        let want = match f.kind.as_str() {
            "local" => "dest",
            "registry" => "ref",
            "inline" => "",
            other => {
                return Err(bad(format!(
                    "unsupported type {other:?}; use registry, local or inline"
                )))
            }
        };
        for (k, v) in &f.pairs {
            match k.as_str() {
                "mode" => {
                    mode = match v.as_str() {
                        "min" => CacheMode::Min,
                        "max" => CacheMode::Max,
                        other => return Err(bad(format!("mode={other} is not min or max"))),
                    }
                }
                "compression" => {
                    compression = match v.as_str() {
                        "gzip" => ExportCompression::Gzip,
                        "zstd" => ExportCompression::Zstd,
                        "uncompressed" => ExportCompression::None,
                        other => {
                            return Err(bad(format!(
                                "compression={other} is not gzip, zstd or uncompressed"
                            )))
                        }
                    }
                }
                "ignore-error" => {
                    ignore_error = match v.as_str() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(bad(format!("ignore-error={other} is not true or false")))
                        }
                    }
                }
                // Accepted for buildx compatibility; they change nothing here.
                "oci-mediatypes" | "image-manifest" | "force-compression" | "compression-level" => {
                }
                k if k == want => location = Some(v.clone()),
                other => return Err(bad(format!("unknown key {other:?}"))),
            }
        }
        match f.kind.as_str() {
            "local" => Ok(CacheExport::Local {
                dest: PathBuf::from(
                    location.ok_or_else(|| bad("type=local needs dest=DIR".into()))?,
                ),
                mode,
                compression,
                ignore_error,
            }),
            "registry" => Ok(CacheExport::Registry {
                reference: location.ok_or_else(|| bad("type=registry needs ref=REF".into()))?,
                mode,
                compression,
                ignore_error,
            }),
            _ => Ok(CacheExport::Inline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports() {
        let ok = |s: &str| CacheImport::parse(s).unwrap();
        assert_eq!(
            ok("type=local,src=/c"),
            CacheImport::Local { src: "/c".into() }
        );
        assert_eq!(
            ok("type=registry,ref=r:5000/app:cache"),
            CacheImport::Registry {
                reference: "r:5000/app:cache".into()
            }
        );
        assert_eq!(
            ok("user/app:cache"),
            CacheImport::Registry {
                reference: "user/app:cache".into()
            }
        );
        for bad in [
            "type=local",
            "type=registry",
            "type=gha,scope=x",
            "src=/c",
            "",
        ] {
            let e = CacheImport::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--cache-from"), "{bad}: {e}");
        }
    }

    #[test]
    fn exports() {
        let ok = |s: &str| CacheExport::parse(s).unwrap();
        assert_eq!(
            ok("type=registry,ref=r/app:cache,mode=max,compression=zstd"),
            CacheExport::Registry {
                reference: "r/app:cache".into(),
                mode: CacheMode::Max,
                compression: ExportCompression::Zstd,
                ignore_error: false,
            }
        );
        assert_eq!(
            ok("type=local,dest=d"),
            CacheExport::Local {
                dest: "d".into(),
                mode: CacheMode::Min,
                compression: ExportCompression::Gzip,
                ignore_error: false,
            }
        );
        assert_eq!(ok("type=inline"), CacheExport::Inline);
        assert_eq!(
            ok("type=registry,ref=x,oci-mediatypes=true,compression=uncompressed,ignore-error=true"),
            CacheExport::Registry {
                reference: "x".into(),
                mode: CacheMode::Min,
                compression: ExportCompression::None,
                ignore_error: true,
            }
        );
        for bad in [
            "type=local",
            "type=registry,mode=max",
            "type=registry,ref=x,mode=all",
            "type=registry,ref=x,compression=lz4",
            "type=registry,ref=x,ignore-error=yes",
            "type=local,dest=d,ref=x",
            "type=s3,bucket=b",
            "r/app:cache",
            "mode=max",
        ] {
            let e = CacheExport::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--cache-to"), "{bad}: {e}");
        }
    }
}
