//! Dockerfile front end: parse text into typed instructions with spans, expand
//! words, plan stages. Pure: no I/O, no filesystem, no global state.
//!
//! Use it whenever a Dockerfile has to be understood: the engine plans and
//! dispatches builds with it, the CLI uses [`check`] for `--check`-style lints.
//! Behaviour follows Docker/BuildKit's documented Dockerfile frontend:
//! parser directives, escape character, continuations, heredocs, exec-form
//! fallback, every instruction flag, ARG scoping and ENV precedence.
//!
//! The flow is [`parse`] (syntax, never expands) → [`plan`] (stages, global
//! ARGs, `FROM` expansion, target) → per stage a [`Scope`] that expands each
//! instruction in order exactly where Docker does.
//!
//! ```
//! use rbuild_dockerfile::{parse, plan, PlanOptions, Scope, InstructionKind, Base};
//!
//! let src = "ARG TAG=3.19\nFROM alpine:${TAG} AS base\nARG TAG\nENV DIR=/app\nWORKDIR $DIR/$TAG\n";
//! let df = parse("Dockerfile", src).unwrap();
//! let p = plan(&df, &PlanOptions::default()).unwrap();
//! assert_eq!(p.stages[0].base, Base::Image("alpine:3.19".into()));
//! let mut scope = Scope::new(&p, 0, &PlanOptions::default(), &[]);
//! let mut last = None;
//! for ins in &p.stages[0].instructions {
//!     let e = scope.expand(ins).unwrap();
//!     scope.apply(&e);
//!     last = Some(e);
//! }
//! assert_eq!(last.unwrap().kind, InstructionKind::Workdir("/app/3.19".into()));
//! ```

#![warn(missing_docs)]

pub mod shell;

mod ast;
mod check;
mod error;
mod instructions;
mod parser;
mod plan;

pub use ast::{
    Add, ArgDecl, CacheSharing, Command, Copy, Directives, Dockerfile, From, Healthcheck, Heredoc,
    Instruction, InstructionKind, KeyValue, Mount, NetworkMode, Run, SecurityMode,
};
pub use check::check;
pub use error::{Diagnostic, ParseError, Severity, Span};
pub use plan::{
    expose_keys, plan, Base, FromRef, Plan, PlanOptions, Platform, PlatformError, Scope, Stage,
    PLATFORM_ARGS, PREDEFINED_ARGS,
};

/// Parses Dockerfile text into typed instructions; the entry point of the crate.
///
/// `file_name` is only used in error messages. Nothing is expanded here.
pub fn parse(file_name: &str, source: &str) -> Result<Dockerfile, ParseError> {
    parser::parse(file_name, source)
}
