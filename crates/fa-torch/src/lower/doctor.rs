//! `fa doctor` and `--device`: which libtorch is loaded, from where, and which devices it sees.

use tch::{Cuda, Device};

use crate::lower::LowerError;

/// A human-readable report: libtorch version and location, CUDA availability and devices.
pub fn doctor() -> String {
    let mut lines = Vec::new();
    let loaded = loaded_libtorch();
    let folder = loaded
        .as_deref()
        .and_then(|path| std::path::Path::new(path).parent());
    let version = folder
        .and_then(libtorch_version)
        .unwrap_or_else(|| "unknown".into());
    lines.push(format!(
        "libtorch version:  {version} (tch 0.24.0 expects 2.11.0)"
    ));
    match &loaded {
        Some(path) => lines.push(format!("libtorch loaded:   {path}")),
        None => lines.push("libtorch loaded:   not found in /proc/self/maps".into()),
    }
    let built = option_env!("FA_LIBTORCH_LIB").unwrap_or("unknown");
    lines.push(format!("built against:     {built} (rpath)"));
    match std::env::var("LD_LIBRARY_PATH") {
        Ok(value) if !value.is_empty() => lines.push(format!("LD_LIBRARY_PATH:   {value}")),
        _ => lines.push("LD_LIBRARY_PATH:   not set".into()),
    }
    if let (Some(folder), true) = (folder, built != "unknown") {
        if folder != std::path::Path::new(built) {
            lines.push(
                "note: libtorch was loaded from another folder than the one built against".into(),
            );
        }
    }
    let available = Cuda::is_available();
    lines.push(format!(
        "cuda available:    {}",
        if available { "yes" } else { "no" }
    ));
    if available {
        lines.push(format!(
            "cudnn available:   {}",
            if Cuda::cudnn_is_available() {
                "yes"
            } else {
                "no"
            }
        ));
        let count = Cuda::device_count();
        lines.push(format!("cuda devices:      {count}"));
        for (index, name) in gpu_names()
            .into_iter()
            .enumerate()
            .take(count.max(0) as usize)
        {
            lines.push(format!("  cuda:{index}  {name}"));
        }
    }
    lines.push(format!("cpu threads:       {}", tch::get_num_threads()));
    lines.join("\n")
}

/// Parses `--device auto|cpu|cuda|cuda:N`; `auto` is the first GPU when one exists.
pub fn parse_device(text: &str) -> Result<Device, LowerError> {
    let text = text.trim();
    let device = match text {
        "auto" => return Ok(Device::cuda_if_available()),
        "cpu" => return Ok(Device::Cpu),
        "cuda" => Device::Cuda(0),
        _ => match text.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => Device::Cuda(index),
            _ => return Err(LowerError::Device(text.to_string())),
        },
    };
    let Device::Cuda(index) = device else {
        return Ok(device);
    };
    let count = if Cuda::is_available() {
        Cuda::device_count().max(0) as usize
    } else {
        0
    };
    if index >= count {
        return Err(LowerError::CudaUnavailable { index, count });
    }
    Ok(device)
}

/// The path of the libtorch_cpu shared library mapped into this process.
fn loaded_libtorch() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so") || path.contains("/libtorch_cpu.so."))
        .map(str::to_string)
}

/// The version recorded beside a libtorch `lib` folder: PyTorch's `version.py` in a wheel,
/// `build-version` in a standalone libtorch archive.
fn libtorch_version(lib: &std::path::Path) -> Option<String> {
    let root = lib.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|line| line.starts_with("__version__"))?;
        return Some(
            line.split('=')
                .nth(1)?
                .trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .to_string(),
        );
    }
    std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|v| v.trim().to_string())
}

/// GPU names from the NVIDIA driver's procfs entries (libtorch's C API does not expose them).
fn gpu_names() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc/driver/nvidia/gpus") else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let info = std::fs::read_to_string(entry.path().join("information")).ok()?;
            let model = info
                .lines()
                .find_map(|l| l.strip_prefix("Model:"))?
                .trim()
                .to_string();
            Some((entry.file_name().to_string_lossy().into_owned(), model))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, model)| model).collect()
}
