//! Making a CT look like the patient alone, before projecting it: the scanner table and the
//! padding outside the field of view go (body mask), and contrast agent becomes soft tissue.

use std::collections::VecDeque;

use super::volume::Volume;

/// HU of air; what everything outside the body becomes.
pub const AIR_HU: f32 = -1000.0;
/// Voxels above this HU seed the body mask.
pub const BODY_THRESHOLD_HU: f32 = -500.0;
/// Label range of the heart and great vessels in the example CT's mask (structures.csv 51–68).
pub const VESSEL_LABELS: std::ops::RangeInclusive<u32> = 51..=68;
/// Label range of the five lung lobes (structures.csv 10–14).
pub const LOBE_LABELS: std::ops::RangeInclusive<u32> = 10..=14;

/// What the clean-up does.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cleanup {
    /// Keep only the body: the largest connected region above −500 HU with its holes (lungs,
    /// airways) filled slice by slice; the rest (table, padding, blankets) becomes air.
    pub body_mask: bool,
    /// Set contrast-enhanced blood to soft tissue: with a label mask, the heart and vessel labels
    /// 51–68; without one, voxels above `contrast_hu`.
    pub neutralise_contrast: bool,
    /// Threshold for contrast without a mask (default 1500 HU: iodine-filled vessels, above
    /// cortical bone).
    pub contrast_hu: f32,
    /// HU given to neutralised voxels (default 40: blood without contrast).
    pub soft_tissue_hu: f32,
}

impl Default for Cleanup {
    fn default() -> Self {
        Self {
            body_mask: true,
            neutralise_contrast: true,
            contrast_hu: 1500.0,
            soft_tissue_hu: 40.0,
        }
    }
}

/// Applies `cleanup` in place; `labels` (same grid) is the optional label map.
pub fn clean(ct: &mut Volume, labels: Option<&Volume>, cleanup: &Cleanup) {
    if cleanup.body_mask {
        let body = body_mask(ct);
        for (v, inside) in ct.data.iter_mut().zip(&body) {
            if !inside {
                *v = AIR_HU;
            }
        }
    }
    if cleanup.neutralise_contrast {
        match labels {
            Some(l) => {
                for (v, lab) in ct.data.iter_mut().zip(&l.data) {
                    if VESSEL_LABELS.contains(&(lab.round() as u32)) && *v > cleanup.soft_tissue_hu
                    {
                        *v = cleanup.soft_tissue_hu;
                    }
                }
            }
            None => {
                for v in ct.data.iter_mut() {
                    if *v > cleanup.contrast_hu {
                        *v = cleanup.soft_tissue_hu;
                    }
                }
            }
        }
    }
}

/// The body: the largest 6-connected component above [`BODY_THRESHOLD_HU`], then, in every
/// axial slice, whatever that component encloses.
pub fn body_mask(ct: &Volume) -> Vec<bool> {
    let [nx, ny, nz] = ct.dims;
    let n = nx * ny * nz;
    let dense: Vec<bool> = ct.data.iter().map(|v| *v > BODY_THRESHOLD_HU).collect();
    // 1. largest connected component (breadth-first, labels in one pass)
    let mut label = vec![0u32; n];
    let (mut best, mut best_size, mut next) = (0u32, 0usize, 0u32);
    let mut queue = VecDeque::new();
    for start in 0..n {
        if !dense[start] || label[start] != 0 {
            continue;
        }
        next += 1;
        label[start] = next;
        queue.push_back(start);
        let mut size = 0;
        while let Some(p) = queue.pop_front() {
            size += 1;
            let (i, j, k) = (p % nx, (p / nx) % ny, p / (nx * ny));
            let mut visit = |q: usize| {
                if dense[q] && label[q] == 0 {
                    label[q] = next;
                    queue.push_back(q);
                }
            };
            if i > 0 {
                visit(p - 1);
            }
            if i + 1 < nx {
                visit(p + 1);
            }
            if j > 0 {
                visit(p - nx);
            }
            if j + 1 < ny {
                visit(p + nx);
            }
            if k > 0 {
                visit(p - nx * ny);
            }
            if k + 1 < nz {
                visit(p + nx * ny);
            }
        }
        if size > best_size {
            (best, best_size) = (next, size);
        }
    }
    let mut body: Vec<bool> = label.iter().map(|&l| l == best && best != 0).collect();
    // 2. fill holes in the slices across the head–foot axis
    let axial = axial_axis(ct);
    let (a, b) = match axial {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let strides = [1, nx, nx * ny];
    let (na, nb) = (ct.dims[a], ct.dims[b]);
    for s in 0..ct.dims[axial] {
        let at = |u: usize, v: usize| s * strides[axial] + u * strides[a] + v * strides[b];
        // outside = background reachable from the slice border
        let mut outside = vec![false; na * nb];
        let mut q = VecDeque::new();
        for u in 0..na {
            for v in 0..nb {
                let border = u == 0 || v == 0 || u + 1 == na || v + 1 == nb;
                if border && !body[at(u, v)] {
                    outside[u + na * v] = true;
                    q.push_back((u, v));
                }
            }
        }
        while let Some((u, v)) = q.pop_front() {
            let mut go = |u2: usize, v2: usize| {
                if !outside[u2 + na * v2] && !body[at(u2, v2)] {
                    outside[u2 + na * v2] = true;
                    q.push_back((u2, v2));
                }
            };
            if u > 0 {
                go(u - 1, v);
            }
            if u + 1 < na {
                go(u + 1, v);
            }
            if v > 0 {
                go(u, v - 1);
            }
            if v + 1 < nb {
                go(u, v + 1);
            }
        }
        for u in 0..na {
            for v in 0..nb {
                if !outside[u + na * v] {
                    body[at(u, v)] = true;
                }
            }
        }
    }
    body
}

/// The voxel axis closest to the world's head–foot (z) axis.
pub fn axial_axis(ct: &Volume) -> usize {
    let sp = ct.spacing();
    (0..3)
        .max_by(|&a, &b| {
            (ct.affine[2][a] / sp[a])
                .abs()
                .total_cmp(&(ct.affine[2][b] / sp[b]).abs())
        })
        .unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20³ grid: a hollow box "body" (wall 0 HU, inside −850 HU like lung), a separate slab
    /// "table" at 200 HU, padding at −2048, and one 400 HU voxel labelled as aorta.
    fn phantom() -> (Volume, Volume) {
        let n = 20;
        let mut hu = vec![-2048.0f32; n * n * n];
        let mut lab = vec![0.0f32; n * n * n];
        for k in 0..n {
            for j in 0..n {
                for i in 0..n {
                    let p = i + n * (j + n * k);
                    if (3..=14).contains(&i) && (3..=14).contains(&j) {
                        hu[p] = if (5..=12).contains(&i) && (5..=12).contains(&j) {
                            -850.0
                        } else {
                            0.0
                        };
                    } else if j >= 17 {
                        hu[p] = 200.0;
                    } else if (1..=18).contains(&i) && (1..=15).contains(&j) {
                        hu[p] = -1000.0;
                    }
                }
            }
        }
        let aorta = 8 + n * (8 + n * 10);
        hu[aorta] = 400.0;
        lab[aorta] = 52.0;
        let eye = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        (
            Volume::new([n; 3], hu, eye).unwrap(),
            Volume::new([n; 3], lab, eye).unwrap(),
        )
    }

    #[test]
    fn table_and_padding_go_lungs_stay() {
        let (mut ct, labels) = phantom();
        clean(&mut ct, Some(&labels), &Cleanup::default());
        let at = |i, j, k| ct.data[ct.index(i, j, k)];
        assert_eq!(at(3, 3, 5), 0.0, "body wall kept");
        assert_eq!(at(7, 7, 5), -850.0, "lung inside the body kept");
        assert_eq!(at(7, 18, 5), AIR_HU, "table removed");
        assert_eq!(at(0, 0, 0), AIR_HU, "padding became air");
        assert_eq!(at(8, 8, 10), 40.0, "labelled contrast neutralised");
    }

    #[test]
    fn without_a_mask_only_very_dense_voxels_are_contrast() {
        let (mut ct, _) = phantom();
        let p = ct.index(6, 6, 6);
        ct.data[p] = 2500.0;
        let cleanup = Cleanup {
            body_mask: false,
            ..Default::default()
        };
        clean(&mut ct, None, &cleanup);
        assert_eq!(ct.data[p], 40.0);
        assert_eq!(
            ct.data[ct.index(8, 8, 10)],
            400.0,
            "400 HU is below the threshold"
        );
        assert_eq!(
            ct.data[ct.index(7, 18, 5)],
            200.0,
            "table kept without the body mask"
        );
    }
}
