//! Integration tests against the real distribution registry (`docker-registry`), skopeo, and a
//! JWT token issuer.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;

use common::*;
use rbuild_digest::Digest;
use rbuild_image::manifest::{
    Descriptor, Index, Platform, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST,
};
use rbuild_registry::{
    AuthSource, BlockingClient, ClientOptions, Credentials, PullEvent, PushEvent, PushOptions,
    Reference, RegistryError,
};

fn opts() -> ClientOptions {
    ClientOptions {
        chunk_size: 64 << 10,
        ..ClientOptions::default()
    }
}

fn client(o: ClientOptions) -> BlockingClient {
    BlockingClient::new(o).expect("client")
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn amd64() -> Platform {
    Platform {
        architecture: "amd64".into(),
        os: "linux".into(),
        variant: None,
        ..Platform::default()
    }
}

fn new_store() -> (tempfile::TempDir, DirStore) {
    let d = tempfile::tempdir().expect("tempdir");
    let s = DirStore::open(d.path().join("store")).expect("store");
    (d, s)
}

/// Collects events for assertions.
struct Events<T>(Mutex<Vec<T>>);
impl<T: Clone> Events<T> {
    fn new() -> Self {
        Events(Mutex::new(Vec::new()))
    }
    fn push(&self, e: T) {
        self.0.lock().expect("lock").push(e);
    }
    fn all(&self) -> Vec<T> {
        self.0.lock().expect("lock").clone()
    }
}

fn count<T>(evs: &[T], f: impl Fn(&T) -> bool) -> usize {
    evs.iter().filter(|e| f(e)).count()
}

#[test]
fn anonymous_push_pull_round_trip_chunked_and_monolithic() {
    let reg = Registry::start();
    for (chunk_size, repo) in [(64 << 10, "test/chunked"), (0, "test/monolithic")] {
        let (_d, src) = new_store();
        // The big layer spans several 64 KiB chunks.
        let (mbytes, m) = make_image(&src, 1, "amd64", 300_000);
        let c = client(ClientOptions {
            chunk_size,
            ..opts()
        });
        let dest = r(&format!("{}/{repo}:v1", reg.host()));
        let evs = Events::new();
        let digest = c
            .push(&src, &mbytes, MEDIA_TYPE_OCI_MANIFEST, &dest, &|e| {
                evs.push(e)
            })
            .unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
        assert_eq!(digest, Digest::of(&mbytes));
        let evs = evs.all();
        assert_eq!(
            count(&evs, |e| matches!(e, PushEvent::Done { .. })),
            3,
            "{evs:?}"
        );
        assert_eq!(
            count(&evs, |e| matches!(e, PushEvent::ManifestPushed { .. })),
            1
        );
        if chunk_size > 0 {
            let big = m.layers[1].digest;
            let chunks = count(
                &evs,
                |e| matches!(e, PushEvent::Progress { digest, .. } if *digest == big),
            );
            assert!(
                chunks >= 3,
                "expected several PATCH chunks, got {chunks}: {evs:?}"
            );
        }

        let (_d2, dst) = new_store();
        let pevs = Events::new();
        let pulled = c
            .pull(&dest, &amd64(), &dst, &|e| pevs.push(e))
            .unwrap_or_else(|e| panic!("pull: {e}"));
        assert_eq!(pulled.resolved.manifest_digest, digest);
        assert_eq!(pulled.resolved.manifest_bytes, mbytes);
        assert_eq!(pulled.layers, m.layers);
        assert_eq!(pulled.resolved.config_digest(), m.config.digest);
        assert!(!pulled.resolved.endpoint.is_mirror);
        for d in m
            .layers
            .iter()
            .map(|l| l.digest)
            .chain([m.config.digest, digest])
        {
            assert_eq!(
                dst.read_blob(&d).expect("blob"),
                src.read_blob(&d).expect("blob")
            );
        }
        assert_eq!(pulled.fetched.len(), 2);
        assert_eq!(
            count(&pevs.all(), |e| matches!(e, PullEvent::Done { .. })),
            2
        );

        // A second pull fetches nothing.
        let pevs = Events::new();
        let again = c
            .pull(&dest, &amd64(), &dst, &|e| pevs.push(e))
            .expect("pull again");
        assert!(again.fetched.is_empty());
        assert_eq!(
            count(&pevs.all(), |e| matches!(e, PullEvent::Skipped { .. })),
            2
        );

        // Pull by digest too.
        let by_digest = r(&format!("{}/{repo}@{digest}", reg.host()));
        let (_d3, dst3) = new_store();
        let p = c
            .pull(&by_digest, &amd64(), &dst3, &|_| {})
            .expect("pull by digest");
        assert_eq!(p.resolved.manifest_digest, digest);
    }
}

#[test]
fn second_push_skips_existing_blobs_and_mounts_across_repositories() {
    let reg = Registry::start();
    let (_d, src) = new_store();
    let (mbytes, _) = make_image(&src, 10, "amd64", 5000);
    let c = client(opts());
    let a = r(&format!("{}/team/base:1", reg.host()));
    c.push(&src, &mbytes, MEDIA_TYPE_OCI_MANIFEST, &a, &|_| {})
        .expect("push a");

    let evs = Events::new();
    c.push(&src, &mbytes, MEDIA_TYPE_OCI_MANIFEST, &a, &|e| evs.push(e))
        .expect("push a again");
    let evs = evs.all();
    assert_eq!(
        count(&evs, |e| matches!(e, PushEvent::Exists { .. })),
        3,
        "{evs:?}"
    );
    assert_eq!(
        count(&evs, |e| matches!(e, PushEvent::Started { .. })),
        0,
        "{evs:?}"
    );

    let b = r(&format!("{}/team/app:1", reg.host()));
    let evs = Events::new();
    let push_opts = PushOptions {
        mount_from: vec![a.clone()],
        ..PushOptions::default()
    };
    c.push_with(
        &src,
        &mbytes,
        MEDIA_TYPE_OCI_MANIFEST,
        &b,
        &push_opts,
        &|e| evs.push(e),
    )
    .expect("push b");
    let evs = evs.all();
    assert_eq!(
        count(
            &evs,
            |e| matches!(e, PushEvent::Mounted { from, .. } if from == "team/base")
        ),
        3,
        "{evs:?}"
    );
    assert_eq!(
        count(&evs, |e| matches!(e, PushEvent::Started { .. })),
        0,
        "{evs:?}"
    );
    let (_d2, dst) = new_store();
    c.pull(&b, &amd64(), &dst, &|_| {})
        .expect("pull mounted image");
}

#[test]
fn index_resolves_to_the_requested_platform() {
    let reg = Registry::start();
    let (_d, src) = new_store();
    let (m_amd, _) = make_image(&src, 20, "amd64", 2000);
    let (m_arm, _) = make_image(&src, 30, "arm64", 2000);
    let entry = |bytes: &[u8], arch: &str, variant: Option<&str>| Descriptor {
        platform: Some(Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(Into::into),
            ..Platform::default()
        }),
        ..Descriptor::new(
            MEDIA_TYPE_OCI_MANIFEST,
            Digest::of(bytes),
            bytes.len() as u64,
        )
    };
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_INDEX.into()),
        manifests: vec![
            entry(&m_amd, "amd64", None),
            entry(&m_arm, "arm64", Some("v8")),
        ],
        annotations: BTreeMap::new(),
    };
    let ibytes = serde_json::to_vec(&index).expect("json");
    let c = client(opts());
    let dest = r(&format!("{}/multi/app:1", reg.host()));
    let idigest = c
        .push(&src, &ibytes, MEDIA_TYPE_OCI_INDEX, &dest, &|_| {})
        .unwrap_or_else(|e| panic!("push index: {e}\n{}", reg.log()));
    assert_eq!(idigest, Digest::of(&ibytes));

    for (p, want) in [
        (amd64(), &m_amd),
        (
            Platform {
                architecture: "arm64".into(),
                os: "linux".into(),
                variant: None,
                ..Platform::default()
            },
            &m_arm,
        ),
    ] {
        let res = c.resolve(&dest, &p).expect("resolve");
        assert_eq!(res.manifest_digest, Digest::of(want), "{p:?}");
        assert_eq!(res.index.as_ref().map(|i| i.0), Some(idigest));
        let (_d2, dst) = new_store();
        let pulled = c.pull(&dest, &p, &dst, &|_| {}).expect("pull");
        assert!(dst.contains(&idigest));
        assert!(dst.contains(&pulled.resolved.manifest_digest));
        let cfg: serde_json::Value =
            serde_json::from_slice(&pulled.resolved.config_bytes).expect("config");
        assert_eq!(cfg["architecture"], p.architecture.as_str());
    }
    let s390 = Platform {
        architecture: "s390x".into(),
        os: "linux".into(),
        variant: None,
        ..Platform::default()
    };
    match c.resolve(&dest, &s390) {
        Err(RegistryError::NoMatchingPlatform {
            wanted, available, ..
        }) => {
            assert_eq!(wanted, "linux/s390x");
            assert_eq!(available, ["linux/amd64", "linux/arm64/v8"]);
        }
        other => panic!("expected NoMatchingPlatform, got {other:?}"),
    }
}

#[test]
fn corrupted_blob_is_refused_and_never_stored() {
    let reg = Registry::start();
    let (_d, src) = new_store();
    let (mbytes, m) = make_image(&src, 40, "amd64", 50_000);
    let c = client(opts());
    let dest = r(&format!("{}/bad/app:1", reg.host()));
    c.push(&src, &mbytes, MEDIA_TYPE_OCI_MANIFEST, &dest, &|_| {})
        .expect("push");
    let victim = m.layers[1].digest;
    let path = reg.blob_data(&victim);
    let mut data = std::fs::read(&path).expect("read registry blob");
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&path, &data).expect("tamper");

    let (_d2, dst) = new_store();
    let err = c
        .pull(&dest, &amd64(), &dst, &|_| {})
        .expect_err("tampered pull must fail");
    let msg = err.to_string();
    assert!(
        matches!(err, RegistryError::DigestMismatch { expected, .. } if expected == victim),
        "{err:?}"
    );
    assert!(msg.contains(&victim.to_string()), "{msg}");
    assert!(msg.contains(&reg.host()), "{msg}");
    assert!(!dst.contains(&victim));
    assert!(
        !dst.contains(&Digest::of(&mbytes)),
        "manifest must not be stored for a failed pull"
    );
    assert_eq!(leftover_ingests(&dst), Vec::<std::path::PathBuf>::new());
}

#[test]
fn truncated_blob_is_retried_then_refused() {
    let reg = Registry::start();
    let (_d, src) = new_store();
    let (mbytes, m) = make_image(&src, 50, "amd64", 50_000);
    let c = client(ClientOptions {
        retries: 2,
        ..opts()
    });
    let dest = r(&format!("{}/short/app:1", reg.host()));
    c.push(&src, &mbytes, MEDIA_TYPE_OCI_MANIFEST, &dest, &|_| {})
        .expect("push");
    let victim = m.layers[1].digest;
    let path = reg.blob_data(&victim);
    let data = std::fs::read(&path).expect("read");
    std::fs::write(&path, &data[..data.len() / 3]).expect("truncate");

    let (_d2, dst) = new_store();
    let evs = Events::new();
    let err = c
        .pull(&dest, &amd64(), &dst, &|e| evs.push(e))
        .expect_err("truncated pull must fail");
    match &err {
        RegistryError::SizeMismatch {
            digest,
            expected,
            actual,
            url,
        } => {
            assert_eq!(*digest, victim);
            assert_eq!(*expected, m.layers[1].size);
            assert!(*actual < *expected);
            assert!(url.contains(&reg.host()), "{url}");
        }
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
    let retries = count(
        &evs.all(),
        |e| matches!(e, PullEvent::Retrying { digest, .. } if *digest == victim),
    );
    assert_eq!(retries, 1, "{:?}", evs.all());
    assert!(!dst.contains(&victim));
    assert_eq!(leftover_ingests(&dst), Vec::<std::path::PathBuf>::new());
}

#[test]
fn htpasswd_basic_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = bcrypt::hash("s3cret-pass", 5).expect("bcrypt");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).expect("write");
    let reg = Registry::start_with_auth(&format!(
        "  htpasswd:\n    realm: rbuild-test\n    path: {}",
        htpasswd.display()
    ));
    let (_d, src) = new_store();
    let (mbytes, _) = make_image(&src, 60, "amd64", 3000);
    let dest = r(&format!("{}/private/app:1", reg.host()));

    let anon = client(opts());
    let err = anon
        .push(&src, &mbytes, MEDIA_TYPE_OCI_MANIFEST, &dest, &|_| {})
        .expect_err("anonymous push must be refused");
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let good = Credentials::new("alice", "s3cret-pass");
    let bad = Credentials::new("alice", "wrong");
    anon.login_check(&reg.host(), &good)
        .expect("login with good creds");
    let e = anon.login_check(&reg.host(), &bad).expect_err("bad creds");
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e:?}");
    assert!(!e.to_string().contains("wrong"), "secret leaked: {e}");

    // Credentials from a docker config.json written by store_login.
    let cfg = dir.path().join("docker/config.json");
    rbuild_registry::auth::store_login(&reg.host(), &good, &cfg).expect("store login");
    let c = client(ClientOptions {
        auth: AuthSource {
            docker_config: Some(cfg),
            ..AuthSource::default()
        },
        ..opts()
    });
    let digest = c
        .push(&src, &mbytes, MEDIA_TYPE_OCI_MANIFEST, &dest, &|_| {})
        .unwrap_or_else(|e| panic!("push with creds: {e}\n{}", reg.log()));
    let (_d2, dst) = new_store();
    let pulled = c
        .pull(&dest, &amd64(), &dst, &|_| {})
        .expect("pull with creds");
    assert_eq!(pulled.resolved.manifest_digest, digest);
    let e = anon
        .pull(&dest, &amd64(), &dst, &|_| {})
        .expect_err("anonymous pull");
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e:?}");
}

#[test]
fn bearer_token_auth_with_scopes_and_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = TokenServer::start(dir.path(), "bob", "tok-pass");
    let reg = Registry::start_with_auth(&tokens.registry_auth());
    let (_d, src) = new_store();
    let (mbytes, _) = make_image(&src, 70, "amd64", 3000);
    let base = r(&format!("{}/tok/base:1", reg.host()));
    let app = r(&format!("{}/tok/app:1", reg.host()));

    let anon = client(opts());
    let err = anon
        .push(&src, &mbytes, MEDIA_TYPE_OCI_MANIFEST, &base, &|_| {})
        .expect_err("anonymous push must be refused");
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");

    let mut overrides = BTreeMap::new();
    overrides.insert(reg.host(), Credentials::new("bob", "tok-pass"));
    let c = client(ClientOptions {
        auth: AuthSource {
            overrides,
            ..AuthSource::default()
        },
        ..opts()
    });
    c.push(&src, &mbytes, MEDIA_TYPE_OCI_MANIFEST, &base, &|_| {})
        .unwrap_or_else(|e| panic!("push with token: {e}\n{}", reg.log()));
    let before = tokens.request_count();
    let evs = Events::new();
    c.push_with(
        &src,
        &mbytes,
        MEDIA_TYPE_OCI_MANIFEST,
        &app,
        &PushOptions {
            mount_from: vec![base.clone()],
            ..PushOptions::default()
        },
        &|e| evs.push(e),
    )
    .unwrap_or_else(|e| panic!("push with mount: {e}\n{}", reg.log()));
    assert_eq!(
        count(&evs.all(), |e| matches!(e, PushEvent::Mounted { .. })),
        3,
        "{:?}",
        evs.all()
    );
    // One token covers the whole push (pull,push on the target plus pull on the mount source).
    assert_eq!(tokens.request_count(), before + 1);
    let reqs = tokens.requests.lock().expect("lock").clone();
    let last = reqs.last().cloned().unwrap_or_default();
    let scopes: Vec<String> = url::form_urlencoded::parse(last.as_bytes())
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(
        scopes,
        ["repository:tok/app:pull,push", "repository:tok/base:pull"]
    );
    assert!(last.contains(&format!("service={TOKEN_SERVICE}")), "{last}");

    // Per-blob sources (what a pull recorded) mount exactly those blobs, and their repository is
    // in the token's scope; a source on another registry is ignored.
    let m: rbuild_image::manifest::Manifest =
        serde_json::from_slice(&mbytes).expect("manifest json");
    let elsewhere = r("127.0.0.1:1/tok/base:1");
    let blob_sources: std::collections::HashMap<_, _> = m
        .layers
        .iter()
        .map(|l| (l.digest, vec![elsewhere.clone(), base.clone()]))
        .collect();
    let app2 = r(&format!("{}/tok/app2:1", reg.host()));
    let evs = Events::new();
    c.push_with(
        &src,
        &mbytes,
        MEDIA_TYPE_OCI_MANIFEST,
        &app2,
        &PushOptions {
            blob_sources,
            ..PushOptions::default()
        },
        &|e| evs.push(e),
    )
    .unwrap_or_else(|e| panic!("push with blob sources: {e}\n{}", reg.log()));
    let evs = evs.all();
    for l in &m.layers {
        assert!(
            evs.iter().any(|e| matches!(e, PushEvent::Mounted { digest, from } if *digest == l.digest && from == "tok/base")),
            "{} not mounted: {evs:?}",
            l.digest
        );
    }
    // The config had no recorded source: uploaded.
    assert!(
        evs.iter()
            .any(|e| matches!(e, PushEvent::Done { digest } if *digest == m.config.digest)),
        "{evs:?}"
    );
    let reqs = tokens.requests.lock().expect("lock").clone();
    let last = reqs.last().cloned().unwrap_or_default();
    let scopes: Vec<String> = url::form_urlencoded::parse(last.as_bytes())
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(
        scopes,
        ["repository:tok/app2:pull,push", "repository:tok/base:pull"]
    );

    // A recorded source the token service refuses outright (no read right on it any more) must
    // not fail a push a plain upload can do: it is retried without the hints.
    let forbidden = r(&format!("{}/forbidden/base:1", reg.host()));
    let stale: std::collections::HashMap<_, _> = m
        .layers
        .iter()
        .map(|l| (l.digest, vec![forbidden.clone()]))
        .collect();
    let app3 = r(&format!("{}/tok/app3:1", reg.host()));
    c.push_with(
        &src,
        &mbytes,
        MEDIA_TYPE_OCI_MANIFEST,
        &app3,
        &PushOptions {
            blob_sources: stale,
            ..PushOptions::default()
        },
        &|_| {},
    )
    .unwrap_or_else(|e| panic!("push with a refused mount source: {e}\n{}", reg.log()));
    let (_d4, dst3) = new_store();
    c.pull(&app3, &amd64(), &dst3, &|_| {})
        .expect("pull what was pushed without the refused hints");

    let (_d2, dst) = new_store();
    c.pull(&app, &amd64(), &dst, &|_| {})
        .expect("pull with token");
    let after_first_pull = tokens.request_count();
    let (_d3, dst2) = new_store();
    c.pull(&app, &amd64(), &dst2, &|_| {}).expect("second pull");
    assert_eq!(
        tokens.request_count(),
        after_first_pull,
        "token must be cached per scope: {:?}",
        tokens.requests.lock().expect("lock")
    );

    c.login_check(&reg.host(), &Credentials::new("bob", "tok-pass"))
        .expect("login ok");
    let e = c
        .login_check(&reg.host(), &Credentials::new("bob", "nope"))
        .expect_err("bad login");
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e:?}");
}

#[test]
fn mirror_is_tried_before_the_origin() {
    let mirror = Registry::start();
    let mut origin = Some(Registry::start());
    let origin_host = origin.as_ref().map(|o| o.host()).unwrap_or_default();
    let (_d, src) = new_store();
    let (m_app, _) = make_image(&src, 80, "amd64", 3000);
    let (m_other, _) = make_image(&src, 90, "amd64", 3000);
    let plain = client(opts());
    plain
        .push(
            &src,
            &m_app,
            MEDIA_TYPE_OCI_MANIFEST,
            &r(&format!("{}/lib/app:1", mirror.host())),
            &|_| {},
        )
        .expect("push to mirror");
    plain
        .push(
            &src,
            &m_other,
            MEDIA_TYPE_OCI_MANIFEST,
            &r(&format!("{origin_host}/lib/other:1")),
            &|_| {},
        )
        .expect("push to origin");

    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "unqualified-search-registries = [\"docker.io\"]\n[[registry]]\nprefix = \"{origin_host}\"\nlocation = \"{origin_host}\"\ninsecure = true\n[[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n",
            mirror.host()
        ),
    )
    .expect("write conf");
    let c = client(ClientOptions {
        registries_conf: Some(conf),
        ..opts()
    });
    // Only the origin has "other": the mirror's 404 falls through to the origin.
    let (_d1, s1) = new_store();
    let p = c
        .pull(
            &r(&format!("{origin_host}/lib/other:1")),
            &amd64(),
            &s1,
            &|_| {},
        )
        .expect("other");
    assert!(!p.resolved.endpoint.is_mirror);
    assert_eq!(p.resolved.manifest_digest, Digest::of(&m_other));

    // With the origin stopped, "app" still comes from the mirror.
    drop(origin.take());
    let (_d2, s2) = new_store();
    let p = c
        .pull(
            &r(&format!("{origin_host}/lib/app:1")),
            &amd64(),
            &s2,
            &|_| {},
        )
        .expect("app via mirror");
    assert!(p.resolved.endpoint.is_mirror);
    assert_eq!(p.resolved.endpoint.host, mirror.host());
    assert_eq!(p.resolved.manifest_digest, Digest::of(&m_app));

    // Nothing anywhere: the error lists both endpoints in order.
    let e = c
        .pull(
            &r(&format!("{origin_host}/lib/missing:1")),
            &amd64(),
            &s2,
            &|_| {},
        )
        .expect_err("missing");
    match e {
        RegistryError::AllEndpointsFailed { errors, .. } => {
            assert_eq!(errors.len(), 2, "{errors:?}");
            assert!(errors[0].starts_with(&mirror.host()), "{errors:?}");
            assert!(errors[1].starts_with(&origin_host), "{errors:?}");
        }
        other => panic!("expected AllEndpointsFailed, got {other:?}"),
    }
}

fn skopeo(args: &[&str]) -> String {
    let out = std::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo (Debian package skopeo)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn skopeo_interop_both_ways() {
    let reg = Registry::start();
    let (_d, src) = new_store();
    let (mbytes, m) = make_image(&src, 100, "amd64", 20_000);
    let c = client(opts());
    let dest = r(&format!("{}/sk/app:1", reg.host()));
    let digest = c
        .push(&src, &mbytes, MEDIA_TYPE_OCI_MANIFEST, &dest, &|_| {})
        .expect("push");
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/sk/app:1", reg.host()),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("skopeo json");
    assert_eq!(v["Digest"], digest.to_string());
    let layers: Vec<String> = m.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(v["Layers"], serde_json::json!(layers));

    // An OCI layout made by hand, copied by skopeo, pulled by rbuild.
    let (m2bytes, m2) = make_image(&src, 110, "amd64", 20_000);
    let layout = tempfile::tempdir().expect("tempdir");
    let blobs = layout.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    for d in m2
        .layers
        .iter()
        .map(|l| l.digest)
        .chain([m2.config.digest, Digest::of(&m2bytes)])
    {
        std::fs::write(blobs.join(d.hex()), src.read_blob(&d).expect("blob")).expect("write");
    }
    std::fs::write(
        layout.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "digest": Digest::of(&m2bytes).to_string(),
            "size": m2bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v2"}
        }]
    });
    std::fs::write(layout.path().join("index.json"), index.to_string()).expect("write");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v2", layout.path().display()),
        &format!("docker://{}/sk/from-skopeo:2", reg.host()),
    ]);
    let (_d2, dst) = new_store();
    let pulled = c
        .pull(
            &r(&format!("{}/sk/from-skopeo:2", reg.host())),
            &amd64(),
            &dst,
            &|_| {},
        )
        .expect("pull skopeo's push");
    assert_eq!(pulled.resolved.config_digest(), m2.config.digest);
    let got: Vec<Digest> = pulled.layers.iter().map(|l| l.digest).collect();
    let want: Vec<Digest> = m2.layers.iter().map(|l| l.digest).collect();
    assert_eq!(got, want);
    for d in want {
        assert_eq!(
            dst.read_blob(&d).expect("blob"),
            src.read_blob(&d).expect("blob")
        );
    }
}

#[test]
fn dropped_connection_is_resumed_with_range() {
    let reg = Registry::start();
    let (_d, src) = new_store();
    let (mbytes, m) = make_image(&src, 120, "amd64", 200_000);
    let c = client(opts());
    c.push(
        &src,
        &mbytes,
        MEDIA_TYPE_OCI_MANIFEST,
        &r(&format!("{}/drop/app:1", reg.host())),
        &|_| {},
    )
    .expect("push");
    let victim = m.layers[1].digest;

    // Cut once: the download resumes from where it stopped.
    let proxy = CuttingProxy::start(reg.host(), victim.to_string(), 70_000, 1);
    let (_d2, dst) = new_store();
    let evs = Events::new();
    let pulled = c
        .pull(
            &r(&format!("{}/drop/app:1", proxy.host())),
            &amd64(),
            &dst,
            &|e| evs.push(e),
        )
        .unwrap_or_else(|e| panic!("pull through cutting proxy: {e}"));
    assert_eq!(pulled.resolved.manifest_digest, Digest::of(&mbytes));
    let resumed: Vec<u64> = evs
        .all()
        .iter()
        .filter_map(|e| match e {
            PullEvent::Retrying {
                digest, resumed_at, ..
            } if *digest == victim => Some(*resumed_at),
            _ => None,
        })
        .collect();
    assert_eq!(resumed.len(), 1, "{:?}", evs.all());
    assert!(
        resumed[0] > 0,
        "download restarted instead of resuming: {resumed:?}"
    );
    assert!(
        proxy
            .range_requests
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    assert_eq!(
        dst.read_blob(&victim).expect("blob"),
        src.read_blob(&victim).expect("blob")
    );

    // Cut on every full GET and refuse nothing else: with zero retries the pull fails cleanly.
    let proxy = CuttingProxy::start(reg.host(), victim.to_string(), 70_000, 100);
    let c0 = client(ClientOptions {
        retries: 0,
        ..opts()
    });
    let (_d3, dst3) = new_store();
    let e = c0
        .pull(
            &r(&format!("{}/drop/app:1", proxy.host())),
            &amd64(),
            &dst3,
            &|_| {},
        )
        .expect_err("no retries left");
    assert!(e.to_string().contains(&proxy.host()), "{e}");
    assert!(!dst3.contains(&victim));
    assert_eq!(leftover_ingests(&dst3), Vec::<std::path::PathBuf>::new());
}

#[test]
fn tls_registry_on_loopback_and_ca_file_errors() {
    let reg = Registry::start_tls();
    let (_d, src) = new_store();
    let (mbytes, _) = make_image(&src, 130, "amd64", 2000);
    let c = client(opts());
    let dest = r(&format!("{}/tls/app:1", reg.host()));
    let digest = c
        .push(&src, &mbytes, MEDIA_TYPE_OCI_MANIFEST, &dest, &|_| {})
        .unwrap_or_else(|e| panic!("push over TLS: {e}\n{}", reg.log()));
    let (_d2, dst) = new_store();
    let p = c
        .pull(&dest, &amd64(), &dst, &|_| {})
        .expect("pull over TLS");
    assert_eq!(p.resolved.manifest_digest, digest);
    // Plain HTTP to this port answers 400, so these successes prove the HTTPS path was used.

    // The CA bundle named in the options is loaded (and a missing one is an error naming it).
    let ca = reg.dir.path().join("tls-cert.pem");
    BlockingClient::new(ClientOptions {
        ca_file: Some(ca),
        ..opts()
    })
    .expect("client with CA file");
    let missing = reg.dir.path().join("no-such-ca.pem");
    let e = BlockingClient::new(ClientOptions {
        ca_file: Some(missing.clone()),
        ..opts()
    })
    .expect_err("missing CA file");
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
}

#[test]
fn docker_schema2_manifest_and_mount_fallback_to_upload() {
    use rbuild_image::manifest::MEDIA_TYPE_DOCKER_MANIFEST;
    let reg = Registry::start();
    let (_d, src) = new_store();
    let (_, mut m) = make_image(&src, 140, "amd64", 4000);
    m.media_type = Some(MEDIA_TYPE_DOCKER_MANIFEST.into());
    m.config.media_type = "application/vnd.docker.container.image.v1+json".into();
    for l in &mut m.layers {
        l.media_type = "application/vnd.docker.image.rootfs.diff.tar.gzip".into();
    }
    let mbytes = serde_json::to_vec(&m).expect("json");
    src.put_bytes(&mbytes).expect("put");
    let c = client(opts());
    let dest = r(&format!("{}/docker/app:1", reg.host()));
    // The mount source lacks the blobs: the registry opens an upload session instead (202).
    let evs = Events::new();
    let digest = c
        .push_with(
            &src,
            &mbytes,
            MEDIA_TYPE_DOCKER_MANIFEST,
            &dest,
            &PushOptions {
                mount_from: vec![r(&format!("{}/docker/empty:1", reg.host()))],
                ..PushOptions::default()
            },
            &|e| evs.push(e),
        )
        .unwrap_or_else(|e| panic!("push docker manifest: {e}\n{}", reg.log()));
    let evs = evs.all();
    assert_eq!(
        count(&evs, |e| matches!(e, PushEvent::Mounted { .. })),
        0,
        "{evs:?}"
    );
    assert_eq!(
        count(&evs, |e| matches!(e, PushEvent::Done { .. })),
        3,
        "{evs:?}"
    );
    let (_d2, dst) = new_store();
    let p = c
        .pull(&dest, &amd64(), &dst, &|_| {})
        .expect("pull docker manifest");
    assert_eq!(p.resolved.manifest_digest, digest);
    assert_eq!(p.resolved.manifest_media_type, MEDIA_TYPE_DOCKER_MANIFEST);
    assert_eq!(p.layers, m.layers);
    // An anonymous registry accepts any login.
    c.login_check(&reg.host(), &Credentials::new("any", "thing"))
        .expect("anonymous registry login");
    // A tag that does not exist is a NotFound naming the URL.
    let e = c
        .resolve(&r(&format!("{}/docker/app:nope", reg.host())), &amd64())
        .expect_err("missing tag");
    assert!(
        matches!(&e, RegistryError::NotFound { url, .. } if url.contains("/v2/docker/app/manifests/nope")),
        "{e:?}"
    );
}
