//! Fuzz target: parse, plan, expand every stage and run the checks on
//! arbitrary UTF-8; any panic is a bug (the front end must never panic).
#![no_main]

use rbuild_dockerfile::{check, parse, plan, PlanOptions, Scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(df) = parse("Dockerfile", src) else {
        return;
    };
    let mut opts = PlanOptions::default();
    opts.build_args.insert("A".into(), "a b".into());
    let _ = check(&df, &opts);
    let Ok(p) = plan(&df, &opts) else {
        return;
    };
    for st in &p.stages {
        let mut scope = Scope::new(&p, st.index, &opts, &["PATH=/bin".to_string()]);
        for ins in &st.instructions {
            if let Ok(e) = scope.expand(ins) {
                scope.apply(&e);
            }
        }
        let _ = scope.run_env();
        let _ = scope.used_args();
    }
});
