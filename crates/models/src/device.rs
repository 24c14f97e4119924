//! `--device auto|cpu|cuda:N`.
//!
//! The binaries link libtorch's CPU library only (the linker drops `libtorch_cuda.so`, whose
//! symbols nothing references), so a CPU machine never pays for loading the CUDA library at
//! start. When CUDA is asked for, or `auto` finds an NVIDIA driver, `libtorch_cuda.so` is
//! loaded here once, before anything asks libtorch about CUDA: its static initialisers
//! register the CUDA hooks that `tch::Cuda` queries.

use std::sync::OnceLock;

use tch::Device;

use crate::error::{ModelError, Result};

/// Parses a device name; `auto` picks CUDA when present.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "auto" => Ok(if driver_present() && load_cuda().is_ok() && tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }),
        "cpu" => Ok(Device::Cpu),
        other => {
            let index = match other {
                "cuda" => Some(0),
                _ => other.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()),
            };
            let index = index.ok_or_else(|| ModelError::InvalidInput { field: "device".into(), reason: format!("`{other}` is not auto, cpu, cuda or cuda:N") })?;
            load_cuda().map_err(|reason| ModelError::InvalidInput { field: "device".into(), reason: format!("`{other}` asked for, but {reason}") })?;
            let count = tch::Cuda::device_count() as usize;
            if index >= count {
                return Err(ModelError::InvalidInput { field: "device".into(), reason: format!("cuda:{index} is not present ({count} CUDA devices)") });
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// Whether an NVIDIA driver is visible (checked before loading the CUDA library for `auto`).
fn driver_present() -> bool {
    ["/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version"].iter().any(|p| std::path::Path::new(p).exists())
}

/// Loads `libtorch_cuda.so` once (found through the binary's rpath or LD_LIBRARY_PATH).
pub fn load_cuda() -> std::result::Result<(), String> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let name = c"libtorch_cuda.so";
            // SAFETY: dlopen with a valid C string; the handle is kept for the process's life.
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns a thread-local C string or null.
                let err = unsafe { libc::dlerror() };
                let reason = if err.is_null() { "unknown error".to_string() } else { unsafe { std::ffi::CStr::from_ptr(err) }.to_string_lossy().into_owned() };
                tracing::warn!(%reason, "libtorch_cuda.so could not be loaded");
                return Err(format!("libtorch_cuda.so could not be loaded: {reason}"));
            }
            tracing::debug!(cuda_available = tch::Cuda::is_available(), "libtorch_cuda.so loaded");
            Ok(())
        })
        .clone()
}

/// A device's name as users write it.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
