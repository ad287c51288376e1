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
