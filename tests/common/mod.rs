//! Shared helpers of the integration tests: locating fixture folders and comparing tensors.
//! (Each test binary uses a different subset.)
#![allow(dead_code)]

pub mod cli;
pub mod phantom;

use std::path::{Path, PathBuf};

/// `../shared/fixtures` beside the checkout (or `$DXR_SHARED/fixtures`).
pub fn fixtures_root() -> PathBuf {
    match std::env::var_os("DXR_SHARED") {
        Some(p) => PathBuf::from(p).join("fixtures"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}

/// Sub-folders of `dir` that contain every file in `needs`, sorted.
pub fn case_dirs(dir: &Path, needs: &[&str]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && needs.iter().all(|f| p.join(f).is_file()))
        .collect();
    v.sort();
    v
}

/// Directories listed in a ':'-separated environment variable.
pub fn env_dirs(var: &str) -> Vec<PathBuf> {
    std::env::var(var)
        .ok()
        .map(|s| {
            s.split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

/// max |a − b| and the pass threshold 1e-4 · max(1, max |b|).
pub fn compare(port: &[f32], reference: &[f32]) -> (f32, f32) {
    assert_eq!(port.len(), reference.len(), "length differs");
    let err = port
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = reference.iter().map(|v| v.abs()).fold(1f32, f32::max);
    let err = if port.iter().any(|v| !v.is_finite()) {
        f32::INFINITY
    } else {
        err
    };
    (err, 1e-4 * scale)
}

/// A scratch folder under the system temp dir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("dxr-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The wgpu device, or `None` (with a line saying why) where there is no adapter. With
/// `DXR_REQUIRE_GPU=1` (CI, which has Mesa's llvmpipe Vulkan) a missing adapter fails the test
/// instead of skipping its wgpu part.
pub fn gpu_or_skip(what: &str) -> Option<burn::prelude::Device> {
    match dxr::device::gpu() {
        Ok(device) => Some(device),
        Err(e) if std::env::var("DXR_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("{what}: DXR_REQUIRE_GPU=1 but there is no wgpu device: {e}")
        }
        Err(e) => {
            println!("{what}: wgpu part skipped: {e}");
            None
        }
    }
}
