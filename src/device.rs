//! Choosing where tensors live: a CPU backend (always there) or wgpu (native GPU, the CPU's
//! Vulkan driver, or WebGPU in the browser), picked at run time, and how much memory a network
//! call may take there.

use burn::prelude::*;

use crate::error::{Error, Result};

/// Which backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// burn-ndarray on the CPU: the reference the parity tests run on (single-threaded).
    Ndarray,
    /// burn-wgpu on the best adapter wgpu finds.
    Gpu,
    /// burn's flex CPU backend (multi-threaded GEMM convolutions, fused attention): the
    /// fastest CPU backend built natively, and what `cpu` means there.
    #[cfg(not(target_arch = "wasm32"))]
    Flex,
    /// burn's LibTorch backend on the CPU (optional `tch` feature, linked against the libtorch
    /// of a PyTorch wheel): PyTorch's own kernels. When built in, `cpu` means it.
    #[cfg(feature = "tch")]
    Tch,
}

impl DeviceChoice {
    /// The fastest CPU backend built into this binary.
    pub fn fastest_cpu() -> Self {
        #[cfg(all(feature = "tch", not(target_arch = "wasm32")))]
        return DeviceChoice::Tch;
        #[cfg(all(not(feature = "tch"), not(target_arch = "wasm32")))]
        return DeviceChoice::Flex;
        #[cfg(target_arch = "wasm32")]
        return DeviceChoice::Ndarray;
    }

    /// Its name, as `--device` takes it.
    pub fn name(&self) -> &'static str {
        match self {
            DeviceChoice::Ndarray => "ndarray",
            DeviceChoice::Gpu => "wgpu",
            #[cfg(not(target_arch = "wasm32"))]
            DeviceChoice::Flex => "flex",
            #[cfg(feature = "tch")]
            DeviceChoice::Tch => "tch",
        }
    }

    /// The default memory budget of one network call on this backend (a GPU's from its
    /// adapter's buffer limits).
    pub fn budget(&self) -> MemoryBudget {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            DeviceChoice::Gpu => gpu_budget(),
            #[cfg(not(target_arch = "wasm32"))]
            DeviceChoice::Flex => MemoryBudget {
                materialises_attention: false,
                ..MemoryBudget::cpu()
            },
            _ => MemoryBudget::cpu(),
        }
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceChoice::fastest_cpu()),
            "ndarray" => Ok(DeviceChoice::Ndarray),
            "gpu" | "wgpu" => Ok(DeviceChoice::Gpu),
            #[cfg(not(target_arch = "wasm32"))]
            "flex" => Ok(DeviceChoice::Flex),
            #[cfg(feature = "tch")]
            "tch" | "libtorch" => Ok(DeviceChoice::Tch),
            #[cfg(not(feature = "tch"))]
            "tch" | "libtorch" => Err(Error::Device(
                "this dxr was built without the LibTorch backend (cargo build --features tch, see docs/performance.md)"
                    .into(),
            )),
            _ => Err(Error::Device(format!(
                "unknown device '{s}' (cpu = the fastest CPU backend, flex, ndarray, tch, gpu/wgpu)"
            ))),
        }
    }
}

/// How much memory one network call may use on a device: the sampler cuts an image into tiles
/// (see [`crate::diffusion::tiles`]) when the whole image would need more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// All activations of one call, bytes.
    pub total: u64,
    /// The largest single tensor, bytes (WebGPU's storage-binding and buffer limits).
    pub largest_buffer: u64,
    /// Whether convolutions unfold their input (im2col: 9× a 3×3 conv's input), as the CPU
    /// backends do.
    pub unfolds_convolutions: bool,
    /// Whether softmax attention holds the whole n × n matrix (flex's fused op tiles it).
    pub materialises_attention: bool,
}

impl MemoryBudget {
    /// CPU backends: 1 GiB per call natively (a 2048² restore then peaks well under 1.5 GiB);
    /// 384 MiB in wasm32, whose whole address space is 4 GiB and holds the page's copies too.
    pub fn cpu() -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        let total = 1 << 30;
        #[cfg(target_arch = "wasm32")]
        let total = 384 << 20;
        Self {
            total,
            largest_buffer: total,
            unfolds_convolutions: true,
            materialises_attention: true,
        }
    }

    /// A wgpu device (WebGPU in the page, Vulkan/Metal natively) from its limits: the largest
    /// buffer is the smaller of the storage-binding and buffer limits; a call may use four such
    /// buffers, at most 1 GiB.
    pub fn wgpu(max_storage_binding: u64, max_buffer: u64) -> Self {
        // half the limit: the memory pool rounds allocations up, and an estimate is an estimate
        let largest = max_storage_binding.min(max_buffer) / 2;
        Self {
            total: (4 * largest).min(1 << 30),
            largest_buffer: largest,
            unfolds_convolutions: false,
            materialises_attention: true,
        }
    }

    /// The same budget with another total (and largest buffer no larger than it), in MiB.
    pub fn with_total_mib(self, mib: u64) -> Result<Self> {
        if mib == 0 || mib > 1 << 20 {
            return Err(Error::Usage(format!(
                "a memory budget of {mib} MiB is outside 1..=1048576 MiB"
            )));
        }
        let total = mib << 20;
        Ok(Self {
            total,
            largest_buffer: self.largest_buffer.min(total),
            ..self
        })
    }
}

impl std::fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} MiB per call, {} MiB per buffer",
            self.total >> 20,
            self.largest_buffer >> 20
        )
    }
}

/// The reference CPU device (burn-ndarray): what the parity tests compare against.
#[allow(deprecated)] // burn-ndarray is deprecated in favour of flex; it stays the reference.
pub fn cpu() -> Device {
    Device::ndarray()
}

/// The wgpu device and its budget, opened once per process (the runtime can be registered only
/// once, so the first answer is kept).
#[cfg(not(target_arch = "wasm32"))]
fn gpu_and_budget() -> std::result::Result<(Device, MemoryBudget), String> {
    static GPU: std::sync::OnceLock<std::result::Result<(Device, MemoryBudget), String>> =
        std::sync::OnceLock::new();
    GPU.get_or_init(|| {
        let (device, setup) = Device::wgpu_options()
            .init_with_setup()
            .map_err(|e| format!("no usable wgpu adapter: {e}"))?;
        let limits = setup.device.limits();
        let budget = MemoryBudget::wgpu(
            limits.max_storage_buffer_binding_size as u64,
            limits.max_buffer_size,
        );
        Ok((device, budget))
    })
    .clone()
}

/// A wgpu device on the best adapter, or an error that says why there is none.
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu() -> Result<Device> {
    gpu_and_budget().map(|(d, _)| d).map_err(Error::Device)
}

/// The memory budget of the wgpu device (from its limits; the CPU's when there is none).
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu_budget() -> MemoryBudget {
    gpu_and_budget().map_or_else(|_| MemoryBudget::cpu(), |(_, b)| b)
}

/// Resolves a choice to a device.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Ndarray => Ok(cpu()),
        DeviceChoice::Gpu => gpu(),
        DeviceChoice::Flex => Ok(Device::flex()),
        #[cfg(feature = "tch")]
        DeviceChoice::Tch => Ok(Device::libtorch()),
    }
}

/// The devices of `--devices`: a comma-separated list of `wgpu:N` (or `gpu:N`) and CPU backends
/// (`flex`, `ndarray`, `tch`, `cpu`; each is one device per process, so at most once).
///
/// `wgpu:N` counts the machine's wgpu adapters (discrete GPUs first, then integrated, virtual,
/// CPU drivers such as llvmpipe). With K adapters, `wgpu:K`…`wgpu:2K-1` are second
/// *logical* devices on the same adapters: the adapter opened again pinned to its graphics API,
/// a separate wgpu device with its own queue and memory. That is what lets one GPU, or the
/// CPU's Vulkan driver in CI, test multi-device training.
#[cfg(not(target_arch = "wasm32"))]
pub fn open_devices(spec: &str) -> Result<Vec<Device>> {
    let mut devices: Vec<Device> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for entry in spec.split(',').map(str::trim) {
        let device = match entry.split_once(':') {
            Some((name, index)) if matches!(name.to_ascii_lowercase().as_str(), "wgpu" | "gpu") => {
                let index: usize = index.parse().map_err(|_| {
                    Error::Device(format!(
                        "--devices: '{entry}': the index after ':' must be a number"
                    ))
                })?;
                wgpu_logical(index)?
            }
            Some((name, _)) => {
                return Err(Error::Device(format!(
                    "--devices: '{entry}': {name} is one device per process (burn's CPU devices are \
                     singletons); only wgpu devices take an index"
                )));
            }
            None if entry.is_empty() => {
                return Err(Error::Device(format!(
                    "--devices '{spec}' has an empty entry"
                )));
            }
            None => open(entry.parse()?)?,
        };
        if let Some(i) = devices.iter().position(|d| *d == device) {
            return Err(Error::Device(format!(
                "--devices: '{entry}' is the same device as '{}'",
                names[i]
            )));
        }
        devices.push(device);
        names.push(entry);
    }
    Ok(devices)
}

/// The wgpu adapters of this machine as burn device kinds, in `wgpu:N` order, with the
/// graphics API each came up on.
#[cfg(not(target_arch = "wasm32"))]
fn wgpu_adapters() -> Vec<(burn::tensor::DeviceKind, wgpu::Backend)> {
    use burn::tensor::DeviceKind;
    use wgpu::DeviceType as T;
    let instance = wgpu::Instance::default();
    // the primary APIs list each adapter once (GL would list llvmpipe a second time)
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    let rank = |t: T| match t {
        T::DiscreteGpu => 0,
        T::IntegratedGpu => 1,
        T::VirtualGpu => 2,
        T::Other => 3,
        T::Cpu => 4,
    };
    // burn names no kind for an unclassified adapter (`Other`): it cannot be selected by index
    let mut infos: Vec<_> = adapters
        .iter()
        .map(|a| a.get_info())
        .filter(|i| i.device_type != T::Other)
        .collect();
    infos.sort_by_key(|i| rank(i.device_type));
    let mut seen = [0usize; 5];
    infos
        .iter()
        .map(|i| {
            let k = &mut seen[rank(i.device_type)];
            let kind = match i.device_type {
                T::DiscreteGpu => DeviceKind::DiscreteGpu(*k),
                T::IntegratedGpu => DeviceKind::IntegratedGpu(*k),
                T::VirtualGpu => DeviceKind::VirtualGpu(*k),
                T::Cpu | T::Other => DeviceKind::Cpu,
            };
            *k += 1;
            (kind, i.backend)
        })
        .collect()
}

/// `wgpu:index` (see [`open_devices`]).
#[cfg(not(target_arch = "wasm32"))]
fn wgpu_logical(index: usize) -> Result<Device> {
    use burn::tensor::wgpu::WgpuBackend;
    static ADAPTERS: std::sync::OnceLock<Vec<(burn::tensor::DeviceKind, wgpu::Backend)>> =
        std::sync::OnceLock::new();
    let adapters = ADAPTERS.get_or_init(wgpu_adapters);
    let k = adapters.len();
    if index >= 2 * k {
        return Err(Error::Device(if k == 0 {
            format!("wgpu:{index}: this machine has no wgpu adapter")
        } else {
            format!(
                "wgpu:{index}: this machine has {k} wgpu adapter(s), so wgpu:0..wgpu:{} \
                 (the second {k} are second logical devices on the same adapters)",
                2 * k - 1
            )
        }));
    }
    let (kind, backend) = adapters[index % k].clone();
    if index < k {
        return Ok(Device::wgpu(kind));
    }
    let api = match backend {
        wgpu::Backend::Vulkan => WgpuBackend::Vulkan,
        wgpu::Backend::Metal => WgpuBackend::Metal,
        wgpu::Backend::Dx12 => WgpuBackend::Dx12,
        other => {
            return Err(Error::Device(format!(
                "wgpu:{index}: a second logical device needs Vulkan, Metal or DX12, not {other:?}"
            )));
        }
    };
    Device::wgpu_options()
        .device_kind(kind)
        .graphics_api(api)
        .init()
        .map_err(|e| Error::Device(format!("wgpu:{index}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_means_the_fastest_cpu_backend() {
        assert_eq!(
            "cpu".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::fastest_cpu()
        );
        #[cfg(all(not(feature = "tch"), not(target_arch = "wasm32")))]
        assert_eq!(DeviceChoice::fastest_cpu(), DeviceChoice::Flex);
        #[cfg(feature = "tch")]
        assert_eq!(DeviceChoice::fastest_cpu(), DeviceChoice::Tch);
        assert_eq!(
            "NDARRAY".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Ndarray
        );
        let err = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("unknown device 'tpu'"), "{err}");
    }

    #[test]
    fn budgets_follow_the_backend_and_the_flag() {
        let web = MemoryBudget::wgpu(128 << 20, 256 << 20);
        assert_eq!(web.largest_buffer, 64 << 20);
        assert_eq!(web.total, 256 << 20);
        let b = MemoryBudget::cpu().with_total_mib(64).unwrap();
        assert_eq!((b.total, b.largest_buffer), (64 << 20, 64 << 20));
        assert!(MemoryBudget::cpu().with_total_mib(0).is_err());
    }
}
