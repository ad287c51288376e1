//! `rbuild`: the command line over the engine. It parses arguments as `docker build` / `docker save`
//! users type them, wires the library together, and renders progress and errors; nothing else.

mod cli;
mod containers;
mod images;
mod info;
mod registry;
mod render;
mod signals;
mod streams;
mod template;
mod tty;
mod verbs;

use std::process::ExitCode;

fn main() -> ExitCode {
    // A container's monitor is this program re-executed (see rbuild_container): it must run
    // before anything else, while the process is single-threaded.
    if let Some(code) = rbuild_container::monitor_main_if_requested() {
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (args, debug) = take_debug_flag(args);
    init_tracing(debug);
    let (args, implicit_build) = match verbs::insert_default_verb(args) {
        Ok(a) => a,
        Err(unknown) => {
            eprintln!("{unknown}");
            return ExitCode::from(verbs::USAGE_EXIT);
        }
    };
    let mut parsed = match <cli::Cli as clap::Parser>::try_parse_from(args) {
        Ok(p) => p,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if implicit_build {
        if let Some(Err(unknown)) = parsed.build_context().map(verbs::check_implicit_context) {
            eprintln!("{unknown}");
            return ExitCode::from(verbs::USAGE_EXIT);
        }
    }
    // Rootless: become root of a user namespace holding the caller's subordinate ids now, while
    // the process has one thread, so unpacking, RUN and commit all see the image's owners.
    if parsed.wants_user_namespace() {
        parsed.pin_default_root();
        match rbuild_engine::sandbox::enter_user_namespace() {
            Ok(rbuild_engine::sandbox::UserNamespace::Unavailable(why)) => {
                if parsed.is_unshare() {
                    eprintln!("ERROR: rbuild unshare: no user namespace: {why}");
                    return ExitCode::from(1);
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("ERROR: entering the rootless user namespace: {e}");
                return ExitCode::from(1);
            }
        }
    }
    match cli::run(parsed) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", render::error(&e));
            ExitCode::from(1)
        }
    }
}

/// Removes docker's global `--debug` / `-D` (given before the command) from the arguments, so the
/// command parsers never see it; returns whether it was there.
fn take_debug_flag(mut args: Vec<std::ffi::OsString>) -> (Vec<std::ffi::OsString>, bool) {
    let global = args
        .iter()
        .skip(1)
        .take_while(|a| a.to_str().is_some_and(|a| a.starts_with('-')))
        .position(|a| a == "--debug" || a == "-D");
    match global {
        Some(i) => {
            args.remove(i + 1);
            (args, true)
        }
        None => (args, false),
    }
}

/// The libraries log through `tracing`; their records reach stderr here: `RUST_LOG` chooses
/// (e.g. `RUST_LOG=rbuild_registry=debug`), `--debug` shows rbuild's debug records, and warnings
/// show by default. Progress and results keep their own renderers.
fn init_tracing(debug: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::new(spec),
        _ if debug => EnvFilter::new("warn,rbuild=debug,rbuild_cli=debug,rbuild_engine=debug,rbuild_registry=debug,rbuild_layer=debug,rbuild_image=debug,rbuild_store=debug,rbuild_snapshot=debug,rbuild_sandbox=debug,rbuild_context=debug"),
        _ => EnvFilter::new("warn"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(rustix::termios::isatty(std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_flag_is_global_only() {
        let v = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert_eq!(
            take_debug_flag(v(&["rbuild", "--debug", "build", "."])),
            (v(&["rbuild", "build", "."]), true)
        );
        assert_eq!(
            take_debug_flag(v(&["rbuild", "-D", "images"])),
            (v(&["rbuild", "images"]), true)
        );
        // After the command it belongs to the command (a build arg, a RUN's own flag…).
        assert_eq!(
            take_debug_flag(v(&["rbuild", "build", "--debug"])),
            (v(&["rbuild", "build", "--debug"]), false)
        );
    }
}
