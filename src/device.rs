//! Choosing where tensors live: the CPU backend (always there) or wgpu (native GPU, or the CPU's
//! Vulkan driver), picked at run time.

use burn::prelude::*;

use crate::error::{Error, Result};

/// Which backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// burn-ndarray on the CPU.
    Cpu,
    /// burn-wgpu on the best adapter wgpu finds.
    Gpu,
    /// burn's flex CPU backend (multi-threaded GEMM convolutions): training on a CPU.
    #[cfg(not(target_arch = "wasm32"))]
    Flex,
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" | "ndarray" => Ok(DeviceChoice::Cpu),
            "gpu" | "wgpu" => Ok(DeviceChoice::Gpu),
            #[cfg(not(target_arch = "wasm32"))]
            "flex" => Ok(DeviceChoice::Flex),
            _ => Err(Error::Device(format!(
                "unknown device '{s}' (cpu, flex or gpu)"
            ))),
        }
    }
}

/// The CPU device.
#[allow(deprecated)] // burn-ndarray is deprecated in favour of flex; it is what we measured and ship.
pub fn cpu() -> Device {
    Device::ndarray()
}

/// A wgpu device on the best adapter, or an error that says why there is none. The runtime can
/// be registered once per process, so the first answer is kept.
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu() -> Result<Device> {
    static GPU: std::sync::OnceLock<std::result::Result<Device, String>> =
        std::sync::OnceLock::new();
    GPU.get_or_init(|| {
        Device::wgpu_options()
            .init()
            .map_err(|e| format!("no usable wgpu adapter: {e}"))
    })
    .clone()
    .map_err(Error::Device)
}

/// Resolves a choice to a device.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Gpu => gpu(),
        DeviceChoice::Flex => Ok(Device::flex()),
    }
}
