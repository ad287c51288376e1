//! Debugging aid: `cargo run -p rbuild-dockerfile --example dump -- Dockerfile`
//! prints the parsed instructions, the plan and the build-check findings.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: dump <Dockerfile>");
        std::process::exit(2);
    };
    let src = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let df = match rbuild_dockerfile::parse(&path, &src) {
        Ok(df) => df,
        Err(e) => {
            eprint!("{}", e.render());
            std::process::exit(1);
        }
    };
    for i in &df.instructions {
        println!("{:>4}: {:?}", i.line, i.kind);
    }
    let opts = rbuild_dockerfile::PlanOptions::default();
    match rbuild_dockerfile::plan(&df, &opts) {
        Ok(p) => {
            for s in &p.stages {
                println!(
                    "stage {} {:?} base={:?} deps={:?}",
                    s.index, s.name, s.base, s.deps
                );
            }
            println!("target: {}", p.target);
        }
        Err(e) => eprint!("{}", e.render()),
    }
    for d in rbuild_dockerfile::check(&df, &opts) {
        println!("{d}");
    }
}
