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

/// Compiles the C++ shim: `csrc/autocast.cpp`, which sets the autocast dtypes (bfloat16)
/// that tch does not expose; `csrc/dist.cpp`, c10d's process group and collectives
/// (`src/dist/`); `csrc/host_cache.cpp`, the caching allocator of CPU tensors
/// (`src/host_memory.rs`); and `csrc/perf.cpp` (channels_last, the multi-tensor operations,
/// CUDA peak memory). The wheel lacks Gloo's own headers, which c10d's Gloo header includes; Debian's
/// `libgloo-dev` provides them (`./dev` installs it). c10d's NCCL backend is compiled in when
/// the libtorch is a CUDA build and the CUDA and NCCL headers are found beside it (the
/// wheel's `nvidia` packages, with `nvidia-cuda-crt` and `nvidia-cuda-cccl`, which `./dev`
/// installs); otherwise the shim says so at run time and `fa doctor` tells why
/// (`FA_NCCL_MISSING`).
fn compile_shim(lib: &str) {
    const FILES: [&str; 4] = [
        "csrc/autocast.cpp",
        "csrc/dist.cpp",
        "csrc/host_cache.cpp",
        "csrc/perf.cpp",
    ];
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
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .files(FILES)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .define("USE_C10D_GLOO", None)
        .warnings(false);
    match nccl_headers(std::path::Path::new(lib)) {
        Ok(includes) => {
            build
                .define("USE_C10D_NCCL", None)
                .define("FA_WITH_NCCL", None);
            for include in includes {
                println!("cargo:rerun-if-changed={}", include.display());
                build.include(include);
            }
            println!("cargo:rustc-env=FA_NCCL_MISSING=");
            // The NCCL backend and the CUDA device calls live in these two libraries.
            println!("cargo:rustc-link-lib=dylib=torch_cuda");
            println!("cargo:rustc-link-lib=dylib=c10_cuda");
        }
        Err(why) => {
            println!("cargo:warning=building without c10d's NCCL backend: {why}");
            println!("cargo:rustc-env=FA_NCCL_MISSING={why}");
        }
    }
    build.compile("fa_shim");
}

/// The include folders c10d's NCCL header needs, found beside libtorch's `lib` folder in the
/// wheel's site-packages (`nvidia/cu13/include` with the CUDA runtime, `crt` and CCCL's `nv`
/// headers; `nvidia/nccl/include`), or why they cannot be used.
fn nccl_headers(lib: &std::path::Path) -> Result<Vec<std::path::PathBuf>, String> {
    if !lib.join("libtorch_cuda.so").exists() {
        return Err("this libtorch is not a CUDA build (no libtorch_cuda.so)".into());
    }
    let torch = lib.parent().ok_or("libtorch's folder has no parent")?;
    let nvidia = torch
        .parent()
        .map(|site| site.join("nvidia"))
        .ok_or("libtorch is not inside a site-packages folder")?;
    let cuda = ["cu13", "cu12"]
        .iter()
        .map(|name| nvidia.join(name).join("include"))
        .find(|folder| folder.join("cuda_runtime.h").exists())
        .ok_or_else(|| format!("no CUDA runtime headers under {}", nvidia.display()))?;
    let wanted = [
        (cuda.join("crt/host_config.h"), "nvidia-cuda-crt==13.0.*"),
        (cuda.join("nv/target"), "nvidia-cuda-cccl==13.0.*"),
        (nvidia.join("nccl/include/nccl.h"), "nvidia-nccl-cu13"),
    ];
    for (file, package) in &wanted {
        if !file.exists() {
            return Err(format!(
                "{} is missing (pip install '{package}' into the build's Python, as ./dev does)",
                file.display()
            ));
        }
    }
    Ok(vec![cuda, nvidia.join("nccl/include")])
}
