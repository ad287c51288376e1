//! `COPY --chmod` specs: octal (`0755`, `755`) or symbolic (`u+x`, `a=rX`,
//! `go-w,u+s`) as BuildKit accepts them since Dockerfile syntax 1.14.
//!
//! Symbolic clauses follow POSIX chmod with a umask of zero: an empty "who"
//! means `a`.

use crate::ContextError;

/// A parsed `--chmod` value, kept parsed so it is validated once and applied
/// to every copied file and directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chmod {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    who: u32,
    actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Action {
    op: char,
    perms: Vec<Perm>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Perm {
    Bits(u32),
    CondExec,
    CopyFrom(u32),
}

const WHO_U: u32 = 0o4700;
const WHO_G: u32 = 0o2070;
const WHO_O: u32 = 0o1007;
const WHO_A: u32 = WHO_U | WHO_G | WHO_O;

fn invalid(spec: &str, reason: impl Into<String>) -> ContextError {
    ContextError::InvalidChmod {
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

/// Parses a `--chmod` value; errors name the spec and what is wrong with it.
pub fn parse(spec: &str) -> Result<Chmod, ContextError> {
    if spec.is_empty() {
        return Err(invalid(spec, "empty mode"));
    }
    if spec.chars().all(|c| c.is_ascii_digit()) {
        let value = u32::from_str_radix(spec, 8)
            .map_err(|_| invalid(spec, "octal mode may only use digits 0-7"))?;
        if value > 0o7777 {
            return Err(invalid(spec, "octal mode is larger than 07777"));
        }
        return Ok(Chmod {
            kind: Kind::Octal(value),
        });
    }
    let mut clauses = Vec::new();
    for clause in spec.split(',') {
        clauses.push(parse_clause(spec, clause)?);
    }
    Ok(Chmod {
        kind: Kind::Symbolic(clauses),
    })
}

fn parse_clause(spec: &str, clause: &str) -> Result<Clause, ContextError> {
    let mut chars = clause.chars().peekable();
    let mut who = 0;
    while let Some(&c) = chars.peek() {
        let bits = match c {
            'u' => WHO_U,
            'g' => WHO_G,
            'o' => WHO_O,
            'a' => WHO_A,
            _ => break,
        };
        who |= bits;
        chars.next();
    }
    if who == 0 {
        who = WHO_A;
    }
    let mut actions = Vec::new();
    while let Some(op) = chars.next() {
        if !matches!(op, '+' | '-' | '=') {
            return Err(invalid(
                spec,
                format!("expected '+', '-' or '=' in {clause:?}, found {op:?}"),
            ));
        }
        let mut perms = Vec::new();
        while let Some(&c) = chars.peek() {
            let perm = match c {
                'r' => Perm::Bits(0o444),
                'w' => Perm::Bits(0o222),
                'x' => Perm::Bits(0o111),
                'X' => Perm::CondExec,
                's' => Perm::Bits(0o6000),
                't' => Perm::Bits(0o1000),
                'u' => Perm::CopyFrom(6),
                'g' => Perm::CopyFrom(3),
                'o' => Perm::CopyFrom(0),
                '+' | '-' | '=' => break,
                other => {
                    return Err(invalid(
                        spec,
                        format!("unknown permission {other:?} in {clause:?}"),
                    ))
                }
            };
            perms.push(perm);
            chars.next();
        }
        actions.push(Action { op, perms });
    }
    if actions.is_empty() {
        return Err(invalid(spec, format!("clause {clause:?} has no operator")));
    }
    Ok(Clause { who, actions })
}

impl Chmod {
    /// The permission bits (07777) a copied entry gets, given its current
    /// bits and whether it is a directory (which matters for `X`).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match &self.kind {
            Kind::Octal(v) => *v,
            Kind::Symbolic(clauses) => {
                let mut mode = mode & 0o7777;
                for clause in clauses {
                    for action in &clause.actions {
                        let mut value = 0;
                        for perm in &action.perms {
                            value |= match perm {
                                Perm::Bits(b) => *b,
                                Perm::CondExec => {
                                    if is_dir || mode & 0o111 != 0 {
                                        0o111
                                    } else {
                                        0
                                    }
                                }
                                Perm::CopyFrom(shift) => ((mode >> shift) & 0o7) * 0o111,
                            };
                        }
                        value &= clause.who;
                        match action.op {
                            '+' => mode |= value,
                            '-' => mode &= !value,
                            _ => {
                                let mut clear = clause.who & 0o777;
                                if !is_dir {
                                    clear |= clause.who & 0o7000;
                                }
                                mode = (mode & !clear) | value;
                            }
                        }
                    }
                }
                mode
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // (spec, starting mode, is_dir, expected)
        let cases: &[(&str, u32, bool, u32)] = &[
            ("0755", 0o644, false, 0o755),
            ("755", 0o600, true, 0o755),
            ("4755", 0o600, false, 0o4755),
            ("0", 0o777, false, 0),
            ("u+x", 0o644, false, 0o744),
            ("+x", 0o644, false, 0o755),
            ("a=rX", 0o644, false, 0o444),
            ("a=rX", 0o744, false, 0o555),
            ("a=rX", 0o700, true, 0o555),
            ("go-w,u+s", 0o666, false, 0o4644),
            ("g+s", 0o755, true, 0o2755),
            ("o+t", 0o777, true, 0o1777),
            ("u=rwx,g=rx,o=", 0o000, false, 0o750),
            ("g=u", 0o640, false, 0o660),
            ("u-w+x", 0o644, false, 0o544),
            ("ug+w", 0o444, false, 0o664),
        ];
        for (spec, mode, is_dir, want) in cases {
            let parsed = parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(
                parsed.apply(*mode, *is_dir),
                *want,
                "{spec} on {mode:o} dir={is_dir}"
            );
        }
    }

    #[test]
    fn rejects_bad_specs() {
        for spec in ["", "888", "17777", "u+q", "z+x", "u", "u+x,", "rwx"] {
            let err = parse(spec).unwrap_err();
            assert!(
                matches!(&err, ContextError::InvalidChmod { spec: s, .. } if s == spec),
                "{spec}: {err}"
            );
        }
    }
}
