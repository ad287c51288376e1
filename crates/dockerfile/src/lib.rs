//! Dockerfile front end: parse text into typed instructions with spans, expand words, plan stages (pure, no I/O)
pub mod shell;
