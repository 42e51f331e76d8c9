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
    println!("cargo:rustc-env=FA_LIBTORCH_LIB={lib}");
}
