//! `rbuild`: the command line over the engine. It parses arguments as `docker build` / `docker save`
//! users type them, wires the library together, and renders progress and errors; nothing else.

mod cli;
mod registry;
mod render;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args = cli::insert_default_verb(args);
    let parsed = match <cli::Cli as clap::Parser>::try_parse_from(args) {
        Ok(p) => p,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli::run(parsed) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", render::error(&e));
            ExitCode::from(1)
        }
    }
}
