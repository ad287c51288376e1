//! Source manifests: what they record, how two builds' manifests compare, and
//! the stored encoding and digest that later builds depend on.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_context::{Change, ChangeKind, Context, EntryData, SourceManifest};

fn write(base: &Path, rel: &str, content: &str, mode: u32) {
    let p = base.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A context whose every recorded attribute is pinned (modes are set, not
/// left to the umask), so its encoding and digest can be golden.
fn fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let c = d.path();
    write(c, "src/app.py", "print('app')\n", 0o644);
    write(c, "src/run.sh", "#!/bin/sh\nexec python3 app.py\n", 0o755);
    write(c, "src/pkg/util.py", "", 0o600);
    write(c, "src/cache.pyc", "junk", 0o644);
    fs::create_dir(c.join("src/empty")).unwrap();
    symlink("app.py", c.join("src/main.py")).unwrap();
    for dir in ["src", "src/pkg", "src/empty"] {
        chmod(&c.join(dir), 0o755);
    }
    write(c, ".dockerignore", "**/*.pyc\n", 0o644);
    d
}

fn srcs(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

fn manifest(root: &Path, sources: &[&str]) -> SourceManifest {
    Context::open(root, None)
        .unwrap()
        .source_manifest(&srcs(sources))
        .unwrap()
}

#[test]
fn manifest_lists_what_the_sources_read_in_walk_order() {
    let d = fixture();
    let m = manifest(d.path(), &["src"]);
    let listed: Vec<(&Path, u32, u64, &str)> = m
        .entries()
        .iter()
        .map(|e| {
            let kind = match &e.data {
                EntryData::Directory => "dir",
                EntryData::File { .. } => "file",
                EntryData::Symlink { .. } => "link",
                EntryData::Other => "other",
            };
            (e.path.as_path(), e.mode, e.size, kind)
        })
        .collect();
    let p = Path::new;
    assert_eq!(
        listed,
        vec![
            (p("src"), 0o755, 0, "dir"),
            (p("src/app.py"), 0o644, 13, "file"),
            (p("src/empty"), 0o755, 0, "dir"),
            (p("src/main.py"), 0o777, 6, "link"),
            (p("src/pkg"), 0o755, 0, "dir"),
            (p("src/pkg/util.py"), 0o600, 0, "file"),
            (p("src/run.sh"), 0o755, 30, "file"),
        ]
    );
    let link = m.entries().iter().find(|e| e.path == p("src/main.py"));
    assert_eq!(
        link.map(|e| &e.data),
        Some(&EntryData::Symlink {
            target: PathBuf::from("app.py")
        })
    );
    assert_eq!(m.sources().collect::<Vec<_>>(), vec!["src"]);
}

#[test]
fn manifest_digest_is_digest_sources() {
    let d = fixture();
    let ctx = Context::open(d.path(), None).unwrap();
    for sources in [
        srcs(&["."]),
        srcs(&["src/*.py", "src/pkg"]),
        srcs(&["src/main.py"]),
    ] {
        assert_eq!(
            ctx.source_manifest(&sources).unwrap().digest(),
            ctx.digest_sources(&sources).unwrap()
        );
    }
}

/// The encoding is stored with cache entries and the digest is part of cache
/// keys: changing either silently invalidates every user's cache (or worse,
/// misreads stored manifests). Update these only with a version bump.
#[test]
fn encoding_and_digest_are_golden() {
    let d = fixture();
    let m = manifest(d.path(), &["src/*.py", "src/pkg"]);
    let bytes = m.to_bytes();
    assert_eq!(
        hex(&bytes),
        concat!(
            "52425352434d460001000000", // magic, version 1
            "02000000",                 // 2 sources
            "08000000",
            "7372632f2a2e7079",
            "02000000", // "src/*.py", 2 matches
            // match "src/app.py": root "src/app.py", 1 entry: a 13-byte file, 0644
            "0a000000",
            "7372632f6170702e7079",
            "0a000000",
            "7372632f6170702e7079",
            "01000000",
            "0a000000",
            "7372632f6170702e7079",
            "66",
            "a4010000",
            "0d00000000000000",
            "9486029051d5075cceb185e01d48a3f3055ae950db83521ec6cb2ff16c09627a",
            // match "src/main.py": the link is followed, so its root and
            // only entry are src/app.py again
            "0b000000",
            "7372632f6d61696e2e7079",
            "0a000000",
            "7372632f6170702e7079",
            "01000000",
            "0a000000",
            "7372632f6170702e7079",
            "66",
            "a4010000",
            "0d00000000000000",
            "9486029051d5075cceb185e01d48a3f3055ae950db83521ec6cb2ff16c09627a",
            // "src/pkg": 1 match, the directory and its empty file
            "07000000",
            "7372632f706b67",
            "01000000",
            "07000000",
            "7372632f706b67",
            "07000000",
            "7372632f706b67",
            "02000000",
            "07000000",
            "7372632f706b67",
            "64",
            "ed010000",
            "0000000000000000",
            "0f000000",
            "7372632f706b672f7574696c2e7079",
            "66",
            "80010000",
            "0000000000000000",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        )
    );
    assert_eq!(
        m.digest(),
        "sha256:b5f11806334d6484f34298c19578c36782b0d1d4d5a89b7544c3e82fef047031"
    );
    assert_eq!(SourceManifest::from_bytes(&bytes).unwrap(), m);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn decoding_rejects_damaged_input_without_panicking() {
    let d = fixture();
    let bytes = manifest(d.path(), &["."]).to_bytes();
    for len in 0..bytes.len() {
        assert!(
            SourceManifest::from_bytes(&bytes[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(SourceManifest::from_bytes(&trailing).is_err());
    let mut version = bytes.clone();
    version[8] = 2;
    let err = SourceManifest::from_bytes(&version).unwrap_err();
    assert_eq!(err.reason, "unsupported version");
    // Every single-byte corruption either fails or decodes to something
    // that re-encodes to exactly those bytes (never a panic or a silent
    // reinterpretation).
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0xa5;
        if let Ok(m) = SourceManifest::from_bytes(&b) {
            assert_eq!(m.to_bytes(), b, "byte {i}");
        }
    }
}

#[test]
fn changes_name_added_removed_and_modified_paths_sorted() {
    let d = fixture();
    let c = d.path();
    let old = manifest(c, &["."]);
    assert!(old.changes(&old).is_empty());

    fs::write(c.join("src/app.py"), "print('app 2')\n").unwrap();
    fs::remove_file(c.join("src/pkg/util.py")).unwrap();
    write(c, "src/new/mod.py", "", 0o644);
    chmod(&c.join("src/run.sh"), 0o700);
    fs::remove_file(c.join("src/main.py")).unwrap();
    symlink("run.sh", c.join("src/main.py")).unwrap();
    // Ignored, so not part of either manifest.
    fs::write(c.join("src/cache.pyc"), "more junk").unwrap();
    let new = manifest(c, &["."]);

    let change = |path: &str, kind| Change {
        path: PathBuf::from(path),
        kind,
    };
    assert_eq!(
        new.changes(&old),
        vec![
            change("src/app.py", ChangeKind::Modified),
            change("src/main.py", ChangeKind::Modified),
            change("src/new", ChangeKind::Added),
            change("src/new/mod.py", ChangeKind::Added),
            change("src/pkg/util.py", ChangeKind::Removed),
            change("src/run.sh", ChangeKind::Modified),
        ]
    );
    // And the other way round.
    let back: Vec<(PathBuf, ChangeKind)> = old
        .changes(&new)
        .into_iter()
        .map(|c| (c.path, c.kind))
        .collect();
    assert!(back.contains(&(PathBuf::from("src/new"), ChangeKind::Removed)));
    assert!(back.contains(&(PathBuf::from("src/pkg/util.py"), ChangeKind::Added)));
}

#[test]
fn overlapping_sources_count_a_path_once() {
    let d = fixture();
    let c = d.path();
    let old = manifest(c, &["src", "src/app.py"]);
    assert_eq!(
        old.entries()
            .iter()
            .filter(|e| e.path == Path::new("src/app.py"))
            .count(),
        2
    );
    fs::write(c.join("src/app.py"), "x").unwrap();
    let new = manifest(c, &["src", "src/app.py"]);
    assert_eq!(
        new.changes(&old),
        vec![Change {
            path: PathBuf::from("src/app.py"),
            kind: ChangeKind::Modified
        }]
    );
}

#[test]
fn stat_cache_is_one_file_per_directory_however_it_is_spelled() {
    let d = fixture();
    let store = tempfile::tempdir().unwrap();
    let via_link = store.path().join("link");
    symlink(d.path(), &via_link).unwrap();
    let plain = Context::open(d.path(), None).unwrap();
    let linked = Context::open(&via_link.join("src/.."), None).unwrap();
    assert_eq!(plain.stat_cache_name(), linked.stat_cache_name());
    assert_eq!(plain.stat_cache_name().len(), 64);

    let dir = store.path().join("contexts");
    let ctx = plain.with_stat_cache_in(&dir);
    let want = dir.join(ctx.stat_cache_name());
    assert_eq!(ctx.stat_cache_path(), Some(want.as_path()));
    assert!(!want.exists(), "created before any digest");
    let digest = ctx.digest_sources(&srcs(&["src"])).unwrap();
    assert!(want.is_file());
    assert_eq!(ctx.hash_stats().cache_save_error, None);
    // Nothing but the cache file is left in the directory (no temp files).
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    assert_eq!(
        digest,
        Context::open(d.path(), None)
            .unwrap()
            .digest_sources(&srcs(&["src"]))
            .unwrap()
    );
}
