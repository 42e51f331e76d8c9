//! Links libtorch_cuda even though no symbol of it is referenced, and sets an rpath to
//! libtorch's folder so the binary runs without LD_LIBRARY_PATH.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    // torch-sys publishes the folder it linked against (`links = "tch"`).
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    // Without --no-as-needed the linker drops libtorch_cuda (nothing references it) and
    // the binary silently runs on the CPU even where a GPU exists.
    let has_cuda = std::path::Path::new(&lib).join("libtorch_cuda.so").exists();
    if has_cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    compile_autocast_shim(&lib);
    println!("cargo:rustc-env=FA_LIBTORCH_LIB={lib}");
}

/// Compiles `csrc/autocast.cpp`, which sets the CUDA autocast dtype (bfloat16) that tch does
/// not expose, against the headers of the libtorch torch-sys linked.
fn compile_autocast_shim(lib: &str) {
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    let root = std::path::Path::new(lib)
        .parent()
        .expect("libtorch's lib folder has a parent");
    cc::Build::new()
        .cpp(true)
        .file("csrc/autocast.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .warnings(false)
        .compile("fa_autocast");
}
