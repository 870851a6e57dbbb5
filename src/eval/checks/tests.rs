//! The checks on synthetic chests: what passes, what fails, and why.

use super::*;

fn img(w: usize, h: usize, f: impl FnMut(usize, usize) -> f32) -> GrayImage {
    GrayImage::from_fn(w, h, f)
}

/// A chest-like picture: a bright body on black air, two dark lungs, one bright nodule.
fn chest(nodule: f32, blur: bool) -> GrayImage {
    img(128, 128, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        let body = ((xf - 64.0) / 54.0).powi(2) + ((yf - 64.0) / 60.0).powi(2) < 1.0;
        if !body {
            return 0.0;
        }
        let lung = |cx: f32| ((xf - cx) / 18.0).powi(2) + ((yf - 60.0) / 34.0).powi(2) < 1.0;
        let mut v: f32 = if lung(40.0) || lung(88.0) { 0.35 } else { 0.7 };
        // fine texture (detail) unless blurred
        if !blur {
            v += 0.03 * ((xf * 1.3).sin() * (yf * 1.7).cos());
        }
        if (xf - 40.0).hypot(yf - 60.0) < 5.0 {
            v += nodule;
        }
        // a little deterministic grain, so that the ring around a nodule is not flat
        v + 0.01 * (((x * 7919 + y * 104_729) % 101) as f32 / 101.0 - 0.5)
    })
}

#[test]
fn more_contrast_everywhere_invents_nothing_but_a_planted_blob_is_found() {
    // a restoration that doubles contrast inside the body: every response doubles
    let stretch = |g: &GrayImage| map_body(g, |v| (2.0 * (v - 0.5) + 0.5).clamp(0.0, 1.0));
    let reference = Reference::from_images(&[&chest(0.0, false)]).unwrap();
    let before = chest(0.15, true);
    let views = vec![View {
        name: "a".into(),
        after: stretch(&before),
        before,
        nodules: vec![([40.0, 60.0], 5.0)],
        pixel_mm: None,
        lungs: None,
    }];
    let twin = |planted: bool| {
        let clean = chest(0.0, true);
        let mut after = stretch(&clean);
        if planted {
            plant_disk(&mut after, [88.0, 60.0], 5.0, 0.3);
        }
        Twin::new("a", clean, after)
    };
    let c = run(&views, &[twin(false)], &reference).unwrap();
    assert!(c[4].pass, "{:?}", c[4]);
    let c = run(&views, &[twin(true)], &reference).unwrap();
    assert!(!c[4].pass, "{:?}", c[4]);
    assert!(c[4].after.starts_with("1 new blob"), "{:?}", c[4]);
    // and the check says where it is: the twin's name, and its centre within half a radius
    assert_near(new_blob_at(&c[4], "a"), [88.0, 60.0], 2.5);
}

/// A restoration's grey-level map `f` over the body; the air (0) stays black.
fn map_body(g: &GrayImage, f: impl Fn(f32) -> f32) -> GrayImage {
    GrayImage {
        data: g
            .data
            .iter()
            .map(|&v| if v > 0.0 { f(v) } else { 0.0 })
            .collect(),
        ..g.clone()
    }
}

/// Adds `c` inside the disk of radius `r` around `centre` (pixels) of a 128² image.
fn plant_disk(g: &mut GrayImage, centre: [f32; 2], r: f32, c: f32) {
    for y in 0..128 {
        for x in 0..128 {
            if (x as f32 - centre[0]).hypot(y as f32 - centre[1]) < r {
                g.data[y * 128 + x] += c;
            }
        }
    }
}

#[test]
fn a_pass_says_how_close_the_strongest_blob_not_there_before_came() {
    // the same doubled contrast, and a disk planted in the other lung of the clean twin:
    // first strong enough to be new, then scaled (the detector is linear) to 0.7 of the
    // threshold, where the check passes and names it as its margin
    let stretch = |g: &GrayImage| map_body(g, |v| (2.0 * (v - 0.5) + 0.5).clamp(0.0, 1.0));
    let (reference, mut views) = unchanged_view();
    views[0].after = stretch(&views[0].before);
    let twin = |c: f32| {
        let clean = chest(0.0, true);
        let mut after = stretch(&clean);
        plant_disk(&mut after, [88.0, 60.0], 5.0, c);
        Twin::new("t", clean, after)
    };
    let ratio = |c: &Check, lead: &str| -> f64 {
        let at = c
            .after
            .split(lead)
            .nth(1)
            .unwrap_or_else(|| panic!("{c:?}"));
        at.split('×').next().unwrap().trim().parse().unwrap()
    };
    let c = run(&views, &[twin(0.3)], &reference).unwrap();
    assert!(!c[4].pass, "{:?}", c[4]);
    let strong = ratio(&c[4], "the strongest at ");
    assert!(strong > 1.0, "{:?}", c[4]);
    let c = run(&views, &[twin(0.3 * 0.7 / strong as f32)], &reference).unwrap();
    assert!(c[4].pass, "{:?}", c[4]);
    assert!(c[4].after.starts_with("0 new blobs"), "{:?}", c[4]);
    let margin = ratio(&c[4], "the strongest blob not there before is at ");
    assert!((margin - 0.7).abs() < 0.05, "{margin}: {:?}", c[4]);
    assert_near(new_blob_at(&c[4], "t"), [88.0, 60.0], 2.5);
}

#[test]
fn a_new_line_counts_and_is_called_elongated_but_a_new_disk_is_not() {
    // a sharpened rib border or vessel: a bright line of a disk's contrast, planted where
    // the clean twin had nothing; its blob response passes the threshold as a disk's does,
    // but it curves down one way only
    let (reference, views) = unchanged_view();
    let twin = |line: bool, disk: bool| {
        let clean = chest(0.0, true);
        let mut after = clean.clone();
        if line {
            // across the whole lung, so that its ends (blob-like) lie outside it; a
            // little brighter every 16 px, so that it has maxima
            for y in 0..128 {
                let along = 0.01 * (y as f32 * std::f32::consts::PI / 8.0).cos();
                for x in 85..91 {
                    after.data[y * 128 + x] += 0.3 + along;
                }
            }
        }
        if disk {
            plant_disk(&mut after, [40.0, 70.0], 4.0, 0.3);
        }
        Twin::new("t", clean, after)
    };
    let elongated = |c: &Check| -> usize {
        c.after
            .split(" of them elongated")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{c:?}"))
    };
    let new = |c: &Check| -> usize { c.after.split(' ').next().unwrap().parse().unwrap() };
    let c = run(&views, &[twin(true, false)], &reference).unwrap();
    assert!(!c[4].pass, "{:?}", c[4]);
    assert!(
        new(&c[4]) >= 1 && elongated(&c[4]) == new(&c[4]),
        "{:?}",
        c[4]
    );
    let c = run(&views, &[twin(true, true)], &reference).unwrap();
    assert!(!c[4].pass, "{:?}", c[4]);
    assert_eq!(new(&c[4]), elongated(&c[4]) + 1, "{:?}", c[4]);
    let c = run(&views, &[twin(false, true)], &reference).unwrap();
    assert_eq!((new(&c[4]), elongated(&c[4])), (1, 0), "{:?}", c[4]);
    assert_near(new_blob_at(&c[4], "t"), [40.0, 70.0], 2.5);
}

/// The radiograph and one view whose restoration changed nothing (checks 1–4 aside).
fn unchanged_view() -> (Reference, Vec<View>) {
    let reference = Reference::from_images(&[&chest(0.0, false)]).unwrap();
    let before = chest(0.15, true);
    let views = vec![View {
        name: "a".into(),
        after: before.clone(),
        before,
        nodules: vec![([40.0, 60.0], 5.0)],
        pixel_mm: None,
        lungs: None,
    }];
    (reference, views)
}

/// Where check 5 says its strongest new blob is, in the twin `name`.
fn new_blob_at(c: &Check, name: &str) -> [f64; 2] {
    let at = c.after.split(&format!(" in {name} at x ")).nth(1);
    let nums: Vec<f64> = at
        .unwrap_or_else(|| panic!("no place named: {c:?}"))
        .split(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .filter_map(|t| t.parse().ok())
        .collect();
    [nums[0], nums[1]]
}

fn assert_near(got: [f64; 2], want: [f64; 2], tol: f64) {
    assert!(
        (got[0] - want[0]).hypot(got[1] - want[1]) <= tol,
        "{got:?} is not within {tol} px of {want:?}"
    );
}

#[test]
fn the_sets_lung_fields_decide_where_a_new_blob_counts() {
    // a blob planted at (88, 60), in the right half: lung fields that leave that half out
    // do not count it (whatever a threshold would take for lung there); fields that cover
    // it do
    let (reference, views) = unchanged_view();
    let clean = chest(0.0, true);
    let mut after = clean.clone();
    plant_disk(&mut after, [88.0, 60.0], 5.0, 0.3);
    let twin = |lungs: Option<Vec<bool>>| Twin {
        name: "a".into(),
        before: clean.clone(),
        after: after.clone(),
        pixel_mm: None,
        lungs,
    };
    let left_only: Vec<bool> = (0..128 * 128).map(|p| p % 128 < 64).collect();
    let c = run(&views, &[twin(Some(left_only))], &reference).unwrap();
    assert!(c[4].pass, "{:?}", c[4]);
    assert!(c[4].before.contains("the set's lung fields"), "{:?}", c[4]);
    let right_too = vec![true; 128 * 128];
    let c = run(&views, &[twin(Some(right_too))], &reference).unwrap();
    assert!(c[4].after.starts_with("1 new blob"), "{:?}", c[4]);
    let e = run(&views, &[twin(Some(vec![true; 10]))], &reference).unwrap_err();
    assert!(
        e.to_string().contains("lung fields of a have 10 pixels"),
        "{e}"
    );
}

#[test]
fn a_faint_blob_made_stronger_and_moved_is_not_invented() {
    // the twin has a faint spot (a vessel seen end-on) in a lung; the restoration makes it
    // stronger and its peak moves two pixels: sharper, not new
    let spot = |g: &GrayImage, cx: f32, c: f32| {
        let mut g = g.clone();
        for y in 0..128 {
            for x in 0..128 {
                let d = (x as f32 - cx).hypot(y as f32 - 60.0);
                g.data[y * 128 + x] += c * (-(d * d) / 24.5).exp();
            }
        }
        g
    };
    let (reference, views) = unchanged_view();
    let clean = chest(0.0, true);
    let twin = |after: GrayImage| Twin::new("a", spot(&clean, 96.0, 0.08), after);
    let c = run(&views, &[twin(spot(&clean, 98.0, 0.3))], &reference).unwrap();
    assert!(c[4].after.starts_with("0 new blobs"), "{:?}", c[4]);
    // the same spot where there was nothing is an invention
    let c = run(
        &views,
        &[twin(spot(&spot(&clean, 98.0, 0.3), 80.0, 0.2))],
        &reference,
    )
    .unwrap();
    assert!(c[4].after.starts_with("1 new blob"), "{:?}", c[4]);
    // the neighbouring spot pulls the detector's centre a little: within half a radius
    assert_near(new_blob_at(&c[4], "a"), [80.0, 60.0], 2.5);
}

#[test]
fn a_tone_curve_alone_invents_nothing_but_a_blob_on_top_of_it_is_found() {
    // A restoration to a radiograph's look brightens and stretches the brighter lung (behind
    // the heart, over the diaphragm) three times as much as the dark lung where the nodules
    // are. A faint vessel end there, under half the nodules' threshold in the DRR's own
    // intensities, passes the restored nodules' threshold: structure that was there, seen
    // through another tone curve, not an invention.
    let flat = |level: f32, nodule: f32, bump: f32| {
        img(128, 128, |x, y| {
            let (xf, yf) = (x as f32, y as f32);
            if !(8.0..120.0).contains(&xf) || !(8.0..120.0).contains(&yf) {
                return 0.0;
            }
            let d = (xf - 64.0).hypot(yf - 64.0);
            let mut v = level + bump * (-d * d / 8.0).exp();
            if d < 4.0 {
                v += nodule;
            }
            v + 0.004 * (((x * 7919 + y * 104_729) % 101) as f32 / 101.0 - 0.5)
        })
    };
    // slope 1 up to 0.4, 3 at 0.6
    let tone = |g: &GrayImage| map_body(g, |v| v + 5.0 * (v - 0.4).max(0.0).powi(2));
    let reference = Reference::from_images(&[&chest(0.0, false)]).unwrap();
    let before = flat(0.35, 0.05, 0.0);
    let views = vec![View {
        name: "a".into(),
        after: tone(&before),
        before,
        nodules: vec![([64.0, 64.0], 4.0)],
        pixel_mm: Some(1.5),
        lungs: None,
    }];
    let lungs: Vec<bool> = (0..128 * 128)
        .map(|p| (24..104).contains(&(p % 128)) && (24..104).contains(&(p / 128)))
        .collect();
    let clean = flat(0.6, 0.0, 0.016);
    let twin = |after: GrayImage| Twin {
        name: "b".into(),
        before: clean.clone(),
        after,
        pixel_mm: Some(1.5),
        lungs: Some(lungs.clone()),
    };
    let c = run(&views, &[twin(tone(&clean))], &reference).unwrap();
    assert!(c[4].after.starts_with("0 new blobs"), "{:?}", c[4]);
    assert!(c[4].pass, "{:?}", c[4]);
    // a disk where the lung was flat, after the same curve: invented
    let mut planted = tone(&clean);
    plant_disk(&mut planted, [44.0, 84.0], 4.0, 0.05);
    let c = run(&views, &[twin(planted)], &reference).unwrap();
    assert!(c[4].after.starts_with("1 new blob"), "{:?}", c[4]);
    assert_near(new_blob_at(&c[4], "b"), [44.0, 84.0], 2.0);
}

#[test]
fn a_tone_curve_is_its_own_tone_curve_and_sharpening_is_more_than_one() {
    let reference = Reference::from_images(&[&chest(0.0, false)]).unwrap();
    let before = chest(0.15, true);
    let curve = |g: &GrayImage| GrayImage {
        data: g.data.iter().map(|v| v.sqrt()).collect(),
        ..g.clone()
    };
    // unsharp masking on top of the curve: structure the curve alone cannot give
    let sharpen = |g: &GrayImage| {
        let soft = realism::gaussian_blur(g, 2.0);
        GrayImage {
            data: g
                .data
                .iter()
                .zip(&soft.data)
                .map(|(v, s)| v + 1.5 * (v - s))
                .collect(),
            ..g.clone()
        }
    };
    let view = |after: GrayImage| View {
        name: "a".into(),
        before: before.clone(),
        after,
        nodules: vec![([40.0, 60.0], 5.0)],
        pixel_mm: None,
        lungs: None,
    };
    let (alone, _) = tone_curves_alone(&[view(curve(&before))], &[]).unwrap();
    let got = &alone[0].after.data;
    let want = curve(&before).data;
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
    // the sharpened restoration gains more detail than its own tone curve does
    let sharp = vec![view(sharpen(&curve(&before)))];
    let (alone, _) = tone_curves_alone(&sharp, &[]).unwrap();
    let share = |c: &Check| -> f64 {
        let pct = c
            .after
            .split('(')
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        pct.parse().unwrap()
    };
    let full = run(&sharp, &[], &reference).unwrap();
    let curve_only = run(&alone, &[], &reference).unwrap();
    assert!(
        share(&full[0]) > share(&curve_only[0]) + 10.0,
        "{:?} against {:?}",
        full[0],
        curve_only[0]
    );
}

#[test]
fn the_identity_fails_detail_and_a_lost_nodule_fails_check_4() {
    let before = chest(0.15, true);
    let reference = Reference::from_images(&[&chest(0.0, false)]).unwrap();
    let views = vec![View {
        name: "a".into(),
        before: before.clone(),
        after: before.clone(),
        nodules: vec![([40.0, 60.0], 5.0)],
        pixel_mm: None,
        lungs: None,
    }];
    let twins = vec![Twin::new("a", chest(0.0, true), chest(0.0, true))];
    let c = run(&views, &twins, &reference).unwrap();
    assert!(!c[0].pass, "no change is not detail: {c:?}");
    assert!(c[1].pass && c[3].pass && c[4].pass, "{c:?}");
    // the restoration erases the nodule and invents one in the other lung
    let lost = View {
        after: chest(0.0, true),
        ..views.into_iter().next().unwrap()
    };
    let invented = Twin {
        after: img(128, 128, |x, y| {
            let v = chest(0.0, true).data[y * 128 + x];
            if (x as f32 - 88.0).hypot(y as f32 - 60.0) < 5.0 {
                v + 0.15
            } else {
                v
            }
        }),
        ..twins.into_iter().next().unwrap()
    };
    let c = run(&[lost], &[invented], &reference).unwrap();
    assert!(!c[3].pass, "{:?}", c[3]);
    assert!(!c[4].pass, "{:?}", c[4]);
}

#[test]
fn check_7_fails_a_flattened_mediastinum_and_passes_the_identity() {
    let reference = Reference::from_images(&[&chest(0.0, false)]).unwrap();
    // a chest with a wide mediastinum, a nodule on the left lung and one over the strip
    let (plain, lungs) = crate::eval::anatomy::tests::chest();
    let mut before = plain.clone();
    plant_disk(&mut before, [30.0, 50.0], 4.0, 0.15);
    plant_disk(&mut before, [64.0, 50.0], 4.0, 0.15);
    let view = |after: GrayImage| View {
        name: "a".into(),
        before: before.clone(),
        after,
        nodules: vec![([30.0, 50.0], 4.0), ([64.0, 50.0], 4.0)],
        pixel_mm: None,
        lungs: Some(lungs.clone()),
    };
    let c = run(&[view(before.clone())], &[], &reference).unwrap();
    let seven = c.iter().find(|c| c.name.starts_with("7 ")).unwrap();
    assert!(seven.pass, "{seven:?}");
    // the nodule over the strip is located over the mediastinum, the other on lung
    let four = &c[3];
    assert!(
        four.after.contains("lung field: 1") && four.after.contains("mediastinum: 1"),
        "{four:?}"
    );
    // the body's structure between the lungs flattened to its mean level, as a tone curve
    // with a flat stretch there does
    let flat = img(128, 128, |x, y| {
        let p = y * 128 + x;
        if (48..=80).contains(&x) && before.data[p] > 0.0 && !lungs[p] {
            0.75
        } else {
            before.data[p]
        }
    });
    let c = run(&[view(flat)], &[], &reference).unwrap();
    let seven = c.iter().find(|c| c.name.starts_with("7 ")).unwrap();
    assert!(!seven.pass, "{seven:?}");
    assert!(
        seven.after.contains("spine and mediastinum: detail ×0.") && seven.after.contains("(LOST)"),
        "{seven:?}"
    );
    // the lung-field nodule is reported on its own, untouched
    assert!(
        c[3].after.contains("lung field: 1, median 1.00"),
        "{:?}",
        c[3]
    );
    // check 3 is a report, never a requirement
    assert!(!c[2].required && c.iter().filter(|c| c.name.starts_with('3')).count() == 1);
}
