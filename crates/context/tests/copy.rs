//! COPY behaviour against real temporary contexts and rootfs directories.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_context::{
    copy, Changed, Context, ContextError, CopyOutcome, CopyRequest, IgnoreMatcher,
};
use tempfile::TempDir;

struct Fixture {
    ctx: TempDir,
    root: TempDir,
}

fn write(base: &Path, rel: &str, content: &str, mode: u32) {
    let p = base.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(p: &Path, secs: i64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64))
        .unwrap();
}

impl Fixture {
    fn new() -> Self {
        let ctx = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let c = ctx.path();
        write(c, "a.txt", "A", 0o640);
        write(c, "b.txt", "B", 0o644);
        write(c, "run.sh", "#!/bin/sh\n", 0o755);
        write(c, "dir/f.txt", "F", 0o600);
        write(c, "dir/sub/g.txt", "G", 0o644);
        write(c, "docs/readme.md", "R", 0o644);
        write(c, "docs/keep.md", "K", 0o644);
        write(c, "x/a.txt", "XA", 0o644);
        write(c, "x/y/c.txt", "XYC", 0o644);
        set_mtime(&c.join("a.txt"), 1_000_000);
        Fixture { ctx, root }
    }

    fn c(&self) -> &Path {
        self.ctx.path()
    }

    fn r(&self) -> &Path {
        self.root.path()
    }

    fn copy(&self, sources: &[&str], dest: &str) -> Result<CopyOutcome, ContextError> {
        self.copy_with(sources, dest, |_| {})
    }

    fn copy_with(
        &self,
        sources: &[&str],
        dest: &str,
        tweak: impl FnOnce(&mut Opts),
    ) -> Result<CopyOutcome, ContextError> {
        let ctx = Context::open(self.c(), None).unwrap();
        let mut o = Opts::default();
        tweak(&mut o);
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let exclude: Vec<String> = o.exclude.iter().map(|s| s.to_string()).collect();
        copy(&CopyRequest {
            src_root: o.src_root.as_deref().unwrap_or(ctx.root()),
            ignore: if o.stage { None } else { Some(ctx.ignore()) },
            sources: &sources,
            dest,
            workdir: o.workdir,
            dest_root: self.r(),
            chown: o.chown,
            chmod: o.chmod,
            parents: o.parents,
            exclude: &exclude,
            keep_ownership: o.stage,
            cancel: None,
        })
    }
}

struct Opts {
    workdir: &'static str,
    chown: Option<(u32, u32)>,
    chmod: Option<&'static str>,
    parents: bool,
    exclude: Vec<&'static str>,
    stage: bool,
    src_root: Option<PathBuf>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            workdir: "/",
            chown: None,
            chmod: None,
            parents: false,
            exclude: Vec::new(),
            stage: false,
            src_root: None,
        }
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn rels(o: &CopyOutcome) -> Vec<(String, bool)> {
    o.changed
        .iter()
        .map(|c| (c.rel.display().to_string(), c.recursive))
        .collect()
}

#[test]
fn file_to_new_path_creates_parents_and_keeps_metadata() {
    let f = Fixture::new();
    let out = f.copy(&["a.txt"], "/x/y.txt").unwrap();
    let dst = f.r().join("x/y.txt");
    assert_eq!(fs::read_to_string(&dst).unwrap(), "A");
    assert_eq!(mode(&dst), 0o640);
    assert_eq!(fs::metadata(&dst).unwrap().mtime(), 1_000_000);
    assert_eq!(mode(&f.r().join("x")), 0o755);
    if is_root() {
        let md = fs::metadata(&dst).unwrap();
        assert_eq!((md.uid(), md.gid()), (0, 0));
    }
    assert_eq!(
        rels(&out),
        vec![("x".to_string(), false), ("x/y.txt".to_string(), false)]
    );
    assert_eq!(out.owner, Some((0, 0)));
}

#[test]
fn destination_forms() {
    // (sources, dest, workdir, expected file in rootfs)
    let cases: &[(&[&str], &str, &str, &str)] = &[
        (&["a.txt"], "/out/", "/", "out/a.txt"),
        (&["a.txt"], "out/", "/work", "work/out/a.txt"),
        (&["a.txt"], ".", "/work", "work/a.txt"),
        (&["a.txt"], "./", "/work", "work/a.txt"),
        (&["a.txt"], "renamed", "/work", "work/renamed"),
        (&["/a.txt"], "/abs/", "/", "abs/a.txt"),
        (&["./dir/../a.txt"], "/norm/", "/", "norm/a.txt"),
        (&["a.*"], "/single", "/", "single"),
        (&["a.txt", "b.txt"], "/multi/", "/", "multi/b.txt"),
        (&["*.txt"], "/glob/", "/", "glob/b.txt"),
        (&["d?r"], "/wdir", "/", "wdir/f.txt"),
        (&["dir/s*/*.txt"], "/deep/", "/", "deep/g.txt"),
    ];
    for (sources, dest, workdir, want) in cases {
        let f = Fixture::new();
        f.copy_with(sources, dest, |o| o.workdir = workdir)
            .unwrap_or_else(|e| panic!("{sources:?} -> {dest}: {e}"));
        assert!(
            f.r().join(want).is_file(),
            "{sources:?} -> {dest} (workdir {workdir}) should create {want}"
        );
    }
}

#[test]
fn file_into_existing_directory_without_slash() {
    let f = Fixture::new();
    fs::create_dir(f.r().join("existing")).unwrap();
    f.copy(&["a.txt"], "/existing").unwrap();
    assert!(f.r().join("existing/a.txt").is_file());
}

#[test]
fn directory_source_copies_contents_not_itself() {
    let f = Fixture::new();
    let out = f.copy(&["dir"], "/app").unwrap();
    assert_eq!(fs::read_to_string(f.r().join("app/f.txt")).unwrap(), "F");
    assert_eq!(
        fs::read_to_string(f.r().join("app/sub/g.txt")).unwrap(),
        "G"
    );
    assert!(!f.r().join("app/dir").exists());
    assert_eq!(mode(&f.r().join("app/f.txt")), 0o600);
    assert_eq!(rels(&out), vec![("app".to_string(), true)]);

    // Into an existing directory: only what was written is reported.
    let f = Fixture::new();
    fs::create_dir_all(f.r().join("app/sub")).unwrap();
    fs::write(f.r().join("app/sub/old"), "old").unwrap();
    let out = f.copy(&["dir/"], "/app/").unwrap();
    assert_eq!(
        rels(&out),
        vec![
            ("app/f.txt".to_string(), false),
            ("app/sub".to_string(), false),
            ("app/sub/g.txt".to_string(), false),
        ]
    );
    assert!(f.r().join("app/sub/old").is_file());
}

#[test]
fn multiple_sources_need_slash() {
    let f = Fixture::new();
    for (sources, dest) in [(&["a.txt", "b.txt"][..], "/out"), (&["*.txt"][..], "/out")] {
        let err = f.copy(sources, dest).unwrap_err();
        assert_eq!(
            err.to_string(),
            "When using COPY with more than one source file, the destination must be a directory and end with a /"
        );
    }
    assert!(!f.r().join("out").exists());
}

#[test]
fn missing_and_ignored_sources_are_not_found() {
    let f = Fixture::new();
    fs::write(f.c().join(".dockerignore"), "b.txt\n").unwrap();
    for src in ["nope.txt", "*.nope", "b.txt", "dir/nothing*"] {
        let err = f.copy(&[src], "/out/").unwrap_err();
        assert!(
            matches!(&err, ContextError::SourceNotFound { src: s } if s == src),
            "{src}: {err}"
        );
        assert!(err.to_string().contains(src));
    }
}

#[test]
fn dockerignore_filters_directory_copies() {
    let f = Fixture::new();
    fs::write(
        f.c().join(".dockerignore"),
        "docs\n!docs/keep.md\n**/g.txt\n*.sh\n",
    )
    .unwrap();
    f.copy(&["."], "/app/").unwrap();
    let r = f.r();
    assert!(r.join("app/a.txt").is_file());
    assert!(r.join("app/docs/keep.md").is_file());
    assert!(!r.join("app/docs/readme.md").exists());
    assert!(!r.join("app/dir/sub/g.txt").exists());
    assert!(r.join("app/dir/sub").is_dir());
    assert!(!r.join("app/run.sh").exists());
    // The ignore file itself is copied unless a pattern says otherwise.
    assert!(r.join("app/.dockerignore").is_file());
}

#[test]
fn excluded_directory_without_reincluded_children_is_not_created() {
    let f = Fixture::new();
    fs::write(f.c().join(".dockerignore"), "dir\n!docs/keep.md\n").unwrap();
    f.copy(&["."], "/app/").unwrap();
    assert!(!f.r().join("app/dir").exists());
    assert!(f.r().join("app/docs/readme.md").exists());
}

#[test]
fn dockerfile_specific_ignore_wins() {
    let f = Fixture::new();
    fs::write(f.c().join(".dockerignore"), "a.txt\n").unwrap();
    fs::create_dir(f.c().join("build")).unwrap();
    fs::write(f.c().join("build/app.Dockerfile"), "FROM scratch\n").unwrap();
    fs::write(f.c().join("build/app.Dockerfile.dockerignore"), "b.txt\n").unwrap();
    let ctx = Context::open(f.c(), Some(&f.c().join("build/app.Dockerfile"))).unwrap();
    assert!(ctx.ignore().is_excluded(Path::new("b.txt"), false));
    assert!(!ctx.ignore().is_excluded(Path::new("a.txt"), false));
    assert_eq!(
        ctx.ignore_file(),
        Some(f.c().join("build/app.Dockerfile.dockerignore").as_path())
    );
    let plain = Context::open(f.c(), Some(&f.c().join("Dockerfile"))).unwrap();
    assert!(plain.ignore().is_excluded(Path::new("a.txt"), false));
    assert!(matches!(
        Context::open(&f.c().join("a.txt"), None),
        Err(ContextError::NotADirectory(_))
    ));
}

#[test]
fn symlinks_inside_directories_are_copied_as_links() {
    let f = Fixture::new();
    symlink("/etc/passwd", f.c().join("dir/abs")).unwrap();
    symlink("../a.txt", f.c().join("dir/rel")).unwrap();
    f.copy(&["dir"], "/app").unwrap();
    assert_eq!(
        fs::read_link(f.r().join("app/abs")).unwrap(),
        PathBuf::from("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(f.r().join("app/rel")).unwrap(),
        PathBuf::from("../a.txt")
    );
}

#[test]
fn named_symlink_source_is_followed_inside_context() {
    let f = Fixture::new();
    symlink("a.txt", f.c().join("link")).unwrap();
    symlink("dir", f.c().join("dirlink")).unwrap();
    f.copy(&["link"], "/out/").unwrap();
    let dst = f.r().join("out/link");
    assert!(fs::symlink_metadata(&dst).unwrap().is_file());
    assert_eq!(fs::read_to_string(&dst).unwrap(), "A");
    f.copy(&["dirlink/sub"], "/viadir/").unwrap();
    assert!(f.r().join("viadir/g.txt").is_file());
}

#[test]
fn sources_escaping_the_context_are_refused() {
    let f = Fixture::new();
    symlink("/etc", f.c().join("etclink")).unwrap();
    symlink("../../../../../../..", f.c().join("up")).unwrap();
    symlink("/etc/passwd", f.c().join("passwdlink")).unwrap();
    for src in [
        "etclink/passwd",
        "../a.txt",
        "dir/../../a.txt",
        "up/etc/passwd",
        "passwdlink",
        "etc*/passwd",
    ] {
        let err = f.copy(&[src], "/out/").unwrap_err();
        assert!(
            matches!(&err, ContextError::SourceEscapes { src: s } if s == src),
            "{src}: {err}"
        );
    }
    assert!(!f.r().join("out").exists());
}

#[test]
fn destination_symlinks_stay_inside_rootfs() {
    let f = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    symlink("/", f.r().join("slash")).unwrap();
    symlink("../../../../../../../..", f.r().join("up")).unwrap();
    symlink(outside.path(), f.r().join("host")).unwrap();
    f.copy(&["a.txt"], "/slash/x/").unwrap();
    assert!(f.r().join("x/a.txt").is_file());
    f.copy(&["a.txt"], "/up/y.txt").unwrap();
    assert!(f.r().join("y.txt").is_file());
    f.copy(&["dir"], "/host/tree").unwrap();
    // `host` points at an absolute host path: inside the root it means
    // <root>/<that path>, never the real directory.
    assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
    let inside = f
        .r()
        .join(outside.path().strip_prefix("/").unwrap())
        .join("tree/f.txt");
    assert!(inside.is_file());
    // A symlink at a child position is replaced, not followed.
    let f2 = Fixture::new();
    fs::create_dir(f2.r().join("app")).unwrap();
    symlink(outside.path(), f2.r().join("app/sub")).unwrap();
    f2.copy(&["dir"], "/app").unwrap();
    assert!(f2.r().join("app/sub").is_dir());
    assert!(!fs::symlink_metadata(f2.r().join("app/sub"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
}

#[test]
fn chown_applies_to_copied_and_created_entries() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let f = Fixture::new();
    let out = f
        .copy_with(&["dir"], "/new/parent/app", |o| {
            o.chown = Some((1000, 1001))
        })
        .unwrap();
    for p in [
        "new",
        "new/parent",
        "new/parent/app",
        "new/parent/app/f.txt",
        "new/parent/app/sub/g.txt",
    ] {
        let md = fs::symlink_metadata(f.r().join(p)).unwrap();
        assert_eq!((md.uid(), md.gid()), (1000, 1001), "{p}");
    }
    assert_eq!(out.owner, Some((1000, 1001)));
}

#[test]
fn stage_copies_keep_ownership_and_resolve_links_in_root() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let f = Fixture::new();
    let stage = tempfile::tempdir().unwrap();
    write(stage.path(), "usr/lib/libfoo.so.1", "ELF", 0o755);
    symlink(
        "/usr/lib/libfoo.so.1",
        stage.path().join("usr/lib/libfoo.so"),
    )
    .unwrap();
    std::os::unix::fs::lchown(
        stage.path().join("usr/lib/libfoo.so.1"),
        Some(123),
        Some(456),
    )
    .unwrap();
    let out = f
        .copy_with(&["/usr/lib/libfoo.so"], "/lib/", |o| {
            o.stage = true;
            o.src_root = Some(stage.path().to_path_buf());
        })
        .unwrap();
    let dst = f.r().join("lib/libfoo.so");
    let md = fs::symlink_metadata(&dst).unwrap();
    assert!(md.is_file());
    assert_eq!((md.uid(), md.gid()), (123, 456));
    assert_eq!(out.owner, None);
    // Same file from the context side becomes root-owned.
    write(f.c(), "owned", "o", 0o644);
    std::os::unix::fs::lchown(f.c().join("owned"), Some(123), Some(456)).unwrap();
    f.copy(&["owned"], "/o").unwrap();
    let md = fs::metadata(f.r().join("o")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
}

#[test]
fn chmod_applies_to_files_and_directories() {
    let cases: &[(&str, &str, u32)] = &[
        ("0755", "app/f.txt", 0o755),
        ("0755", "app/sub", 0o755),
        ("u+x", "app/f.txt", 0o700),
        ("go-w,u+s", "app/sub/g.txt", 0o4644),
        ("a=rX", "app/sub", 0o555),
        ("a=rX", "app/f.txt", 0o444),
    ];
    for (spec, path, want) in cases {
        let f = Fixture::new();
        f.copy_with(&["dir"], "/app", |o| o.chmod = Some(spec))
            .unwrap();
        assert_eq!(mode(&f.r().join(path)), *want, "--chmod={spec} {path}");
    }
    let f = Fixture::new();
    let err = f
        .copy_with(&["a.txt"], "/x", |o| o.chmod = Some("9"))
        .unwrap_err();
    assert!(matches!(err, ContextError::InvalidChmod { .. }));
}

#[test]
fn parents_keep_source_paths() {
    let f = Fixture::new();
    f.copy_with(&["x/a.txt", "dir/sub/g.txt"], "/p/", |o| o.parents = true)
        .unwrap();
    assert!(f.r().join("p/x/a.txt").is_file());
    assert!(f.r().join("p/dir/sub/g.txt").is_file());
    let f = Fixture::new();
    f.copy_with(&["./x/./y/*.txt"], "/p/", |o| o.parents = true)
        .unwrap();
    assert!(f.r().join("p/y/c.txt").is_file());
    assert!(!f.r().join("p/x").exists());
    let f = Fixture::new();
    f.copy_with(&["dir"], "/p/", |o| o.parents = true).unwrap();
    assert!(f.r().join("p/dir/sub/g.txt").is_file());
}

#[test]
fn exclude_flag_is_relative_to_source() {
    let f = Fixture::new();
    f.copy_with(&["."], "/app/", |o| {
        o.exclude = vec!["*.md", "dir/sub", "docs"]
    })
    .unwrap();
    assert!(f.r().join("app/a.txt").is_file());
    assert!(f.r().join("app/dir/f.txt").is_file());
    assert!(!f.r().join("app/dir/sub").exists());
    assert!(!f.r().join("app/docs").exists());
    let f = Fixture::new();
    f.copy_with(&["*"], "/app/", |o| o.exclude = vec!["*.txt"])
        .unwrap();
    assert!(!f.r().join("app/a.txt").exists());
    assert!(f.r().join("app/run.sh").is_file());
    let f = Fixture::new();
    f.copy_with(&["dir"], "/app/", |o| {
        o.exclude = vec!["**/g.txt", "!sub/g.txt"]
    })
    .unwrap();
    assert!(f.r().join("app/sub/g.txt").is_file());
}

#[test]
fn hardlinks_are_preserved() {
    let f = Fixture::new();
    fs::hard_link(f.c().join("dir/f.txt"), f.c().join("dir/f-link")).unwrap();
    f.copy(&["dir"], "/app").unwrap();
    let a = fs::metadata(f.r().join("app/f.txt")).unwrap();
    let b = fs::metadata(f.r().join("app/f-link")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
}

#[test]
fn overwrites_existing_files_and_rejects_type_conflicts() {
    let f = Fixture::new();
    fs::write(f.r().join("target"), "old").unwrap();
    f.copy(&["a.txt"], "/target").unwrap();
    assert_eq!(fs::read_to_string(f.r().join("target")).unwrap(), "A");
    fs::create_dir_all(f.r().join("app/f.txt/inner")).unwrap();
    let err = f.copy(&["dir"], "/app").unwrap_err();
    assert!(matches!(err, ContextError::TypeConflict { .. }), "{err}");
    fs::write(f.r().join("file"), "x").unwrap();
    let err = f.copy(&["a.txt"], "/file/below/").unwrap_err();
    assert!(
        matches!(err, ContextError::DestNotDirectory { .. }),
        "{err}"
    );
}

#[test]
fn changed_list_is_parents_first_and_deduplicated() {
    let f = Fixture::new();
    let out = f.copy(&["dir", "a.txt"], "/srv/app/").unwrap();
    let want = vec![
        Changed {
            rel: "srv".into(),
            recursive: false,
        },
        Changed {
            rel: "srv/app".into(),
            recursive: false,
        },
        Changed {
            rel: "srv/app/a.txt".into(),
            recursive: false,
        },
        Changed {
            rel: "srv/app/f.txt".into(),
            recursive: false,
        },
        Changed {
            rel: "srv/app/sub".into(),
            recursive: true,
        },
    ];
    assert_eq!(out.changed, want);
}

#[test]
fn digest_tracks_content_and_ignores_ignored_files() {
    let f = Fixture::new();
    fs::write(f.c().join(".dockerignore"), "dir/sub\n").unwrap();
    let ctx = Context::open(f.c(), None).unwrap();
    let d1 = ctx.digest_sources(&["dir".to_string()]).unwrap();
    assert!(d1.starts_with("sha256:") && d1.len() == 71);
    assert_eq!(d1, ctx.digest_sources(&["dir".to_string()]).unwrap());
    fs::write(f.c().join("dir/sub/g.txt"), "changed but ignored").unwrap();
    assert_eq!(d1, ctx.digest_sources(&["dir".to_string()]).unwrap());
    fs::write(f.c().join("dir/f.txt"), "changed").unwrap();
    let d2 = ctx.digest_sources(&["dir".to_string()]).unwrap();
    assert_ne!(d1, d2);
    fs::set_permissions(f.c().join("dir/f.txt"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_ne!(d2, ctx.digest_sources(&["dir".to_string()]).unwrap());
    assert!(matches!(
        ctx.digest_sources(&["missing".to_string()]),
        Err(ContextError::SourceNotFound { .. })
    ));
}

#[test]
fn ignore_matcher_is_usable_directly() {
    let m = IgnoreMatcher::new(&["node_modules".to_string(), "!node_modules/keep".to_string()])
        .unwrap();
    assert!(m.is_excluded(Path::new("node_modules/x/y.js"), false));
    assert!(!m.is_excluded(Path::new("node_modules/keep/y.js"), false));
}

#[test]
fn dockerignore_symlink_is_resolved_inside_context() {
    let f = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("ignore"), "a.txt\n").unwrap();
    symlink(outside.path().join("ignore"), f.c().join(".dockerignore")).unwrap();
    let ctx = Context::open(f.c(), None).unwrap();
    // The host file must not have been read.
    assert!(!ctx.ignore().is_excluded(Path::new("a.txt"), false));
    // A link that stays inside the context works.
    fs::remove_file(f.c().join(".dockerignore")).unwrap();
    fs::write(f.c().join("ignore.txt"), "b.txt\n").unwrap();
    symlink("ignore.txt", f.c().join(".dockerignore")).unwrap();
    let ctx = Context::open(f.c(), None).unwrap();
    assert!(ctx.ignore().is_excluded(Path::new("b.txt"), false));
}

#[test]
fn empty_source_list_is_an_error() {
    let f = Fixture::new();
    let err = f.copy(&[], "/x/").unwrap_err();
    assert!(matches!(err, ContextError::InvalidSource { .. }), "{err}");
}

#[test]
fn excluded_directory_with_reincluded_file_can_be_named() {
    let f = Fixture::new();
    fs::write(f.c().join(".dockerignore"), "docs\n!docs/keep.md\n").unwrap();
    f.copy(&["docs"], "/d/").unwrap();
    assert!(f.r().join("d/keep.md").is_file());
    assert!(!f.r().join("d/readme.md").exists());
    let err = f.copy(&["docs/readme.md"], "/d/").unwrap_err();
    assert!(matches!(err, ContextError::SourceNotFound { .. }), "{err}");
}

#[test]
fn stage_links_climbing_above_root_are_clamped_not_followed_out() {
    let f = Fixture::new();
    let stage = tempfile::tempdir().unwrap();
    write(stage.path(), "lib/x.so", "inside", 0o644);
    fs::create_dir_all(stage.path().join("usr/lib")).unwrap();
    symlink(
        "../../../../../../lib/x.so",
        stage.path().join("usr/lib/x.so"),
    )
    .unwrap();
    f.copy_with(&["usr/lib/x.so"], "/out/", |o| {
        o.stage = true;
        o.src_root = Some(stage.path().to_path_buf());
    })
    .unwrap();
    assert_eq!(
        fs::read_to_string(f.r().join("out/x.so")).unwrap(),
        "inside"
    );
}

/// A stage's fifos are recreated; the context's are skipped, since docker's context transfer
/// never sends them (checked against docker 20.10 by the differential case copy-empty-and-fifo).
#[test]
fn fifos_are_recreated_from_stages_and_skipped_from_the_context() {
    let f = Fixture::new();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        f.c().join("dir/pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    f.copy(&["dir"], "/app").unwrap();
    assert!(fs::symlink_metadata(f.r().join("app/pipe")).is_err());
    assert!(f.r().join("app").is_dir());
    f.copy_with(&["dir"], "/from-stage", |o| {
        o.stage = true;
        o.src_root = Some(f.c().to_path_buf());
    })
    .unwrap();
    let md = fs::symlink_metadata(f.r().join("from-stage/pipe")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&md.file_type()));
    assert_eq!(md.mode() & 0o777, 0o640);
}

/// BuildKit makes the directory a directory's contents go into itself (0755), whatever the source
/// directory's mode (0775 from a checkout with umask 002); the contents keep their modes.
#[test]
fn directory_made_for_contents_is_0755() {
    let f = Fixture::new();
    fs::set_permissions(f.c().join("dir"), fs::Permissions::from_mode(0o775)).unwrap();
    fs::set_permissions(f.c().join("dir/sub"), fs::Permissions::from_mode(0o775)).unwrap();
    f.copy(&["dir"], "/made").unwrap();
    assert_eq!(mode(&f.r().join("made")), 0o755);
    assert_eq!(mode(&f.r().join("made/sub")), 0o775);
    assert_eq!(mode(&f.r().join("made/f.txt")), 0o600);
    fs::create_dir(f.r().join("existing")).unwrap();
    fs::set_permissions(f.r().join("existing"), fs::Permissions::from_mode(0o700)).unwrap();
    f.copy(&["dir"], "/existing").unwrap();
    assert_eq!(
        mode(&f.r().join("existing")),
        0o700,
        "an existing directory is kept"
    );
}

/// ADD of an archive replaces what is in the way (docker's untar); COPY refuses.
#[test]
fn copy_replacing_swaps_files_and_directories() {
    let f = Fixture::new();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "was-dir", "now a file", 0o644);
    write(src.path(), "was-file/child", "c", 0o644);
    write(f.r(), "dest/was-dir/inner/deep", "old", 0o644);
    write(f.r(), "dest/was-file", "old", 0o644);
    let sources = vec![".".to_string()];
    let r = CopyRequest {
        src_root: src.path(),
        ignore: None,
        sources: &sources,
        dest: "/dest/",
        workdir: "/",
        dest_root: f.r(),
        chown: None,
        chmod: None,
        parents: false,
        exclude: &[],
        keep_ownership: true,
        cancel: None,
    };
    assert!(matches!(copy(&r), Err(ContextError::TypeConflict { .. })));
    rbuild_context::copy_replacing(&r).unwrap();
    assert_eq!(
        fs::read_to_string(f.r().join("dest/was-dir")).unwrap(),
        "now a file"
    );
    assert_eq!(
        fs::read_to_string(f.r().join("dest/was-file/child")).unwrap(),
        "c"
    );
}

/// A directory on the path to a `!` pattern is sent by docker even when nothing below it is.
#[test]
fn dockerignore_keeps_directories_leading_to_exceptions() {
    let f = Fixture::new();
    fs::write(f.c().join(".dockerignore"), "**\n!dir/sub/missing\n").unwrap();
    f.copy(&["."], "/ctx").unwrap();
    assert!(f.r().join("ctx/dir/sub").is_dir());
    assert!(!f.r().join("ctx/dir/sub/g.txt").exists());
    assert!(!f.r().join("ctx/docs").exists());
}

#[test]
fn a_raised_cancel_flag_stops_the_copy_before_any_entry() {
    let f = Fixture::new();
    let ctx = Context::open(f.c(), None).unwrap();
    let cancel = std::sync::atomic::AtomicBool::new(true);
    let sources = vec!["dir".to_string()];
    let r = copy(&CopyRequest {
        src_root: ctx.root(),
        ignore: Some(ctx.ignore()),
        sources: &sources,
        dest: "/out/",
        workdir: "/",
        dest_root: f.r(),
        chown: None,
        chmod: None,
        parents: false,
        exclude: &[],
        keep_ownership: false,
        cancel: Some(&cancel),
    });
    assert!(matches!(r, Err(ContextError::Cancelled)), "{r:?}");
    assert!(!f.r().join("out/f.txt").exists());
}
