//! Phantoms the integration tests share: a torso with lungs and its label map, on any grid.

use dxr::drr::Volume;

/// A grid centred on the world origin, LAS like the example CT (x flipped).
pub fn las_affine(dims: [usize; 3], spacing: [f64; 3]) -> [[f64; 4]; 4] {
    let off = |c: usize| (dims[c] as f64 - 1.0) / 2.0 * spacing[c];
    [
        [-spacing[0], 0.0, 0.0, off(0)],
        [0.0, spacing[1], 0.0, -off(1)],
        [0.0, 0.0, spacing[2], -off(2)],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// A torso: an elliptic body (soft tissue with a ±40 HU texture and a dense "spine"), two
/// aerated lungs labelled 10 (left, −x) and 12 (right), and a table slab below.
pub fn torso() -> (Volume, Volume) {
    torso_on([90, 70, 48], [2.0, 2.0, 3.0], false)
}

/// The same torso (it is defined in world millimetres) sampled on another grid: `dims` voxels
/// of `spacing` mm centred on the origin, stored LAS, or RAS (x reversed, the affine saying so)
/// when `flip_x`.
pub fn torso_on(dims: [usize; 3], spacing: [f64; 3], flip_x: bool) -> (Volume, Volume) {
    let mut affine = las_affine(dims, spacing);
    if flip_x {
        affine[0][0] = -affine[0][0];
        affine[0][3] = -affine[0][3];
    }
    let probe = Volume::new(dims, vec![0.0; dims.iter().product()], affine).unwrap();
    let mut hu = vec![-1000.0f32; probe.data.len()];
    let mut lab = vec![0.0f32; probe.data.len()];
    let ell = |p: [f64; 3], c: [f64; 3], r: [f64; 3]| {
        (0..3).map(|k| ((p[k] - c[k]) / r[k]).powi(2)).sum::<f64>()
    };
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let p = probe.world([i as f64, j as f64, k as f64]);
                let n = probe.index(i, j, k);
                if ell(p, [0.0, 0.0, 0.0], [80.0, 55.0, 200.0]) < 1.0 {
                    hu[n] = (40.0 * (p[0] / 7.0).sin() * (p[1] / 5.0).cos()
                        + 30.0 * (p[2] / 9.0).sin()) as f32;
                    if ell(p, [0.0, -40.0, 0.0], [10.0, 10.0, 500.0]) < 1.0 {
                        hu[n] = 700.0;
                    }
                    for (side, label) in [(-1.0, 10.0), (1.0, 12.0)] {
                        if ell(p, [side * 38.0, 0.0, 0.0], [30.0, 40.0, 60.0]) < 1.0 {
                            hu[n] = -850.0 + 20.0 * (p[2] / 4.0).sin() as f32;
                            lab[n] = label;
                        }
                    }
                } else if p[1] < -62.0 && p[1] > -68.0 {
                    hu[n] = 300.0; // table
                }
            }
        }
    }
    (
        Volume::new(dims, hu, affine).unwrap(),
        Volume::new(dims, lab, affine).unwrap(),
    )
}
