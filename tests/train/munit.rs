//! MUNIT-LQ on tiny data: it learns, and a resumed run equals an uninterrupted one.

use super::*;

#[test]
fn munit_learns_and_a_resumed_run_equals_an_uninterrupted_one() {
    use dxr::train::munit::net::{MunitConfig, MunitWeights};
    use dxr::train::munit::{MunitSettings, MunitTrainer, Style, load_munit, translate};
    let dir = Scratch::new("train-munit");
    for k in 0..3 {
        let hq = blobs(20 + k, 64, 64);
        write_png(&dir.path(&format!("hq/{k}.png")), &hq);
        write_png(
            &dir.path(&format!("lq/{k}.png")),
            &bicubic_degrade(&blobs(30 + k, 64, 64), 4.0).unwrap(),
        );
    }
    let device = dxr::device::cpu();
    let settings = MunitSettings {
        config: MunitConfig::preset("tiny").unwrap(),
        weights: MunitWeights::default(),
        steps: Steps {
            batch: 2,
            patch: 32,
            lr: 1e-3,
            betas: (0.5, 0.999),
            ema_decay: 0.9,
            seed: 9,
        },
    };
    let make = || {
        let hq = Domain::load(&dir.path("hq"), Columns::Train(0.25)).unwrap();
        let held = Domain::load(&dir.path("hq"), Columns::HeldOut(0.5)).unwrap();
        let val = vec![held.patch(1, 0, 0, 32, &Augment::NONE)];
        let lq = Domain::load(&dir.path("lq"), Columns::All).unwrap();
        MunitTrainer::new(settings.clone(), hq, lq, val, &device).unwrap()
    };
    let mut a = make();
    let full = train::run(&mut a, &opts(&dir.path("a"), 30, false), &mut |_| true).unwrap();
    let losses: Vec<f64> = full.rows.iter().map(|r| r.loss).collect();
    let (start, end) = (mean(&losses[..6]), mean(&losses[24..]));
    println!("munit tiny: generator loss {start:.3} (steps 1–6) → {end:.3} (steps 25–30)");
    assert!(end < 0.9 * start, "{start} → {end}");
    assert!(full.rows.last().unwrap().val.and_then(|v| v.psnr).is_some());
    let mut b = make();
    train::run(&mut b, &opts(&dir.path("b"), 30, false), &mut |p| {
        p.step < 12
    })
    .unwrap();
    let mut c = make();
    let rest = train::run(&mut c, &opts(&dir.path("b"), 30, true), &mut |_| true).unwrap();
    let resumed: Vec<f64> = rest.rows.iter().map(|r| r.loss).collect();
    assert_eq!(resumed, losses, "MUNIT loss curve after a resume differs");
    // the export translates any size, with a random or an image's style
    let (cfg, generator) = load_munit(&dir.path("a/munit.safetensors"), &device).unwrap();
    let img = blobs(50, 40, 24);
    let out = translate(&cfg, &generator, &img, Style::Random(1), &device).unwrap();
    assert_eq!((out.width, out.height), (40, 24));
    let again = translate(&cfg, &generator, &img, Style::Random(1), &device).unwrap();
    assert_eq!(out.data, again.data);
    let styled = translate(
        &cfg,
        &generator,
        &img,
        Style::Of(&blobs(51, 32, 32)),
        &device,
    )
    .unwrap();
    assert_ne!(out.data, styled.data);
}
