//! The command-line flags of the benchmarks (`cargo bench --bench NAME -- --flag value`):
//! a bench has no clap parser, only a few `--name value` pairs.

/// The value after `--name` on this process's command line, if given.
pub fn value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|index| args.get(index + 1))
        .cloned()
}
