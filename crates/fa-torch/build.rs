//! Compiles the C++ shim (`csrc/`) against the headers of the libtorch torch-sys linked,
//! publishes libtorch's folder to the `fa` package (`DEP_FA_TORCH_LIBTORCH_LIB`), and gives
//! this crate's own unit tests the link arguments every libtorch executable of fa needs.

#[path = "link_args.rs"]
mod link_args;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link_args.rs");
    // torch-sys publishes the folder it linked against (`links = "tch"`).
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys publishes DEP_TCH_LIBTORCH_LIB (links = \"tch\")");
    println!("cargo:libtorch_lib={lib}");
    println!("cargo:rustc-env=FA_LIBTORCH_LIB={lib}");
    for arg in link_args::link_args(&lib) {
        println!("cargo:rustc-link-arg={arg}");
    }
    compile_shim(&lib);
    println!("cargo:rustc-env=FA_COMMIT={}", commit());
}

/// The commit the sources come from, with `+dirty` when tracked files differ from it, so a
/// run's summary names the code that produced it; `unknown` outside a git checkout.
fn commit() -> String {
    // Rebuild when HEAD moves (a commit, a checkout) so the recorded commit stays true;
    // `+dirty` is as of that build.
    let git_dir = std::process::Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(dir) = &git_dir {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
    }
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|status| !status.is_empty());
            if dirty {
                format!("{hash}+dirty")
            } else {
                hash
            }
        }
        None => "unknown".to_string(),
    }
}

/// Compiles the C++ shim: `csrc/autocast.cpp`, which sets the CUDA autocast dtype (bfloat16)
/// that tch does not expose; `csrc/dist.cpp`, c10d's Gloo process group and collectives
/// (`src/dist/`); and `csrc/perf.cpp` (channels_last, the multi-tensor operations, CUDA peak
/// memory). The wheel lacks Gloo's own headers, which c10d's Gloo header includes; Debian's
/// `libgloo-dev` provides them (`./dev` installs it).
fn compile_shim(lib: &str) {
    const FILES: [&str; 3] = ["csrc/autocast.cpp", "csrc/dist.cpp", "csrc/perf.cpp"];
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let root = std::path::Path::new(lib)
        .parent()
        .expect("libtorch's lib folder has a parent");
    if !std::path::Path::new("/usr/include/gloo/algorithm.h").exists() {
        println!(
            "cargo:warning=Gloo's headers are missing (/usr/include/gloo): run ./dev, or apt-get install libgloo-dev"
        );
    }
    cc::Build::new()
        .cpp(true)
        .files(FILES)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .define("USE_C10D_GLOO", None)
        .warnings(false)
        .compile("fa_shim");
}
