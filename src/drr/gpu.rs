//! The projector on a GPU: `shaders/drr.wgsl` run through wgpu (the same wgpu burn-wgpu uses),
//! the attenuation uploaded once per scene and one dispatch per view.

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use super::geometry::Projection;
use super::project::MuVolume;
use crate::{Error, Result};

const SHADER: &str = include_str!("../../shaders/drr.wgsl");
const WORKGROUP: u32 = 8;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    dims: [u32; 4],
    info: [u32; 4],
    src: [f32; 4],
    pix0: [f32; 4],
    du: [f32; 4],
    dv: [f32; 4],
    src_w: [f32; 4],
    pix0_w: [f32; 4],
    du_w: [f32; 4],
    dv_w: [f32; 4],
}

/// Which adapters count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterChoice {
    /// A real GPU only (discrete, integrated or virtual).
    GpuOnly,
    /// Also a software rasteriser such as llvmpipe (tests, CI).
    AnyAdapter,
}

/// Whether a real GPU adapter exists (what `--device auto` picks), without opening it.
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu_available() -> bool {
    let backends = wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    pollster::block_on(instance.enumerate_adapters(backends))
        .iter()
        .any(|a| rank(a.get_info().device_type) < 3)
}

/// Preference among adapters: discrete, integrated, virtual GPUs (< 3: a real GPU), then
/// others and software rasterisers.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// A scene's attenuation living on a GPU (cloning shares the device and the volume).
#[derive(Clone)]
pub struct GpuProjector {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    volume: wgpu::Buffer,
    perm_dims: [usize; 3],
    mu_ref: MuVolume,
    /// Adapter name and type, for messages.
    pub adapter: String,
}

impl GpuProjector {
    /// Opens an adapter (per `choice`) and uploads `mu`; an error says what was found instead.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(mu: &MuVolume, choice: AdapterChoice) -> Result<Self> {
        pollster::block_on(Self::new_async(mu, choice))
    }

    /// [`GpuProjector::new`] without blocking: the page's way (the browser offers one adapter).
    pub async fn new_async(mu: &MuVolume, choice: AdapterChoice) -> Result<Self> {
        // 1. adapter: best real GPU, or anything when allowed
        #[cfg(not(target_arch = "wasm32"))]
        let backends = wgpu::Backends::PRIMARY;
        #[cfg(target_arch = "wasm32")]
        let backends = wgpu::Backends::BROWSER_WEBGPU;
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        #[cfg(not(target_arch = "wasm32"))]
        let adapters = instance.enumerate_adapters(backends).await;
        #[cfg(target_arch = "wasm32")]
        let adapters: Vec<wgpu::Adapter> = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .into_iter()
            .collect();
        let found: Vec<String> = adapters
            .iter()
            .map(|a| format!("{} ({:?})", a.get_info().name, a.get_info().device_type))
            .collect();
        let adapter = adapters
            .into_iter()
            .filter(|a| choice == AdapterChoice::AnyAdapter || rank(a.get_info().device_type) < 3)
            .min_by_key(|a| rank(a.get_info().device_type))
            .ok_or_else(|| {
                Error::Device(if found.is_empty() {
                    "no wgpu adapter (Vulkan/Metal/DX12) on this machine".into()
                } else {
                    format!("no GPU adapter, only: {}", found.join(", "))
                })
            })?;
        let info = adapter.get_info();
        let name = format!("{} ({:?}, {:?})", info.name, info.device_type, info.backend);
        // 2. device with the adapter's own limits (a CT needs large storage buffers)
        let limits = adapter.limits();
        let bytes = (mu.data.len() * 4) as u64;
        if bytes > limits.max_storage_buffer_binding_size as u64 || bytes > limits.max_buffer_size {
            return Err(Error::Device(format!(
                "the cropped CT needs a {bytes}-byte buffer, {name} allows {}",
                (limits.max_storage_buffer_binding_size as u64).min(limits.max_buffer_size)
            )));
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("dxr-drr"),
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Device(format!("{name}: {e}")))?;
        // 3. pipeline and the volume
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("drr.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("drr"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let volume = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("mu"),
            contents: bytemuck::cast_slice(&mu.data),
            usage: wgpu::BufferUsages::STORAGE,
        });
        Ok(Self {
            device,
            queue,
            pipeline,
            volume,
            perm_dims: mu.dims,
            mu_ref: mu.clone_header(),
            adapter: name,
        })
    }

    /// Line integrals of every pixel of `proj` (row-major), like [`super::project::render`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn render(&self, proj: &Projection) -> Result<Vec<f32>> {
        pollster::block_on(self.render_async(proj))
    }

    /// [`GpuProjector::render`] without blocking: the read-back is awaited, which in the page
    /// lets the browser run the GPU's callbacks.
    pub async fn render_async(&self, proj: &Projection) -> Result<Vec<f32>> {
        let [w, h] = proj.geometry.pixels;
        let m = &self.mu_ref;
        let v4 = |v: [f64; 3]| [v[0] as f32, v[1] as f32, v[2] as f32, 0.0];
        let s = m.storage(proj.source);
        let p0 = m.storage(proj.pixel(0.0, 0.0));
        let p1 = m.storage(proj.pixel(1.0, 0.0));
        let p2 = m.storage(proj.pixel(0.0, 1.0));
        let params = Params {
            dims: [
                self.perm_dims[0] as u32,
                self.perm_dims[1] as u32,
                self.perm_dims[2] as u32,
                w as u32,
            ],
            info: [h as u32, 0, 0, 0],
            src: v4(s),
            pix0: v4(p0),
            du: v4(std::array::from_fn(|c| p1[c] - p0[c])),
            dv: v4(std::array::from_fn(|c| p2[c] - p0[c])),
            src_w: v4(proj.source),
            pix0_w: v4(proj.pixel0),
            du_w: v4(proj.du),
            dv_w: v4(proj.dv),
        };
        let size = (w * h * 4) as u64;
        let uniform = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let out = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("out"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: self.volume.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: out.as_entire_binding(),
                },
            ],
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(
                (w as u32).div_ceil(WORKGROUP),
                (h as u32).div_ceil(WORKGROUP),
                1,
            );
        }
        enc.copy_buffer_to_buffer(&out, 0, &readback, 0, size);
        self.queue.submit([enc.finish()]);
        let slice = readback.slice(..);
        let mapped = Mapped::default();
        let done = mapped.clone();
        slice.map_async(wgpu::MapMode::Read, move |r| done.set(r));
        // natively the callback runs inside this poll; in the browser it comes from the event
        // loop while the future below waits
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("{}: {e}", self.adapter)))?;
        mapped
            .await
            .map_err(|e| Error::Device(format!("{}: reading the DRR back: {e}", self.adapter)))?;
        let data = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Device(format!("{}: mapping the DRR: {e}", self.adapter)))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        readback.unmap();
        Ok(data)
    }
}

/// The outcome of `map_async` as a future: resolved by the callback, awaited by the renderer.
#[derive(Clone, Default)]
struct Mapped(std::sync::Arc<std::sync::Mutex<MapState>>);

#[derive(Default)]
struct MapState {
    result: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<std::task::Waker>,
}

impl Mapped {
    fn set(&self, r: std::result::Result<(), wgpu::BufferAsyncError>) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.result = Some(r);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl std::future::Future for Mapped {
    type Output = std::result::Result<(), wgpu::BufferAsyncError>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match s.result.take() {
            Some(r) => std::task::Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}

impl MuVolume {
    /// Everything but the voxels (for coordinate transforms).
    pub(crate) fn clone_header(&self) -> MuVolume {
        MuVolume {
            dims: self.dims,
            data: Vec::new(),
            perm: self.perm,
            lo: self.lo,
            world_to_index: self.world_to_index,
        }
    }
}
