//! DiffusionXRay: restore digitally reconstructed chest radiographs (DRRs) toward the look of real
//! radiographs with a conditional diffusion model (paper "DiffusionXRay"; reference code
//! qureai/DiffusionXray), natively and in the browser on WebGPU.
//!
//! An image travels: [`io`] reads it → [`restore`] brings it to the model's pixel scale
//! ([`scale`]), pads it and calls a sampler in [`diffusion`] (over tiles when it is large)
//! → the sampler calls the [`model`] UNet (through [`spec::Unet`], so that the two do not import
//! each other) whose weights came from [`checkpoint`] → [`io`] writes the result. [`spec`] holds
//! the plain data every module shares; [`eval`] measures results; [`drr`] makes DRRs from a CT
//! (natively and in the page's studio) and [`train`] trains the models (native only). README
//! "Architecture" has the whole map.

pub mod checkpoint;
pub mod device;
pub mod diffusion;
pub mod drr;
pub mod error;
pub mod eval;
#[cfg(not(target_arch = "wasm32"))]
pub mod factory;
pub mod io;
pub mod limits;
pub mod model;
pub mod restore;
pub mod scale;
pub mod spec;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, ErrorKind, Result};
pub use spec::ModelSpec;
