//! Gives the executables that link libtorch (`fa-torch`, tests, benchmarks, examples) its
//! link arguments; `fa` itself gets none, so it never needs libtorch to start.

#[path = "crates/fa-torch/link_args.rs"]
mod link_args;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // fa-torch publishes the libtorch folder torch-sys linked (`links = "fa_torch"`).
    let lib = std::env::var("DEP_FA_TORCH_LIBTORCH_LIB")
        .expect("fa-torch publishes DEP_FA_TORCH_LIBTORCH_LIB (links = \"fa_torch\")");
    for arg in link_args::link_args(&lib) {
        println!("cargo:rustc-link-arg-bin=fa-torch={arg}");
        println!("cargo:rustc-link-arg-tests={arg}");
        println!("cargo:rustc-link-arg-benches={arg}");
        println!("cargo:rustc-link-arg-examples={arg}");
    }
}
