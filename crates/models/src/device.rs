//! `--device auto|cpu|cuda:N`.

use tch::Device;

use crate::error::{ModelError, Result};

/// Parses a device name; `auto` picks CUDA when present.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "auto" => Ok(if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }),
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        other => {
            let index = other.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()).ok_or_else(|| ModelError::InvalidInput {
                field: "device".into(),
                reason: format!("`{other}` is not auto, cpu or cuda:N"),
            })?;
            if index >= tch::Cuda::device_count() as usize {
                return Err(ModelError::InvalidInput { field: "device".into(), reason: format!("cuda:{index} is not present ({} CUDA devices)", tch::Cuda::device_count()) });
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// A device's name as users write it.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
