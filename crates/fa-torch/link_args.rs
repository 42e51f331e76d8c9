//! The link arguments of every executable that links libtorch (shared by the build scripts
//! of `fa-torch` and `fa`).

/// `-ltorch_cuda` under `--no-as-needed` (nothing references it, and without it the binary
/// silently runs on the CPU even where a GPU exists), and an rpath to libtorch's folder so
/// the executable runs without LD_LIBRARY_PATH.
pub fn link_args(lib: &str) -> Vec<String> {
    let mut args = Vec::new();
    if std::path::Path::new(lib).join("libtorch_cuda.so").exists() {
        args.push("-Wl,--no-as-needed".to_string());
        args.push("-ltorch_cuda".to_string());
        args.push("-Wl,--as-needed".to_string());
    }
    args.push(format!("-Wl,-rpath,{lib}"));
    args
}
