//! The measures on images whose answer is known.

use super::*;
use rand::{Rng, SeedableRng};

fn img(w: usize, h: usize, f: impl FnMut(usize, usize) -> f32) -> GrayImage {
    GrayImage::from_fn(w, h, f)
}

/// A random field with power ∝ f^β (β = −2 … −3), built by summing random-phase waves.
fn power_law(n: usize, beta: f64, seed: u64) -> GrayImage {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut buf: Vec<Complex<f64>> = vec![Complex::new(0.0, 0.0); n * n];
    for y in 0..n {
        for x in 0..n {
            let f = freq(x, n).hypot(freq(y, n)).max(1.0 / n as f64);
            let amp = f.powf(beta / 2.0);
            let ph: f64 = rng.random_range(0.0..std::f64::consts::TAU);
            buf[y * n + x] = Complex::from_polar(amp, ph);
        }
    }
    fft2(&mut buf, n, n, true);
    let re: Vec<f64> = buf.iter().map(|c| c.re).collect();
    let (lo, hi) = re
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    img(n, n, |x, y| ((re[y * n + x] - lo) / (hi - lo)) as f32)
}

#[test]
fn spectrum_slopes_of_known_fields() {
    for beta in [-2.0, -3.0] {
        let s = spectrum_slope(&power_law(256, beta, 3)).unwrap();
        assert!((s - beta).abs() < 0.25, "β = {beta}: fitted {s}");
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let noise = img(128, 128, |_, _| rng.random::<f32>());
    assert!(spectrum_slope(&noise).unwrap().abs() < 0.3);
}

#[test]
fn tone_alignment_takes_the_histogram_and_keeps_the_order() {
    // a ramp with a flat band (ties), aligned to a curved, shuffled image of its own size
    let a = img(32, 16, |x, y| {
        if x < 8 {
            0.1
        } else {
            0.2 + (y * 32 + x) as f32 / 1024.0
        }
    });
    let like = img(32, 16, |x, y| {
        (((x * 7 + y * 13) % 37) as f32 / 36.0).powi(2)
    });
    let t = tone_aligned(&a, &like).unwrap();
    let mut got = t.data.clone();
    let mut want = like.data.clone();
    got.sort_by(f32::total_cmp);
    want.sort_by(f32::total_cmp);
    // the histogram: the band (0.1, below the ramp) takes the mean of the lowest
    // 8×16 target values, every other pixel the target value of its rank
    let band = 8 * 16;
    let low = want[..band].iter().sum::<f32>() / band as f32;
    assert!(got[..band].iter().all(|v| (v - low).abs() < 1e-5));
    assert_eq!(got[band..], want[band..]);
    // monotone, and ties stay tied
    for p in 0..a.data.len() {
        for q in 0..a.data.len() {
            if a.data[p] < a.data[q] {
                assert!(t.data[p] <= t.data[q]);
            } else if a.data[p] == a.data[q] {
                assert_eq!(t.data[p], t.data[q]);
            }
        }
    }
    // a NaN (no reader makes one, but nothing here may hang on it) is one more level
    let mut odd = a.clone();
    odd.data[5] = f32::NAN;
    assert_eq!(tone_aligned(&odd, &like).unwrap().data.len(), a.data.len());
    // an image aligned to itself is itself
    let s = tone_aligned(&like, &like).unwrap();
    assert!(
        s.data
            .iter()
            .zip(&like.data)
            .all(|(x, y)| (x - y).abs() < 1e-6)
    );
    assert!(got.first() >= want.first() && got.last() <= want.last());
    let e = tone_aligned(&a, &img(8, 8, |_, _| 0.0)).unwrap_err();
    assert!(e.to_string().contains("32×16 and 8×8"), "{e}");
}

#[test]
fn histogram_distance_is_the_shift() {
    let a = img(64, 64, |x, _| x as f32 / 128.0);
    let b = img(64, 64, |x, _| x as f32 / 128.0 + 0.25);
    assert!(histogram_distance(&a, &a) < 1e-12);
    assert!(
        (histogram_distance(&a, &b) - 0.25).abs() < 0.01,
        "{}",
        histogram_distance(&a, &b)
    );
}

#[test]
fn blur_lowers_edge_sharpness_and_a_disk_has_its_cnr() {
    let sharp = img(64, 64, |x, _| if x < 32 { 0.2 } else { 0.8 });
    let soft = img(64, 64, |x, _| {
        (0.2 + 0.6 * ((x as f32 - 32.0) / 6.0 + 0.5)).clamp(0.2, 0.8)
    });
    assert!(edge_sharpness(&sharp) > 2.0 * edge_sharpness(&soft));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let disk = img(80, 80, |x, y| {
        let d = ((x as f64 + 0.5 - 40.0).powi(2) + (y as f64 + 0.5 - 40.0).powi(2)).sqrt();
        let noise: f64 = rng.sample::<f64, _>(rand_distr::StandardNormal) * 0.02;
        (0.5 + if d < 8.0 { 0.1 } else { 0.0 } + noise) as f32
    });
    let cnr = nodule_cnr(&disk, [40.0, 40.0], 8.0).unwrap();
    assert!((cnr - 5.0).abs() < 1.0, "contrast 0.1 over σ 0.02: {cnr}");
    assert!(
        nodule_cnr(&disk, [2.0, 2.0], 8.0).is_none(),
        "ring outside the image"
    );
}

#[test]
fn window_free_distance_ignores_a_display_window() {
    let a = img(64, 64, |x, y| ((x * 64 + y) as f32 / 4096.0).powf(1.5));
    let windowed = img(64, 64, |x, y| {
        0.2 + 0.5 * ((x * 64 + y) as f32 / 4096.0).powf(1.5)
    });
    let other = img(64, 64, |x, y| ((x * 64 + y) as f32 / 4096.0).powf(0.5));
    let d =
        |p: &GrayImage, q: &GrayImage| wasserstein(&window_free_cdf(&[p]), &window_free_cdf(&[q]));
    assert!(d(&a, &windowed) < 0.005, "{}", d(&a, &windowed));
    assert!(d(&a, &other) > 0.1, "{}", d(&a, &other));
}

#[test]
fn a_planted_grid_raises_its_own_stride_only() {
    let base = power_law(256, -3.0, 5);
    let clean = stride_texture(&base).unwrap();
    for (slot, &p) in STRIDE_PERIODS.iter().enumerate() {
        // a faint period-p pattern: 2 % of the range, a point every p pixels
        let grid = img(256, 256, |x, y| {
            base.data[y * 256 + x] + if x % p == 0 && y % p == 0 { 0.02 } else { 0.0 }
        });
        let t = stride_texture(&grid).unwrap();
        assert!(
            t[slot] > 5.0 * clean[slot],
            "period {p}: {t:?} vs clean {clean:?}"
        );
        // a period-p grid has harmonics at multiples of 1/p (so also at the finer lattices'
        // points) but nothing on the points only a longer period has
        for (other, &q) in STRIDE_PERIODS.iter().enumerate() {
            if q > p {
                assert!(
                    t[other] < 2.0 * clean[other],
                    "period {p} leaks into {q}: {t:?}"
                );
            }
        }
    }
    assert!(clean.iter().all(|c| *c < 5.0), "natural field: {clean:?}");
}

#[test]
fn the_blob_detector_finds_disks_at_their_size_and_no_others() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let disks = [
        ([40.0, 40.0], 4.0),
        ([100.0, 60.0], 9.0),
        ([60.0, 110.0], 6.0),
    ];
    let field = img(160, 160, |x, y| {
        let mut v = 0.4 + rng.sample::<f64, _>(rand_distr::StandardNormal) * 0.005;
        for (c, r) in disks {
            let d = (x as f64 + 0.5 - c[0]).hypot(y as f64 + 0.5 - c[1]);
            v += 0.08 / (1.0 + ((d - r) / 0.7).exp());
        }
        v as f32
    });
    let mask = vec![true; 160 * 160];
    let calib: Vec<f64> = disks
        .iter()
        .map(|(c, r)| blob_response_at(&field, *c, *r))
        .collect();
    let t = 0.5 * calib.iter().cloned().fold(f64::MAX, f64::min);
    let found = find_blobs(&field, &mask, [3.0, 12.0], t);
    assert_eq!(found.len(), disks.len(), "{found:?}");
    for (c, r) in disks {
        let b = found
            .iter()
            .find(|b| (b.centre[0] - c[0]).hypot(b.centre[1] - c[1]) < 2.0)
            .unwrap_or_else(|| panic!("disk at {c:?} not found: {found:?}"));
        assert!(
            (b.radius / r - 1.0).abs() < 0.35,
            "radius {r}: found {}",
            b.radius
        );
    }
    // a dark disk is not a bright blob
    let dark = img(64, 64, |x, y| {
        if (x as f64 - 32.0).hypot(y as f64 - 32.0) < 6.0 {
            0.3
        } else {
            0.4
        }
    });
    assert!(find_blobs(&dark, &vec![true; 64 * 64], [3.0, 12.0], t).is_empty());
}

#[test]
fn blur_lowers_lung_detail_and_sharpening_raises_it() {
    let lungs = img(64, 64, |x, y| {
        0.4 + 0.1 * ((x as f32 * 0.9).sin() * (y as f32 * 0.7).cos()) + 0.3 * (x > 48) as u8 as f32
    });
    let mask: Vec<bool> = (0..64 * 64).map(|p| p % 64 < 40).collect();
    let d = |g: &GrayImage| lung_detail(g, &mask, None).unwrap();
    let soft = gaussian_blur(&lungs, 1.5);
    let blur = gaussian_blur(&soft, 2.0);
    let sharp = GrayImage {
        data: soft
            .data
            .iter()
            .zip(&blur.data)
            .map(|(s, b)| s + 1.0 * (s - b))
            .collect(),
        ..soft.clone()
    };
    assert!(d(&soft) < 0.8 * d(&lungs), "{} {}", d(&soft), d(&lungs));
    assert!(d(&sharp) > 1.2 * d(&soft), "{} {}", d(&sharp), d(&soft));
    assert_eq!(lung_detail(&lungs, &vec![false; 64 * 64], None), None);
}

#[test]
fn a_disk_is_round_and_a_line_is_not() {
    let disk = img(64, 64, |x, y| {
        if (x as f64 + 0.5 - 32.0).hypot(y as f64 + 0.5 - 32.0) < 5.0 {
            0.6
        } else {
            0.3
        }
    });
    let all = vec![true; 64 * 64];
    let b = find_blobs(&disk, &all, [3.0, 8.0], 0.0)[0];
    assert!(b.roundness > 0.9, "{b:?}");
    // a line 5 px wide whose brightness varies a little along it: maxima as strong as the
    // disk's, but nearly flat along it
    let line = img(64, 64, |x, y| {
        let along = 0.01 * (y as f32 * std::f32::consts::PI / 8.0).cos();
        if (30..35).contains(&x) {
            0.6 + along
        } else {
            0.3
        }
    });
    let mid: Vec<bool> = (0..64 * 64).map(|p| (16..48).contains(&(p / 64))).collect();
    let on_line = find_blobs(&line, &mid, [3.0, 8.0], 0.5 * b.response);
    assert!(!on_line.is_empty());
    assert!(on_line.iter().all(|l| l.roundness < 0.2), "{on_line:?}");
    // a dark spot does not curve down at all
    let pit = img(64, 64, |x, y| {
        if (x as f64 + 0.5 - 32.0).hypot(y as f64 + 0.5 - 32.0) < 5.0 {
            0.3
        } else {
            0.6
        }
    });
    let scales = BlobScales::new(&pit, [3.0, 8.0]);
    assert_eq!(scales.roundness(3, 32 * 64 + 32), 0.0);
}

#[test]
fn the_response_map_sees_a_blob_whose_peak_lies_outside_the_mask() {
    let field = img(64, 64, |x, y| {
        let d2 = (x as f32 - 20.0).powi(2) + (y as f32 - 32.0).powi(2);
        0.3 + 0.2 * (-d2 / 24.5).exp()
    });
    let scales = BlobScales::new(&field, [3.0, 8.0]);
    let peak = scales.find(&vec![true; 64 * 64], 0.0)[0];
    assert!((peak.centre[0] - 20.5).abs() <= 1.0 && (peak.radius - 5.0).abs() < 1.5);
    // the lung mask starts two pixels to the right of the peak: no maximum in it
    let mask: Vec<bool> = (0..64 * 64).map(|p| p % 64 >= 22).collect();
    assert!(scales.find(&mask, 0.5 * peak.response).is_empty());
    // but a blob found there in another image had this one under it
    let there = Blob {
        roundness: 1.0,
        centre: [22.5, 32.5],
        ..peak
    };
    assert!(scales.peak_near(&there) >= 0.9 * peak.response);
    let elsewhere = Blob {
        roundness: 1.0,
        centre: [50.5, 32.5],
        ..peak
    };
    assert!(scales.peak_near(&elsewhere).abs() < 0.05 * peak.response);
}

#[test]
fn background_level_sees_a_lifted_background() {
    let input = img(
        64,
        64,
        |x, _| if x < 16 { 0.0 } else { 0.3 + x as f32 / 128.0 },
    );
    let same = background_level(&input, &input).unwrap();
    let lifted = img(64, 64, |x, y| input.data[y * 64 + x] + 0.1);
    let l = background_level(&input, &lifted).unwrap();
    assert!(same.abs() < 0.01, "{same}");
    assert!(l > 0.1, "{l}");
    // one black pixel is no background
    let no_bg = img(64, 64, |x, y| {
        if x + y == 0 {
            0.0
        } else {
            0.5 + x as f32 / 128.0
        }
    });
    assert!(background_level(&no_bg, &no_bg).is_none());
}
