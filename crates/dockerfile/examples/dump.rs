fn main() {
    let src = std::fs::read_to_string(std::env::args().nth(1).unwrap()).unwrap();
    match dockerfile::parse("Dockerfile", &src) {
        Ok(df) => {
            for i in &df.instructions {
                println!("{}: {:?}", i.line, i.kind);
            }
            match dockerfile::plan(&df, &Default::default()) {
                Ok(p) => println!("stages {} target {}", p.stages.len(), p.target),
                Err(e) => println!("{}", e.render()),
            }
            for d in dockerfile::check(&df, &Default::default()) {
                println!("{d}");
            }
        }
        Err(e) => println!("{}\n{}", e, e.render()),
    }
}
