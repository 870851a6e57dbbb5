//! The DRR generator: chest CT → frontal radiographs, with synthetic lung nodules and their
//! labels. A DRR is the line integral of X-ray attenuation along every source → pixel ray
//! (Beer–Lambert: I = I₀·exp(−∫μ dl)); the displayed image is that integral, −log(I/I₀),
//! windowed so dense structures are bright, as on a film.
//!
//! A CT travels: [`read_volume`] reads it ([`nifti`] or a [`dicom_series`] into a [`Volume`]) → [`clean`] removes the table and the
//! contrast → [`Scene`] turns HU into attenuation, crops it to the body and lays it out along the
//! rays → [`project`] (all cores) or [`gpu`] (a WGSL compute shader) traces the rays of a
//! [`geometry::Projection`] → [`nodule`] adds nodules by tracing only their own windows →
//! [`dataset`] windows, writes images, raw integrals, labels and a contact sheet. [`studio`] is the
//! page's way through the same steps: one CT in memory, one view at a time.

pub mod clean;
pub mod coco;
pub mod dataset;
pub mod dicom_series;
pub mod geometry;
pub mod gpu;
pub mod nifti;
pub mod nodule;
pub mod project;
pub mod studio;
pub mod volume;

pub use clean::Cleanup;
pub use geometry::{Geometry, Pose, Projection, View};
pub use nodule::{Nodule, NoduleSettings, Shape};
pub use project::MuVolume;
pub use volume::Volume;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Default linear attenuation of water (1/mm): 0.02, that of water at about 60–70 keV, the
/// effective energy of a chest radiograph's ~120 kVp beam.
pub const MU_WATER_PER_MM: f64 = 0.02;

/// Attenuation (1/mm) of a voxel: water-based, μ = μ_water·(1 + HU/1000), air and anything
/// below clamped to 0.
#[inline]
pub fn hu_to_mu(hu: f64, mu_water: f64) -> f64 {
    (mu_water * (1.0 + hu / 1000.0)).max(0.0)
}

/// Reads a CT: a folder is a DICOM series, a file is NIfTI (plain or gzip).
pub fn read_volume(path: &Path) -> Result<Volume> {
    if path.is_dir() {
        dicom_series::read_series(path)
    } else {
        nifti::read_nifti(path)
    }
}

/// How a CT is prepared before its views are traced (`dxr drr`'s flags of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prep {
    /// Attenuation of water (1/mm).
    pub mu_water: f64,
    /// Keep the scanner table and everything outside the body.
    pub keep_table: bool,
    /// Keep contrast agent (else the mask's heart and vessel labels, or HU above
    /// `contrast_hu` without a mask, become soft tissue).
    pub keep_contrast: bool,
    pub contrast_hu: f32,
}

impl Default for Prep {
    fn default() -> Self {
        Self {
            mu_water: MU_WATER_PER_MM,
            keep_table: false,
            keep_contrast: false,
            contrast_hu: Cleanup::default().contrast_hu,
        }
    }
}

/// Reads a CT and its optional label map and prepares them: the scene and where nodules may
/// go (the mask's lobes, else the aerated lung found by threshold).
pub fn load_scene(
    ct: &Path,
    mask: Option<&Path>,
    prep: &Prep,
) -> Result<(Scene, nodule::LungRegion)> {
    let vol = read_volume(ct)?;
    let labels = mask.map(read_volume).transpose()?;
    let cleanup = Cleanup {
        body_mask: !prep.keep_table,
        neutralise_contrast: !prep.keep_contrast,
        contrast_hu: prep.contrast_hu,
        ..Default::default()
    };
    let scene = Scene::new(vol, labels.as_ref(), &cleanup, prep.mu_water)?;
    let lungs = match &labels {
        Some(l) => nodule::LungRegion::from_labels(l),
        None => nodule::LungRegion::from_hu(&scene.ct),
    };
    Ok((scene, lungs))
}

/// A CT prepared for many views: cleaned HU (for nodules), attenuation cropped to what is not
/// air and stored along the front–back axis, where the rays of PA and AP views run.
pub struct Scene {
    pub ct: Volume,
    pub mu: MuVolume,
    pub mu_water: f64,
    /// Centre of the non-air region: the point the views are aimed at (patient frame).
    pub isocentre: [f64; 3],
}

impl Scene {
    /// Cleans `ct` (with the optional label map) and converts it.
    pub fn new(
        mut ct: Volume,
        labels: Option<&Volume>,
        cleanup: &Cleanup,
        mu_water: f64,
    ) -> Result<Self> {
        if !(mu_water.is_finite() && mu_water > 0.0 && mu_water < 1.0) {
            return Err(Error::Drr(format!(
                "μ_water = {mu_water}/mm is outside (0, 1); water is about 0.02/mm at chest energies"
            )));
        }
        if let Some(l) = labels {
            ct.check_same_grid(l, "the label mask")?;
        }
        clean::clean(&mut ct, labels, cleanup);
        // 1. the box of voxels that attenuate at all
        let [nx, ny, _] = ct.dims;
        let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
        for (p, h) in ct.data.iter().enumerate() {
            if hu_to_mu(*h as f64, mu_water) > 0.0 {
                let ijk = [p % nx, (p / nx) % ny, p / (nx * ny)];
                for c in 0..3 {
                    lo[c] = lo[c].min(ijk[c]);
                    hi[c] = hi[c].max(ijk[c] + 1);
                }
            }
        }
        if lo[0] == usize::MAX {
            return Err(Error::Volume(
                "nothing in the volume attenuates (every voxel is air): is it a CT in HU?".into(),
            ));
        }
        // 2. attenuation, stored along the rays
        let perm = project::storage_order(&ct, [0.0, 1.0, 0.0]);
        let mu = MuVolume::from_fn(&ct, perm, lo, hi, |i, j, k| {
            hu_to_mu(ct.data[ct.index(i, j, k)] as f64, mu_water) as f32
        })?;
        let isocentre = ct.world(std::array::from_fn(|c| (lo[c] + hi[c]) as f64 / 2.0 - 0.5));
        Ok(Self {
            ct,
            mu,
            mu_water,
            isocentre,
        })
    }

    /// Line integrals of every pixel, on all cores.
    pub fn render(&self, proj: &Projection) -> Vec<f32> {
        project::render(&self.mu, proj)
    }

    /// The attenuation change of `nodule`, as a block on this scene's grid.
    pub fn nodule_block(&self, nodule: &Nodule) -> Result<MuVolume> {
        nodule.block(&self.ct, self.mu.perm, self.mu_water)
    }

    /// A copy of the attenuation with nodule blocks added voxel by voxel: the slow way to render
    /// a DRR with nodules, which the fast way must match.
    pub fn with_blocks(&self, blocks: &[MuVolume]) -> Result<MuVolume> {
        let mut mu = self.mu.clone();
        for b in blocks {
            // block voxel → CT index → scene storage
            for k in 0..b.dims[2] {
                for j in 0..b.dims[1] {
                    for i in 0..b.dims[0] {
                        let v = b.data[i + b.dims[0] * (j + b.dims[1] * k)];
                        if v == 0.0 {
                            continue;
                        }
                        let s = [i, j, k];
                        let mut ct_idx = [0usize; 3];
                        for a in 0..3 {
                            ct_idx[b.perm[a]] = b.lo[b.perm[a]] + s[a];
                        }
                        let mut local = [0usize; 3];
                        for a in 0..3 {
                            let c = mu.perm[a];
                            if ct_idx[c] < mu.lo[c] || ct_idx[c] - mu.lo[c] >= mu.dims[a] {
                                return Err(Error::Drr(
                                    "nodule block outside the scene's crop".into(),
                                ));
                            }
                            local[a] = ct_idx[c] - mu.lo[c];
                        }
                        mu.data[local[0] + mu.dims[0] * (local[1] + mu.dims[1] * local[2])] += v;
                    }
                }
            }
        }
        Ok(mu)
    }
}
