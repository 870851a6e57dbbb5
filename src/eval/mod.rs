//! Evaluation in one place: how good a restoration is and how we show it.
//! - [`metrics`]: PSNR and SSIM as scikit-image computes them (paired data);
//! - [`realism`]: unpaired measures of how radiograph-like an image is (power spectrum, stride
//!   texture, intensity distribution, nodule contrast, blobs) and the filters they need;
//! - [`anatomy`]: the body's regions and where a nodule projects, from the lung fields;
//! - [`checks`]: the checks a default model must pass on held-out DRRs, built on `realism`;
//! - [`tables`]: a model or a folder of restorations scored against references, as tables;
//! - [`sheet`]: before/after contact sheets a person can look at.

#[cfg(not(target_arch = "wasm32"))]
pub mod anatomy;
#[cfg(not(target_arch = "wasm32"))]
pub mod checks;
pub mod metrics;
#[cfg(not(target_arch = "wasm32"))]
pub mod realism;
pub mod sheet;
#[cfg(not(target_arch = "wasm32"))]
pub mod tables;
