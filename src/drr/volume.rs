//! CT volumes: NIfTI-1 files (`.nii`, `.nii.gz`) and DICOM series (a folder of slices), read
//! into one [`Volume`] of Hounsfield units with its voxel → world affine in RAS+ millimetres
//! (NIfTI's convention; a DICOM series' LPS positions are converted).

use crate::limits::Limits;
use crate::{Error, Result};

/// Largest accepted side of a volume, in voxels.
pub const MAX_VOLUME_SIDE: usize = Limits::VOLUME_SIDE.value as usize;
/// Largest accepted number of voxels (2^31: 8 GiB as f32).
pub const MAX_VOLUME_VOXELS: usize = Limits::VOLUME_VOXELS.value as usize;

/// A 3-D scalar volume on a regular grid.
///
/// `data[i + nx * (j + ny * k)]` is voxel `(i, j, k)` (x fastest, NIfTI's order). `affine` maps
/// the voxel index `(i, j, k, 1)` of a voxel *centre* to world coordinates in millimetres, RAS+:
/// x grows toward the patient's Right, y toward Anterior, z toward Superior (so the patient's
/// left is −x).
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Voxels per axis `[nx, ny, nz]`.
    pub dims: [usize; 3],
    /// Values (Hounsfield units for CT, labels for masks), x fastest.
    pub data: Vec<f32>,
    /// Voxel index → world (RAS+, mm), row-major 4×4.
    pub affine: [[f64; 4]; 4],
}

impl Volume {
    /// Builds a volume after checking that the pieces fit together.
    pub fn new(dims: [usize; 3], data: Vec<f32>, affine: [[f64; 4]; 4]) -> Result<Self> {
        check_dims(dims)?;
        let n = dims[0] * dims[1] * dims[2];
        if data.len() != n {
            return Err(Error::Volume(format!(
                "{} values for a {}×{}×{} grid ({n} voxels)",
                data.len(),
                dims[0],
                dims[1],
                dims[2]
            )));
        }
        invert_affine(&affine)?;
        Ok(Self { dims, data, affine })
    }

    /// Linear index of voxel `(i, j, k)`.
    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// World position (mm) of the centre of voxel `(i, j, k)` (fractional indices allowed).
    pub fn world(&self, ijk: [f64; 3]) -> [f64; 3] {
        apply_affine(&self.affine, ijk)
    }

    /// Continuous voxel index of a world point.
    pub fn voxel(&self, world: [f64; 3]) -> [f64; 3] {
        apply_affine(&invert_affine(&self.affine).expect("checked in new"), world)
    }

    /// Length in mm of one voxel step along each axis.
    pub fn spacing(&self) -> [f64; 3] {
        let a = &self.affine;
        std::array::from_fn(|c| (a[0][c].powi(2) + a[1][c].powi(2) + a[2][c].powi(2)).sqrt())
    }

    /// World position of the volume's geometric centre.
    pub fn centre(&self) -> [f64; 3] {
        self.world(std::array::from_fn(|c| (self.dims[c] as f64 - 1.0) / 2.0))
    }

    /// Refuses a mask that is not on the same grid.
    pub fn check_same_grid(&self, other: &Volume, what: &str) -> Result<()> {
        if self.dims != other.dims {
            return Err(Error::Volume(format!(
                "{what} is {:?} voxels but the CT is {:?}",
                other.dims, self.dims
            )));
        }
        let worst = affine_difference(&self.affine, &other.affine);
        if worst > 1e-3 {
            return Err(Error::Volume(format!(
                "{what} has a different voxel → world affine than the CT (differs by {worst:.3} mm)"
            )));
        }
        Ok(())
    }
}

/// The largest difference (mm) between two voxel → world affines, over their top three rows.
pub fn affine_difference(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4]) -> f64 {
    (0..3)
        .flat_map(|r| (0..4).map(move |c| (r, c)))
        .map(|(r, c)| (a[r][c] - b[r][c]).abs())
        .fold(0.0, f64::max)
}

pub(super) fn check_dims(dims: [usize; 3]) -> Result<()> {
    if dims.iter().any(|&d| d == 0 || d > MAX_VOLUME_SIDE) {
        return Err(Error::Volume(format!(
            "volume size {:?} is outside 1..={MAX_VOLUME_SIDE} voxels per axis",
            dims
        )));
    }
    if dims.iter().product::<usize>() > MAX_VOLUME_VOXELS {
        return Err(Error::Volume(format!(
            "volume size {:?} has more than {MAX_VOLUME_VOXELS} voxels",
            dims
        )));
    }
    Ok(())
}

/// Applies a 4×4 affine to a 3-D point.
pub fn apply_affine(a: &[[f64; 4]; 4], p: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|r| a[r][0] * p[0] + a[r][1] * p[1] + a[r][2] * p[2] + a[r][3])
}

/// Inverse of an affine whose last row is `0 0 0 1`; refuses singular ones.
pub fn invert_affine(a: &[[f64; 4]; 4]) -> Result<[[f64; 4]; 4]> {
    let m = |r: usize, c: usize| a[r][c];
    let det = m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1))
        - m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0))
        + m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
    if !det.is_finite() || det.abs() < 1e-9 {
        return Err(Error::Volume(format!(
            "voxel → world affine is singular or not finite (determinant {det})"
        )));
    }
    let mut inv = [[0.0; 4]; 4];
    for r in 0..3 {
        for c in 0..3 {
            // Cofactor of (c, r), divided by the determinant.
            let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
            let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
            inv[r][c] = (m(r1, c1) * m(r2, c2) - m(r1, c2) * m(r2, c1)) / det;
        }
    }
    for r in 0..3 {
        inv[r][3] = -(0..3).map(|c| inv[r][c] * a[c][3]).sum::<f64>();
    }
    inv[3][3] = 1.0;
    Ok(inv)
}

/// A small volume with an oblique-free, non-isotropic affine, for the readers' tests.
#[cfg(test)]
pub(super) fn test_volume() -> Volume {
    let dims = [4, 3, 2];
    let data = (0..24).map(|v| v as f32 - 1000.0).collect();
    let affine = [
        [-0.7, 0.0, 0.0, 10.0],
        [0.0, 0.7, 0.0, -20.0],
        [0.0, 0.0, 2.5, 30.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    Volume::new(dims, data, affine).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_sides_and_voxels_have_limits_just_over_and_under() {
        assert!(check_dims([MAX_VOLUME_SIDE, 512, 1]).is_ok());
        assert!(check_dims([MAX_VOLUME_SIDE + 1, 512, 1]).is_err());
        assert!(check_dims([0, 512, 1]).is_err());
        // 2³¹ voxels exactly is accepted, one slice more is not
        assert!(check_dims([4096, 4096, 128]).is_ok());
        let e = check_dims([4096, 4096, 129]).unwrap_err().to_string();
        assert!(e.contains("voxels"), "{e}");
    }

    #[test]
    fn affine_inverse_round_trips() {
        let vol = test_volume();
        let p = [1.5, 2.0, 0.25];
        let back = vol.voxel(vol.world(p));
        for c in 0..3 {
            assert!((back[c] - p[c]).abs() < 1e-9);
        }
    }
}
