fn main() {
    for (name, _) in rstar::backend::cuda::SOURCES {
        let c = rstar::backend::cuda::compile(name, "sm_90").unwrap();
        for l in c.log.lines().filter(|l| {
            l.contains("Compiling entry")
                || l.contains("Used")
                || l.contains("spill")
                || l.contains("warning")
        }) {
            println!("{l}");
        }
    }
}
