//! What a caller asks the engine to build: the typed equivalent of `docker build`'s flags.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::BuildError;

/// One build: everything `docker build` takes, as data, so embedders need no command line.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile; `None` means `Dockerfile` in the context.
    pub dockerfile: Option<PathBuf>,
    /// Dockerfile text given directly (`-f -`); wins over `dockerfile`.
    pub dockerfile_text: Option<String>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target` stage.
    pub target: Option<String>,
    /// `-t` references, as typed by the user.
    pub tags: Vec<String>,
    /// `--label` values added to the final image.
    pub labels: BTreeMap<String, String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`: re-resolve base images even when they are local.
    pub pull: bool,
    /// `--platform`: one platform, or several comma-separated (`linux/amd64,linux/arm64`), which
    /// builds each and writes one image index.
    pub platform: Option<String>,
    /// Where the result goes; empty means the local image store.
    pub outputs: Vec<Output>,
    /// `--secret id=..,src=..` (used by RUN --mount=type=secret).
    pub secrets: Vec<SecretSource>,
    /// `--ssh id=SOCKET` (used by RUN --mount=type=ssh).
    pub ssh: Vec<SshSource>,
    /// `--cache-from`: exported build caches to load before the build (each one that cannot be
    /// read is skipped with a warning).
    pub cache_from: Vec<crate::cachespec::CacheImport>,
    /// `--cache-to`: where to export this build's cache records.
    pub cache_to: Vec<crate::cachespec::CacheExport>,
    /// `--network` default for RUN steps.
    pub network: Option<String>,
    /// Clamp for file and history timestamps, from `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
    /// `--no-cache-filter`: stages whose steps ignore the cache (as `--no-cache` for them only).
    pub no_cache_filter: Vec<String>,
    /// `--jobs`: how many steps may run at once; `None` means the number of cores.
    pub jobs: Option<usize>,
    /// `--push`: push every tag to its registry after the build (as `-o type=registry`).
    pub push: bool,
    /// `--device`: CDI devices (`vendor.com/class=name`) or host nodes every RUN step gets, as
    /// BuildKit's `--device`; resolved once before any step runs, never part of the image.
    pub devices: Vec<rbuild_cdi::DeviceRequest>,
    /// `--cdi-spec-dir`: where CDI specs are read, later ones winning; empty means `/etc/cdi`
    /// then `/var/run/cdi`.
    pub cdi_spec_dirs: Vec<PathBuf>,
}

impl BuildRequest {
    /// A request to build the Dockerfile of `context` into the local store, untagged; chain the
    /// methods below to say more, as `docker build` flags would.
    ///
    /// ```
    /// use rbuild_engine::{BuildRequest, Output};
    /// let req = BuildRequest::new("app")
    ///     .tag("app:1")
    ///     .build_arg("VERSION", "1.2")
    ///     .target("runtime")
    ///     .output(Output::Docker { dest: "app.tar".into() });
    /// assert_eq!(req.tags, ["app:1"]);
    /// ```
    pub fn new(context: impl Into<PathBuf>) -> BuildRequest {
        BuildRequest {
            context: context.into(),
            ..Default::default()
        }
    }

    /// `-f`: the Dockerfile to build (default: `Dockerfile` in the context).
    pub fn dockerfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.dockerfile = Some(path.into());
        self
    }

    /// `-f -`: the Dockerfile's text itself, which wins over a path.
    pub fn dockerfile_text(mut self, text: impl Into<String>) -> Self {
        self.dockerfile_text = Some(text.into());
        self
    }

    /// `-t`: one more name for the result.
    pub fn tag(mut self, reference: impl Into<String>) -> Self {
        self.tags.push(reference.into());
        self
    }

    /// `--build-arg NAME=VALUE`.
    pub fn build_arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.build_args.insert(name.into(), value.into());
        self
    }

    /// `--label NAME=VALUE` on the final image.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// `--target`: the stage to build instead of the last one.
    pub fn target(mut self, stage: impl Into<String>) -> Self {
        self.target = Some(stage.into());
        self
    }

    /// `--platform`: the one platform to build for (`linux/arm64`).
    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.platform = Some(platform.into());
        self
    }

    /// `-o`: one more destination; the local store is always written.
    pub fn output(mut self, output: Output) -> Self {
        self.outputs.push(output);
        self
    }

    /// `--secret`: a secret `RUN --mount=type=secret,id=ID` may read.
    pub fn secret(mut self, id: impl Into<String>, from: SecretFrom) -> Self {
        self.secrets.push(SecretSource {
            id: id.into(),
            source: from,
        });
        self
    }

    /// `--ssh ID=SOCKET`: an agent `RUN --mount=type=ssh` may use.
    pub fn ssh(mut self, id: impl Into<String>, socket: impl Into<PathBuf>) -> Self {
        self.ssh.push(SshSource {
            id: id.into(),
            socket: socket.into(),
        });
        self
    }

    /// `--no-cache`: run every step.
    pub fn no_cache(mut self, yes: bool) -> Self {
        self.no_cache = yes;
        self
    }

    /// `--pull`: resolve base images again even when they are local.
    pub fn pull(mut self, yes: bool) -> Self {
        self.pull = yes;
        self
    }

    /// `--push`: push every tag after the build.
    pub fn push(mut self, yes: bool) -> Self {
        self.push = yes;
        self
    }

    /// `--network` for RUN steps (`default`, `none`, `host`).
    pub fn network(mut self, mode: impl Into<String>) -> Self {
        self.network = Some(mode.into());
        self
    }

    /// `SOURCE_DATE_EPOCH`: clamps file and history timestamps for reproducible images.
    pub fn source_date_epoch(mut self, seconds: i64) -> Self {
        self.source_date_epoch = Some(seconds);
        self
    }

    /// `--jobs`: how many steps may run at once.
    pub fn jobs(mut self, n: usize) -> Self {
        self.jobs = Some(n);
        self
    }

    /// A `--cache-from` source (see [`crate::CacheImport::parse`] for the flag's syntax).
    pub fn cache_from(mut self, source: crate::CacheImport) -> Self {
        self.cache_from.push(source);
        self
    }

    /// A `--cache-to` destination (see [`crate::CacheExport::parse`] for the flag's syntax).
    pub fn cache_to(mut self, dest: crate::CacheExport) -> Self {
        self.cache_to.push(dest);
        self
    }
}

/// A build secret source; the engine never copies its content into a layer, config or history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    /// Secret id used by `RUN --mount=type=secret,id=...`.
    pub id: String,
    /// File to read it from, or the environment variable holding it.
    pub source: SecretFrom,
}

/// An SSH agent a build may use through `RUN --mount=type=ssh`, so private repositories can be
/// fetched without a key ever entering the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSource {
    /// The id `RUN --mount=type=ssh,id=…` names (`default` when omitted).
    pub id: String,
    /// The agent's socket on the host (e.g. `$SSH_AUTH_SOCK`).
    pub socket: PathBuf,
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    /// A file on the host.
    File(PathBuf),
    /// An environment variable of the calling process.
    Env(String),
}

/// A destination for the built image, as `-o/--output` names them. A `dest` of `-` means the
/// process's standard output (buildx's `dest=-`) for the tar outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The local image store (the default), tagged with the request's tags.
    Store,
    /// An OCI image layout: a directory, or a tar of one when `tar` is set.
    Oci {
        /// Directory or file.
        dest: PathBuf,
        /// Write a tar instead of a directory.
        tar: bool,
    },
    /// A docker-archive tar, as `docker save` writes and `docker load` reads.
    Docker {
        /// File to write.
        dest: PathBuf,
    },
    /// The flattened root filesystem as one tar.
    Tar {
        /// File to write.
        dest: PathBuf,
    },
    /// The flattened root filesystem written into a directory (`type=local`, or a bare `-o DIR`).
    Local {
        /// Directory to fill (created if missing).
        dest: PathBuf,
    },
    /// Pushed to registries (`type=registry`, or `type=image,push=true`), as `--push` does.
    Registry {
        /// References to push to; empty means every `-t` tag of the request.
        names: Vec<String>,
        /// Layer compression (`compression=gzip|zstd|uncompressed`).
        compression: rbuild_image::export::ExportCompression,
    },
}

impl Output {
    /// Parses docker's `-o` syntax (`type=oci,dest=out.tar`, or a bare path meaning a local
    /// directory export, as `docker build -o DIR` does).
    pub fn parse(spec: &str) -> Result<Output, BuildError> {
        let bad = |why: &str| BuildError::Request(format!("invalid --output {spec:?}: {why}"));
        if !spec.contains('=') {
            // buildx: `-o -` is the root filesystem as a tar on standard output.
            if spec == "-" {
                return Ok(Output::Tar { dest: "-".into() });
            }
            return Ok(Output::Local {
                dest: PathBuf::from(spec),
            });
        }
        let mut kind = None;
        let mut dest = None;
        let mut tar = None;
        let (mut names, mut compression, mut push) = (Vec::new(), None, false);
        for part in spec.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(&format!("{part:?} is not key=value")))?;
            match k.trim() {
                "type" => kind = Some(v.trim().to_string()),
                "dest" => dest = Some(PathBuf::from(v.trim())),
                "tar" => {
                    tar = Some(match v.trim() {
                        "true" => true,
                        "false" => false,
                        other => return Err(bad(&format!("tar={other} is not true or false"))),
                    })
                }
                "name" => names.push(v.trim().to_string()),
                "compression" => {
                    compression = Some(match v.trim() {
                        "gzip" => rbuild_image::export::ExportCompression::Gzip,
                        "zstd" => rbuild_image::export::ExportCompression::Zstd,
                        "uncompressed" => rbuild_image::export::ExportCompression::None,
                        other => {
                            return Err(bad(&format!(
                                "compression={other} is not gzip, zstd or uncompressed"
                            )))
                        }
                    })
                }
                "push" => push = v.trim() == "true",
                "oci-mediatypes" | "force-compression" => {}
                other => return Err(bad(&format!("unknown key {other:?}"))),
            }
        }
        let kind = kind.ok_or_else(|| bad("missing type="))?;
        let need_dest = || dest.clone().ok_or_else(|| bad("missing dest="));
        match kind.as_str() {
            "image" | "store" if !push => Ok(Output::Store),
            "image" | "registry" => Ok(Output::Registry {
                names,
                compression: compression.unwrap_or_default(),
            }),
            "store" => Ok(Output::Store),
            "oci" => {
                let dest = need_dest()?;
                let tar = tar.unwrap_or_else(|| {
                    crate::save::is_stdout(&dest) || dest.extension().is_some_and(|e| e == "tar")
                });
                if crate::save::is_stdout(&dest) && !tar {
                    return Err(bad("dest=- writes a tar; drop tar=false"));
                }
                Ok(Output::Oci { dest, tar })
            }
            "docker" => Ok(Output::Docker { dest: need_dest()? }),
            "tar" => Ok(Output::Tar { dest: need_dest()? }),
            "local" => match need_dest()? {
                d if crate::save::is_stdout(&d) => Err(bad(
                    "type=local writes a directory; use type=tar,dest=- for standard output",
                )),
                dest => Ok(Output::Local { dest }),
            },
            other => Err(bad(&format!("unknown type {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_specs() {
        let cases: &[(&str, Option<Output>)] = &[
            (
                "type=oci,dest=out",
                Some(Output::Oci {
                    dest: "out".into(),
                    tar: false,
                }),
            ),
            (
                "type=oci,dest=out.tar",
                Some(Output::Oci {
                    dest: "out.tar".into(),
                    tar: true,
                }),
            ),
            (
                "type=docker,dest=x.tar",
                Some(Output::Docker {
                    dest: "x.tar".into(),
                }),
            ),
            (
                "type=tar,dest=fs.tar",
                Some(Output::Tar {
                    dest: "fs.tar".into(),
                }),
            ),
            ("type=image", Some(Output::Store)),
            (
                "type=local,dest=d",
                Some(Output::Local { dest: "d".into() }),
            ),
            (
                "out-dir",
                Some(Output::Local {
                    dest: "out-dir".into(),
                }),
            ),
            (
                "type=registry,name=localhost:5000/a:1,compression=zstd",
                Some(Output::Registry {
                    names: vec!["localhost:5000/a:1".into()],
                    compression: rbuild_image::export::ExportCompression::Zstd,
                }),
            ),
            (
                "type=image,push=true",
                Some(Output::Registry {
                    names: vec![],
                    compression: rbuild_image::export::ExportCompression::Gzip,
                }),
            ),
            ("type=registry,compression=lz4", None),
            ("type=oci", None),
            ("type=bogus,dest=x", None),
            ("dest=x", None),
            ("type=oci,dest=x,tar=maybe", None),
            ("-", Some(Output::Tar { dest: "-".into() })),
            (
                "type=oci,dest=-",
                Some(Output::Oci {
                    dest: "-".into(),
                    tar: true,
                }),
            ),
            (
                "type=docker,dest=-",
                Some(Output::Docker { dest: "-".into() }),
            ),
            ("type=oci,dest=-,tar=false", None),
            ("type=local,dest=-", None),
        ];
        for (spec, want) in cases {
            let got = Output::parse(spec).ok();
            assert_eq!(&got, want, "{spec}");
        }
    }
}
