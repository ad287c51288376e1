//! Property test without extra dependencies: random Dockerfiles assembled from
//! known-good instruction lines, with comments, blank lines, indentation and
//! keyword case varied, must parse to exactly the instructions each line
//! parses to on its own.

use rbuild_dockerfile::*;

/// Small deterministic generator (xorshift), so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const LINES: &[&str] = &[
    "RUN echo hello",
    "RUN [\"echo\", \"exec\"]",
    "RUN --mount=type=cache,target=/c --network=host make",
    "CMD [\"serve\", \"--port\", \"80\"]",
    "ENTRYPOINT /bin/app",
    "ENV A=1 B=\"two words\"",
    "ENV LEGACY value with spaces",
    "ARG X=1 Y",
    "LABEL a=b",
    "EXPOSE 80 443/tcp",
    "VOLUME /data",
    "USER 1000:1000",
    "WORKDIR /app",
    "STOPSIGNAL SIGINT",
    "HEALTHCHECK --interval=1m CMD true",
    "HEALTHCHECK NONE",
    "ONBUILD RUN echo child",
    "COPY --from=golang:1.22 --chown=a:b src /dst/",
    "ADD --checksum=sha256:00 https://x/y /z",
    "SHELL [\"/bin/bash\", \"-c\"]",
    "MAINTAINER someone",
];

/// Lines that carry their own continuation/heredoc structure.
const MULTI: &[(&str, &str)] = &[
    ("RUN a \\\n# comment\n  && b", "RUN a   && b"),
    ("COPY <<EOF /f\ncontent\nEOF", "COPY <<EOF /f\ncontent\nEOF"),
    ("RUN <<-X\n\tbody\n\tX", "RUN <<-X\n\tbody\n\tX"),
];

/// ONBUILD's inner instruction carries its own position; compare it without.
fn norm(kind: &InstructionKind) -> InstructionKind {
    match kind {
        InstructionKind::Onbuild(i) => InstructionKind::Onbuild(Box::new(Instruction {
            span: Span::default(),
            line: 0,
            ..(**i).clone()
        })),
        k => k.clone(),
    }
}

fn alone(line: &str) -> InstructionKind {
    let df = parse("Dockerfile", &format!("FROM base\n{line}\n")).unwrap();
    norm(&df.instructions[1].kind)
}

fn vary_case(rng: &mut Rng, line: &str) -> String {
    let (kw, rest) = line.split_once(' ').unwrap_or((line, ""));
    let kw = match rng.below(3) {
        0 => kw.to_ascii_lowercase(),
        1 => kw.to_string(),
        _ => kw
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect(),
    };
    format!("{kw} {rest}")
}

#[test]
fn random_dockerfiles_parse_like_their_lines() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..400 {
        let mut src = String::from("FROM base\n");
        let mut want = vec![norm(
            &parse("Dockerfile", "FROM base").unwrap().instructions[0].kind,
        )];
        for _ in 0..rng.below(12) {
            match rng.below(6) {
                0 => src.push_str("# a comment\n"),
                1 => src.push('\n'),
                2 => {
                    let (text, single) = MULTI[rng.below(MULTI.len())];
                    src.push_str(text);
                    src.push('\n');
                    want.push(alone(single));
                }
                _ => {
                    let line = LINES[rng.below(LINES.len())];
                    let indent = ["", "  ", "\t"][rng.below(3)];
                    src.push_str(indent);
                    src.push_str(&vary_case(&mut rng, line));
                    src.push('\n');
                    want.push(alone(line));
                }
            }
        }
        let df = match parse("Dockerfile", &src) {
            Ok(df) => df,
            Err(e) => panic!("round {round}: {src:?}\n{}", e.render()),
        };
        let got: Vec<InstructionKind> = df.instructions.iter().map(|i| norm(&i.kind)).collect();
        assert_eq!(got, want, "round {round}: {src:?}");
        // Every instruction's reported line really starts with its keyword.
        for ins in &df.instructions {
            let line = src.lines().nth(ins.line - 1).unwrap_or("");
            let kw = ins.kind.keyword();
            assert!(
                line.trim_start().to_ascii_uppercase().starts_with(kw),
                "round {round}: line {} is {line:?}, expected {kw}",
                ins.line
            );
            assert!(src[ins.span.start..].to_ascii_uppercase().starts_with(kw));
        }
        // Planning and checking a valid file never fails.
        plan(&df, &PlanOptions::default()).unwrap();
        let _ = check(&df, &PlanOptions::default());
    }
}
