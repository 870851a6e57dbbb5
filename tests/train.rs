//! The trainers on tiny configs and tiny synthetic data: losses go down, a resumed run equals an
//! uninterrupted one step for step, analytic gradients equal finite differences, SDEdit/ILVR and
//! the bicubic baseline do what they say, and evaluation equals the metrics fixtures.

mod common;

use std::path::Path;

use burn::optim::GradientsParams;
use burn::prelude::*;
use common::Scratch;
use dxr::eval::tables;
use dxr::io::{BitDepth, GrayImage, encode_png};
use dxr::spec::Prediction;
use dxr::train::data::{Augment, Columns, Domain, PairSet};
use dxr::train::ddpm::{
    DdpmData, DdpmSettings, DdpmTrainer, DdpmVal, Sdedit, bicubic_degrade, sdedit, val_pairs,
};
use dxr::train::optim::{grads_in_order, params, set_params};
use dxr::train::{self, RunOptions, StateFile};

/// A smooth random "radiograph": a few Gaussian blobs on a gradient.
fn blobs(seed: u64, w: usize, h: usize) -> GrayImage {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let spots: Vec<(f32, f32, f32, f32)> = (0..6)
        .map(|_| {
            (
                rng.random_range(0.0..w as f32),
                rng.random_range(0.0..h as f32),
                rng.random_range(2.0..6.0),
                rng.random_range(0.2..0.6),
            )
        })
        .collect();
    let data = (0..w * h)
        .map(|p| {
            let (x, y) = ((p % w) as f32, (p / w) as f32);
            let base = 0.2 + 0.3 * y / h as f32;
            let v: f32 = spots
                .iter()
                .map(|(cx, cy, r, a)| {
                    a * (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * r * r)).exp()
                })
                .sum();
            (base + v).clamp(0.0, 1.0)
        })
        .collect();
    GrayImage {
        width: w,
        height: h,
        data,
    }
}

fn write_png(path: &Path, img: &GrayImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, encode_png(img, BitDepth::Sixteen).unwrap()).unwrap();
}

/// A pair set of 6 images: HQ blobs, LQ their bicubic ×4 degradation.
fn pair_set(dir: &Path) {
    for k in 0..6 {
        let hq = blobs(k, 32, 32);
        let lq = bicubic_degrade(&hq, 4.0).unwrap();
        write_png(&dir.join(format!("hq/{k:02}.png")), &hq);
        write_png(&dir.join(format!("lq/{k:02}.png")), &lq);
    }
}

fn settings(channels: usize) -> DdpmSettings {
    DdpmSettings {
        spec: train::preset("tiny", channels).unwrap(),
        batch: 4,
        patch: 16,
        lr: 2e-3,
        betas: (0.9, 0.999),
        ema_decay: 0.9,
        seed: 5,
        val_steps: 3,
        precision: Default::default(),
    }
}

fn opts(out: &Path, steps: u64, resume: bool) -> RunOptions {
    RunOptions {
        out: out.to_path_buf(),
        steps,
        resume,
        val_every: 0,
        save_every: 0,
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn ddpm_hq_learns_and_a_resumed_run_equals_an_uninterrupted_one() {
    let dir = Scratch::new("train-hq");
    pair_set(&dir.path("pairs"));
    let device = dxr::device::cpu();
    let make = || {
        let set = PairSet::load(&dir.path("pairs")).unwrap();
        let val = DdpmVal::Pairs(val_pairs(&set, 16));
        DdpmTrainer::new(settings(2), DdpmData::Pairs(set), val, &device).unwrap()
    };
    // 1. uninterrupted: 60 steps
    let mut a = make();
    let full = train::run(&mut a, &opts(&dir.path("a"), 60, false), &mut |_| true).unwrap();
    let losses: Vec<f64> = full.rows.iter().map(|r| r.loss).collect();
    let (start, end) = (mean(&losses[..10]), mean(&losses[50..]));
    println!("ddpm-hq tiny: loss {start:.4} (steps 1–10) → {end:.4} (steps 51–60)");
    assert!(end < 0.9 * start, "loss did not go down: {start} → {end}");
    let last = full.rows.last().unwrap();
    assert!(
        last.val.and_then(|v| v.psnr).is_some(),
        "validation at the end"
    );
    for f in [
        "state.safetensors",
        "model.safetensors",
        "log.csv",
        "loss.png",
    ] {
        assert!(dir.path("a").join(f).is_file(), "{f}");
    }
    // 2. interrupted at 15 (progress says stop), resumed to 60 in a fresh trainer
    let mut b = make();
    let part = train::run(&mut b, &opts(&dir.path("b"), 60, false), &mut |p| {
        p.step < 15
    })
    .unwrap();
    assert!(part.cancelled && part.last_step == 15);
    let mut c = make();
    let rest = train::run(&mut c, &opts(&dir.path("b"), 60, true), &mut |_| true).unwrap();
    assert_eq!(rest.first_step, 15);
    let resumed: Vec<f64> = rest.rows.iter().map(|r| r.loss).collect();
    assert_eq!(resumed.len(), 60, "log keeps the first 15 rows");
    assert_eq!(resumed, losses, "the loss curve after a resume differs");
    let read = |p: &str| {
        let mut t = StateFile::read(&dir.path(p)).unwrap().tensors;
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t
    };
    let (sa, sb) = (read("a/state.safetensors"), read("b/state.safetensors"));
    assert_eq!(sa.len(), sb.len());
    for (x, y) in sa.iter().zip(&sb) {
        assert!(
            x == y,
            "{} differs after the resume (weights, EMA or Adam moments)",
            x.0
        );
    }
    // 3. a state that lacks a counter or a tensor is refused by name, never defaulted
    let state = StateFile::read(&dir.path("a/state.safetensors")).unwrap();
    let damaged = |what: &str, edit: &dyn Fn(&mut StateFile)| {
        let run = dir.path(&format!("damaged-{what}"));
        std::fs::create_dir_all(&run).unwrap();
        let mut s = StateFile {
            tensors: state.tensors.clone(),
            meta: state.meta.clone(),
        };
        edit(&mut s);
        std::fs::write(run.join("state.safetensors"), s.to_bytes().unwrap()).unwrap();
        let err = match train::run(&mut make(), &opts(&run, 70, true), &mut |_| true) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("resumed from a state without {what}"),
        };
        assert!(err.contains(what), "{what}: {err}");
    };
    damaged("adam_t", &|s| {
        s.meta.remove("adam_t");
    });
    damaged("ema_updates", &|s| {
        s.meta.remove("ema_updates");
    });
    damaged("adam.v", &|s| {
        s.tensors.retain(|t| t.0 != "adam.v.0003");
    });
    damaged("model", &|s| {
        s.tensors.retain(|t| !t.0.starts_with("model."))
    });
    // 4. the exported model restores in the engine
    let bytes = std::fs::read(dir.path("a/model.safetensors")).unwrap();
    let model = dxr::checkpoint::load_bytes(&bytes, None, &device).unwrap();
    assert_eq!(model.spec, settings(2).spec);
}

#[test]
fn an_x0_objective_restores_better_than_eps_after_the_same_short_training() {
    let dir = Scratch::new("train-x0");
    pair_set(&dir.path("pairs"));
    let device = dxr::device::cpu();
    let run = |prediction: Prediction, out: &str| {
        let set = PairSet::load(&dir.path("pairs")).unwrap();
        let val = DdpmVal::Pairs(val_pairs(&set, 16));
        let mut s = settings(2);
        s.spec.prediction = prediction;
        let mut t = DdpmTrainer::new(s, DdpmData::Pairs(set), val, &device).unwrap();
        let r = train::run(&mut t, &opts(&dir.path(out), 60, false), &mut |_| true).unwrap();
        let losses: Vec<f64> = r.rows.iter().map(|r| r.loss).collect();
        let psnr = r.rows.last().unwrap().val.unwrap().psnr.unwrap();
        (mean(&losses[..10]), mean(&losses[50..]), psnr)
    };
    let (e0, e1, eps_psnr) = run(Prediction::Eps, "eps");
    let (x0, x1, x0_psnr) = run(Prediction::X0, "x0");
    println!(
        "60 tiny steps: eps loss {e0:.3} → {e1:.3}, {eps_psnr:.2} dB; x0 loss {x0:.3} → {x1:.3}, {x0_psnr:.2} dB"
    );
    assert!(x1 < 0.9 * x0, "x0 loss did not go down: {x0} → {x1}");
    assert!(
        x0_psnr > eps_psnr + 3.0,
        "x0 {x0_psnr} dB vs eps {eps_psnr} dB"
    );
    // the objective travels with the export, and the engine samples with it
    let bytes = std::fs::read(dir.path("x0/model.safetensors")).unwrap();
    let model = dxr::checkpoint::load_bytes(&bytes, None, &device).unwrap();
    assert_eq!(model.spec.prediction, Prediction::X0);
}

#[test]
fn ddpm_lq_learns_the_domain() {
    let dir = Scratch::new("train-lq");
    for k in 0..4 {
        write_png(
            &dir.path(&format!("lq/{k}.png")),
            &bicubic_degrade(&blobs(10 + k, 40, 40), 4.0).unwrap(),
        );
    }
    let device = dxr::device::cpu();
    let domain = Domain::load(&dir.path("lq"), Columns::All).unwrap();
    let val = DdpmVal::Patches(
        (0..2)
            .map(|k| domain.patch(1, 0, k, 16, &Augment::NONE))
            .collect(),
    );
    let mut t = DdpmTrainer::new(
        settings(1),
        DdpmData::Domain(domain, Augment::FLIP),
        val,
        &device,
    )
    .unwrap();
    let run = train::run(&mut t, &opts(&dir.path("run"), 60, false), &mut |_| true).unwrap();
    let losses: Vec<f64> = run.rows.iter().map(|r| r.loss).collect();
    let (start, end) = (mean(&losses[..10]), mean(&losses[50..]));
    println!("ddpm-lq tiny: loss {start:.4} (steps 1–10) → {end:.4} (steps 51–60)");
    assert!(end < 0.9 * start, "{start} → {end}");
    assert!(run.rows.last().unwrap().val.and_then(|v| v.loss).is_some());
    // a conditional network refuses a single domain, and the reverse
    let domain = Domain::load(&dir.path("lq"), Columns::All).unwrap();
    let msg = DdpmTrainer::new(
        settings(2),
        DdpmData::Domain(domain, Augment::NONE),
        DdpmVal::None,
        &device,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(msg.contains("1 channel"), "{msg}");
}

#[test]
fn unet_gradients_equal_finite_differences() {
    let device = dxr::device::cpu();
    let ad = device.clone().autodiff();
    let spec = train::preset("tiny", 2).unwrap();
    let net = train::init_seeded(&spec.network, &ad, 1).unwrap();
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut rand_vec =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let (x, w) = (rand_vec(2 * 8 * 8), rand_vec(8 * 8));
    let loss_of = |net: &dxr::model::Network, dev: &Device| -> Tensor<1> {
        let input = Tensor::<4>::from_data(TensorData::new(x.clone(), [1, 2, 8, 8]), dev);
        let out = net.forward_raw(input, &[333.0]);
        let wt = Tensor::<4>::from_data(TensorData::new(w.clone(), [1, 1, 8, 8]), dev);
        (out * wt).sum()
    };
    let grads = GradientsParams::from_grads(loss_of(&net, &ad).backward(), &net);
    let analytic = grads_in_order(&net, &grads);
    let plain = net.valid();
    let base = params(&plain);
    let value = |p: &[Tensor<1>]| -> f64 {
        let n = set_params(plain.clone(), p).unwrap();
        loss_of(&n, &device).into_scalar::<f32>() as f64
    };
    let mut checked = 0;
    // a few entries of several tensors (first conv, a middle one, the last)
    for k in [0, base.len() / 2, base.len() - 2] {
        let g: Vec<f32> = analytic[k]
            .clone()
            .expect("gradient")
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let vals: Vec<f32> = base[k].clone().into_data().try_to_vec::<f32>().unwrap();
        for idx in [0, vals.len() / 3, vals.len() - 1] {
            let h = 1e-2f32;
            let shifted = |d: f32| {
                let mut v = vals.clone();
                v[idx] += d;
                let mut p = base.clone();
                p[k] = Tensor::<1>::from_data(TensorData::new(v, [vals.len()]), &device);
                value(&p)
            };
            let fd = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
            let an = g[idx] as f64;
            println!("param {k}[{idx}]: analytic {an:.6} finite difference {fd:.6}");
            assert!(
                (an - fd).abs() <= 2e-2 * an.abs().max(fd.abs()) + 2e-3,
                "param {k}[{idx}]: {an} vs {fd}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 9);
}

#[test]
fn sdedit_with_ilvr_keeps_the_low_frequencies_and_bicubic_blurs() {
    let device = dxr::device::cpu();
    let spec = train::preset("tiny", 1).unwrap();
    let model = dxr::checkpoint::LoadedModel {
        network: train::init_seeded(&spec.network, &device, 2).unwrap(),
        spec: spec.clone(),
    };
    let schedule = spec.schedule.build().unwrap();
    let img = blobs(4, 30, 22); // odd size on purpose
    let block_means = |g: &GrayImage, n: usize| -> Vec<f32> {
        let mut v = Vec::new();
        for by in 0..g.height / n {
            for bx in 0..g.width / n {
                let mut s = 0.0;
                for y in 0..n {
                    for x in 0..n {
                        s += g.data[(by * n + y) * g.width + bx * n + x];
                    }
                }
                v.push(s / (n * n) as f32);
            }
        }
        v
    };
    let out = sdedit(
        &model,
        &schedule,
        &img,
        &Sdedit {
            strength: 0.5,
            steps: 6,
            ilvr: Some(4),
            seed: 1,
        },
        &device,
    )
    .unwrap();
    assert_eq!((out.width, out.height), (30, 22));
    let (a, b) = (block_means(&img, 4), block_means(&out, 4));
    let mean_abs = |p: &[f32], q: &[f32]| {
        p.iter().zip(q).map(|(x, y)| (x - y).abs()).sum::<f32>() / p.len() as f32
    };
    let guided = mean_abs(&a, &b);
    // without guidance the (untrained) model drifts away from the input's layout
    let free = sdedit(
        &model,
        &schedule,
        &img,
        &Sdedit {
            strength: 0.5,
            steps: 6,
            ilvr: None,
            seed: 1,
        },
        &device,
    )
    .unwrap();
    let drift = mean_abs(&a, &block_means(&free, 4));
    println!("4×4 block means vs the input: ILVR {guided:.4}, unguided {drift:.4}");
    assert!(
        guided < 0.25 * drift,
        "ILVR should pin the block means: {guided} vs {drift}"
    );
    assert!(
        sdedit(
            &model,
            &schedule,
            &img,
            &Sdedit {
                strength: 1.5,
                steps: 6,
                ilvr: None,
                seed: 1
            },
            &device
        )
        .is_err()
    );
    // bicubic ×4: same size, less high-frequency energy (on a textured image)
    let img = GrayImage {
        data: img
            .data
            .iter()
            .enumerate()
            .map(|(k, v)| v * 0.8 + 0.2 * ((k % 30 + k / 30) % 2) as f32)
            .collect(),
        ..img
    };
    let lq = bicubic_degrade(&img, 4.0).unwrap();
    let hf = |g: &GrayImage| -> f32 { g.data.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum() };
    assert_eq!((lq.width, lq.height), (30, 22));
    assert!(hf(&lq) < 0.3 * hf(&img), "{} vs {}", hf(&lq), hf(&img));
}

#[test]
fn eval_equals_the_metrics_fixtures() {
    let mut dirs = vec![common::fixtures_root().join("metrics")];
    dirs.extend(common::env_dirs("DXR_METRIC_FIXTURES"));
    let scratch = Scratch::new("eval");
    let mut n = 0;
    for (d, dir) in dirs.iter().enumerate() {
        let expected: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let (restored, reference) = (
            scratch.path(&format!("r{d}")),
            scratch.path(&format!("f{d}")),
        );
        std::fs::create_dir_all(&restored).unwrap();
        std::fs::create_dir_all(&reference).unwrap();
        for (name, case) in &expected {
            std::fs::copy(
                dir.join(case["test"].as_str().unwrap()),
                restored.join(format!("{name}.png")),
            )
            .unwrap();
            std::fs::copy(
                dir.join(case["reference"].as_str().unwrap()),
                reference.join(format!("{name}.png")),
            )
            .unwrap();
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
            .args([
                "eval",
                "--restored",
                restored.to_str().unwrap(),
                "--reference",
                reference.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains("mean ± std"), "{table}");
        let csv = std::fs::read_to_string(restored.join("eval.csv")).unwrap();
        for line in csv.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let case = &expected[f[0].trim_end_matches(".png")];
            let (p, s): (f64, f64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
            assert!((p - case["psnr"].as_f64().unwrap()).abs() < 1e-6, "{line}");
            assert!((s - case["ssim"].as_f64().unwrap()).abs() < 1e-5, "{line}");
            n += 1;
        }
    }
    assert!(n >= 4);
    let rows = vec![
        tables::EvalRow {
            name: "a".into(),
            psnr: 20.0,
            ssim: 0.5,
        },
        tables::EvalRow {
            name: "b".into(),
            psnr: 30.0,
            ssim: 0.7,
        },
    ];
    assert!(tables::markdown(&rows).contains("25.000 ± 5.000"));
}

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
        batch: 2,
        patch: 32,
        lr: 1e-3,
        betas: (0.5, 0.999),
        ema_decay: 0.9,
        seed: 9,
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

#[test]
fn the_commands_chain_and_refuse_mixed_up_runs() {
    let dir = Scratch::new("train-cli");
    write_png(&dir.path("cxr.png"), &blobs(60, 96, 48));
    let dxr = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
            .args(args)
            .output()
            .unwrap()
    };
    let p = |s: &str| dir.path(s).to_str().unwrap().to_string();
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    ok(dxr(&[
        "pairs",
        "--method",
        "bicubic",
        "--hq",
        &p("cxr.png"),
        "--out",
        &p("pairs"),
        "--count",
        "4",
        "--size",
        "32",
    ]));
    ok(dxr(&[
        "pairs",
        "--method",
        "bicubic",
        "--hq",
        &p("cxr.png"),
        "--out",
        &p("val"),
        "--count",
        "2",
        "--size",
        "32",
        "--region",
        "heldout",
    ]));
    let train_run = |extra: &[&str]| {
        let (pairs, val, out) = (p("pairs"), p("val"), p("run"));
        let mut args = vec!["train", "ddpm-hq", "--config", "tiny", "--pairs", &pairs];
        args.extend([
            "--val",
            &val,
            "--out",
            &out,
            "--patch",
            "16",
            "--batch",
            "2",
            "--val-steps",
            "2",
        ]);
        args.extend(extra);
        dxr(&args)
    };
    ok(train_run(&["--steps", "3"]));
    let log = std::fs::read_to_string(dir.path("run/log.csv")).unwrap();
    assert!(log.starts_with("step,loss"), "{log}");
    assert_eq!(log.lines().count(), 4);
    let again = train_run(&["--steps", "5"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    let other = train_run(&["--steps", "5", "--resume", "--lr", "1e-3"]);
    assert!(String::from_utf8_lossy(&other.stderr).contains("other settings"));
    ok(train_run(&["--steps", "5", "--resume"]));
    assert_eq!(
        std::fs::read_to_string(dir.path("run/log.csv"))
            .unwrap()
            .lines()
            .count(),
        6
    );
    let out = ok(dxr(&[
        "eval",
        "--weights",
        &p("run/model.safetensors"),
        "--pairs",
        &p("val"),
        "--steps",
        "2",
    ]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("mean ± std** (2 images)"));
    assert!(dir.path("run/eval.csv").is_file());
    // a pair set without lq/ is named
    std::fs::create_dir_all(dir.path("broken/hq")).unwrap();
    let bad = dxr(&[
        "train",
        "ddpm-hq",
        "--config",
        "tiny",
        "--pairs",
        &p("broken"),
        "--out",
        &p("x"),
        "--steps",
        "1",
        "--patch",
        "16",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("lq/ and hq/"));
}

#[test]
fn training_on_wgpu_follows_training_on_the_cpu() {
    let Ok(gpu) = dxr::device::gpu() else {
        panic!("a wgpu adapter (Mesa's llvmpipe Vulkan from scripts/setup.sh is enough)");
    };
    let dir = Scratch::new("train-wgpu");
    pair_set(&dir.path("pairs"));
    let make = |device: &Device| {
        let set = PairSet::load(&dir.path("pairs")).unwrap();
        DdpmTrainer::new(settings(2), DdpmData::Pairs(set), DdpmVal::None, device).unwrap()
    };
    use dxr::train::Trainer;
    let mut cpu = make(&dxr::device::cpu());
    let mut on_gpu = make(&gpu);
    // the same starting weights on both
    let mut state = StateFile::default();
    cpu.save(&mut state).unwrap();
    on_gpu.load(&state).unwrap();
    for step in 0..3 {
        let (a, b) = (cpu.step(step).unwrap(), on_gpu.step(step).unwrap());
        println!("step {step}: ndarray loss {a:.6}, wgpu loss {b:.6}");
        assert!(
            (a - b).abs() < 1e-4 * a.abs().max(1.0),
            "step {step}: {a} vs {b}"
        );
    }
}

#[test]
fn ctrl_c_saves_the_run_and_it_resumes() {
    let dir = Scratch::new("train-sigint");
    pair_set(&dir.path("pairs"));
    let p = |s: &str| dir.path(s).to_str().unwrap().to_string();
    let args = |steps: &str, resume: bool| {
        let mut a: Vec<String> = [
            "train",
            "ddpm-hq",
            "--config",
            "tiny",
            "--patch",
            "16",
            "--batch",
            "2",
            "--save-every",
            "0",
            "--steps",
            steps,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(["--pairs".into(), p("pairs"), "--out".into(), p("run")]);
        if resume {
            a.push("--resume".into());
        }
        a
    };
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
        .args(args("1000000", false))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("state saved"), "{err}");
    let state = StateFile::read(&dir.path("run/state.safetensors")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&state.meta["dxr_train"]).unwrap();
    let step = meta["step"].as_u64().unwrap();
    assert!(step >= 1, "no step was saved");
    let log = std::fs::read_to_string(dir.path("run/log.csv")).unwrap();
    assert_eq!(log.lines().count() as u64, step + 1);
    let target = (step + 2).to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
        .args(args(&target, true))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path("run/log.csv"))
            .unwrap()
            .lines()
            .count() as u64,
        step + 3
    );
}

/// A fake `dxr drr` set under `dir/set`: two 64² images (00000, 00001) with one bright disk each
/// (centre (30, 34), radius 6) and their labels.
fn fake_drr_set(dir: &Scratch) {
    // a fake DRR set: two images with one bright disk each, labels in the drr layout
    std::fs::create_dir_all(dir.path("set/labels")).unwrap();
    for k in 0..2 {
        let img = GrayImage {
            width: 64,
            height: 64,
            data: (0..64 * 64)
                .map(|p| {
                    let (x, y) = ((p % 64) as f64 + 0.5, (p / 64) as f64 + 0.5);
                    let noise = ((p * 7919 + k * 31) % 97) as f32 / 97.0 * 0.05;
                    let disk = if (x - 30.0).powi(2) + (y - 34.0).powi(2) < 36.0 {
                        0.2
                    } else {
                        0.0
                    };
                    0.3 + disk + noise + 0.2 * (x / 64.0) as f32
                })
                .collect(),
        };
        write_png(&dir.path(&format!("set/png16/{k:05}.png")), &img);
        let label = serde_json::json!({"width": 64, "height": 64, "nodules": [{"centre_px": [30.0, 34.0], "radius_px": 6.0, "bbox_px": [24.0, 28.0, 36.0, 40.0]}]});
        std::fs::write(
            dir.path(&format!("set/labels/{k:05}.json")),
            label.to_string(),
        )
        .unwrap();
    }
}

#[test]
fn realism_command_reports_every_measure_and_the_nodules() {
    let dir = Scratch::new("realism");
    fake_drr_set(&dir);
    write_png(&dir.path("real.png"), &blobs(70, 90, 60));
    let p = |s: &str| dir.path(s).to_str().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
        .args([
            "realism",
            &p("set/png16"),
            "--reference",
            &p("real.png"),
            "--reference-holdout",
            "0.333",
            "--labels",
            &p("set"),
            "--csv",
            &p("r.csv"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(dir.path("r.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let h: f64 = r[1].parse().unwrap();
        let cnr: f64 = r[5].parse().unwrap();
        assert!(h > 0.0 && h < 1.0, "histogram distance {h}");
        assert_eq!(r[4], "1", "one nodule per image");
        assert!(cnr > 3.0, "a 0.2 disk over ±0.03 texture: CNR {cnr}");
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("nodule CNR"));
}

#[test]
fn realism_checks_a_restoration_against_its_inputs_and_the_radiograph() {
    let dir = Scratch::new("realism-checks");
    fake_drr_set(&dir);
    write_png(&dir.path("real.png"), &blobs(70, 90, 60));
    let p = |s: &str| dir.path(s).to_str().unwrap().to_string();
    let run = |after: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
            .args([
                "realism",
                &p(after),
                "--before",
                &p("set/png16"),
                "--reference",
                &p("real.png"),
                "--labels",
                &p("set"),
            ])
            .output()
            .unwrap()
    };
    // a "restoration" that changes nothing: no detail gained, the nodules kept
    let out = run("set/png16");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |name: &str| {
        text.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name} line in {text}"))
            .to_string()
    };
    assert!(line("1 detail").ends_with("FAIL |"), "{text}");
    assert!(line("4 nodules kept").ends_with("pass |"), "{text}");
    // the identity's tone curve is the identity: it passes what the identity passes
    let passed = line("checks pass").split(' ').next().unwrap().to_string();
    assert!(
        line("tone curves alone").contains(&format!(" pass {passed} checks")),
        "{text}"
    );
    assert!(
        line("5 nothing invented").contains("needs the nodule-free twins"),
        "{text}"
    );
    // one that erases the nodules fails check 4
    for k in 0..2 {
        write_png(&dir.path(&format!("flat/{k:05}.png")), &blobs(k, 64, 64));
    }
    let text = String::from_utf8_lossy(&run("flat").stdout).to_string();
    assert!(
        text.lines()
            .any(|l| l.contains("4 nodules kept") && l.ends_with("FAIL |")),
        "{text}"
    );
    // with the twins: the lungs by threshold, then the lung fields the set's labels name
    let twins = |after: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
            .args(["realism", &p(after), "--before", &p("set/png16")])
            .args(["--reference", &p("real.png"), "--labels", &p("set")])
            .args([
                "--clean-before",
                &p("set/png16"),
                "--clean-after",
                &p(after),
            ])
            .output()
            .unwrap()
    };
    let five = |out: &std::process::Output| {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .find(|l| l.contains("5 nothing invented"))
            .unwrap_or_else(|| panic!("no check 5 in {text}"))
            .to_string()
    };
    assert!(five(&twins("set/png16")).contains("(lungs: by threshold)"));
    let white = GrayImage::from_fn(64, 64, |_, _| 1.0);
    for k in 0..2 {
        write_png(&dir.path(&format!("set/lungs/{k:05}.png")), &white);
        let f = dir.path(&format!("set/labels/{k:05}.json"));
        let mut label: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        label["lungs"] = format!("lungs/{k:05}.png").into();
        std::fs::write(&f, label.to_string()).unwrap();
    }
    let line = five(&twins("set/png16"));
    assert!(line.contains("(lungs: the set's lung fields)"), "{line}");
    assert!(
        line.ends_with("pass |"),
        "nothing changed, nothing invented: {line}"
    );
    // a lung-field file the label names but that is not there is named
    std::fs::remove_file(dir.path("set/lungs/00001.png")).unwrap();
    let out = twins("set/png16");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("00001.png"), "{err}");
    // --before without --labels is refused by name
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
        .args([
            "realism",
            &p("set/png16"),
            "--before",
            &p("set/png16"),
            "--reference",
            &p("real.png"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--labels"));
}

#[test]
fn the_drr_look_is_fitted_made_into_pairs_and_the_fixed_filter_runs() {
    let dir = Scratch::new("drr-look");
    fake_drr_set(&dir);
    write_png(&dir.path("real.png"), &blobs(71, 96, 96));
    let p = |s: &str| dir.path(s).to_str().unwrap().to_string();
    let dxr = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let table = dxr(&[
        "fit-drr-look",
        "--hq",
        &p("real.png"),
        "--drr",
        &p("set/png16"),
        "--sigma",
        "0",
        "1",
        "2",
        "-o",
        &p("look.json"),
        "--filter-out",
        &p("filter.json"),
    ]);
    assert_eq!(table.matches("(chosen)").count(), 1, "{table}");
    assert!(table.contains("DRRs (target)"), "{table}");
    dxr(&[
        "pairs",
        "--method",
        "drr",
        "--weights",
        &p("look.json"),
        "--hq",
        &p("real.png"),
        "--out",
        &p("pairs"),
        "--count",
        "3",
        "--size",
        "32",
    ]);
    let set = PairSet::load(&dir.path("pairs")).unwrap();
    assert_eq!(set.lq.len(), 3);
    // the LQ takes the DRRs' grey levels: closer to them than the HQ crop is
    let drr = dxr::io::read(&dir.path("set/png16/00000.png")).unwrap();
    let d = |a: &GrayImage| dxr::eval::realism::histogram_distance(a, &drr);
    let (lq, hq) = (&set.lq, &set.hq);
    assert!(
        (0..3).map(|k| d(&lq[k])).sum::<f64>() < (0..3).map(|k| d(&hq[k])).sum::<f64>(),
        "the tone curve moves the radiograph toward the DRRs"
    );
    // --grain-in-hq: the same LQ (the same noise draw), and HQ crops that carry that noise
    let mut look: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("look.json")).unwrap()).unwrap();
    look["noise"] = serde_json::json!(0.05);
    std::fs::write(dir.path("noisy.json"), look.to_string()).unwrap();
    for (out, grain) in [("plain", None), ("grain", Some("1")), ("half", Some("0.5"))] {
        let mut args = vec![
            "pairs", "--method", "drr", "--count", "3", "--size", "32", "--seed", "4",
        ];
        let (w, h, o) = (p("noisy.json"), p("real.png"), p(out));
        args.extend(["--weights", &w, "--hq", &h, "--out", &o]);
        if let Some(f) = grain {
            args.extend(["--grain-in-hq", f]);
        }
        dxr(&args);
    }
    let (plain, grain, half) = (
        PairSet::load(&dir.path("plain")).unwrap(),
        PairSet::load(&dir.path("grain")).unwrap(),
        PairSet::load(&dir.path("half")).unwrap(),
    );
    for k in 0..3 {
        assert_eq!(plain.lq[k].data, grain.lq[k].data, "the LQ does not change");
        // mean absolute difference of an HQ crop from the plain one
        let mad_of = |set: &PairSet| {
            plain.hq[k]
                .data
                .iter()
                .zip(&set.hq[k].data)
                .map(|(a, b)| (a - b).abs() as f64)
                .sum::<f64>()
                / plain.hq[k].data.len() as f64
        };
        let mad = mad_of(&grain);
        // E|N(0, 0.05)| = 0.04; clamping at black/white and 16-bit rounding take a little off
        assert!((0.01..0.045).contains(&mad), "HQ grain {mad}");
        // half the draw: half the deviation (clamping aside)
        let mad_half = mad_of(&half);
        assert!(
            (mad_half / mad - 0.5).abs() < 0.1,
            "{mad_half} against {mad}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
        .args([
            "pairs",
            "--method",
            "bicubic",
            "--grain-in-hq",
            "--hq",
            &p("real.png"),
        ])
        .args(["--out", &p("p3")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--grain-in-hq needs --method drr"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
        .args(["pairs", "--method", "drr", "--weights", &p("noisy.json")])
        .args([
            "--grain-in-hq",
            "1.5",
            "--hq",
            &p("real.png"),
            "--out",
            &p("p4"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a fraction between 0 and 1, got 1.5"));
    assert!(!dir.path("p4").exists());
    // --mottle: the LQ alone changes (smooth noise on top of the same degradation); the HQ
    // stays the plain pairs' HQ; out-of-range or with another method, refused by name
    dxr(&[
        "pairs",
        "--method",
        "drr",
        "--count",
        "3",
        "--size",
        "32",
        "--seed",
        "4",
        "--weights",
        &p("noisy.json"),
        "--hq",
        &p("real.png"),
        "--out",
        &p("mottled"),
        "--mottle",
        "0.03",
        "--mottle-px",
        "1.5",
    ]);
    // --flatten: the LQ alone loses local contrast (its spread about its own local mean falls;
    // less than the share asked, since the blur after it has already taken the finest scales,
    // where the flattening is whole); without the look's noise, which would hide it
    look["noise"] = serde_json::json!(0.0);
    std::fs::write(dir.path("quiet.json"), look.to_string()).unwrap();
    for (out, flatten) in [
        ("quiet", None),
        ("flat", Some(["--flatten", "0.8", "--flatten-px", "8"])),
    ] {
        let mut args = vec!["pairs", "--method", "drr", "--count", "3", "--size", "32"];
        let (w, h, o) = (p("quiet.json"), p("real.png"), p(out));
        args.extend(["--weights", &w, "--hq", &h, "--out", &o]);
        args.extend(flatten.iter().flatten());
        dxr(&args);
    }
    let (quiet, flat) = (
        PairSet::load(&dir.path("quiet")).unwrap(),
        PairSet::load(&dir.path("flat")).unwrap(),
    );
    let spread = |g: &GrayImage| {
        let local = dxr::eval::realism::gaussian_blur(g, 4.0);
        (g.data
            .iter()
            .zip(&local.data)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / g.data.len() as f64)
            .sqrt()
    };
    for k in 0..3 {
        assert_eq!(flat.hq[k].data, quiet.hq[k].data, "the HQ is not flattened");
        assert!(
            spread(&flat.lq[k]) < 0.75 * spread(&quiet.lq[k]),
            "LQ {k}: {} against {}",
            spread(&flat.lq[k]),
            spread(&quiet.lq[k])
        );
    }
    let mottled = PairSet::load(&dir.path("mottled")).unwrap();
    for k in 0..3 {
        assert_eq!(
            mottled.hq[k].data, plain.hq[k].data,
            "the HQ gets no mottle"
        );
        let moved = mottled.lq[k]
            .data
            .iter()
            .zip(&plain.lq[k].data)
            .filter(|(a, b)| (*a - *b).abs() > 1e-3)
            .count();
        assert!(
            moved > mottled.lq[k].data.len() / 4,
            "LQ {k}: {moved} pixels moved"
        );
    }
    for (args, needle) in [
        (
            ["--method", "drr", "--mottle", "0.9"],
            "--mottle 0.9: out of range",
        ),
        (
            ["--method", "bicubic", "--mottle", "0.01"],
            "--mottle needs --method drr",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
            .arg("pairs")
            .args(args)
            .args([
                "--weights",
                &p("noisy.json"),
                "--hq",
                &p("real.png"),
                "--out",
                &p("p5"),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
        assert!(!dir.path("p5").exists());
    }
    dxr(&[
        "filter",
        "--filter",
        &p("filter.json"),
        &p("set/png16"),
        "-o",
        &p("filtered"),
    ]);
    assert!(dir.path("filtered/00000.png").is_file());
    // --tone-of: each DRR takes its restoration's histogram (here the filter's output) and keeps
    // its own order of grey levels; a DRR with no restoration of its name is refused, and
    // nothing is written
    dxr(&[
        "filter",
        "--tone-of",
        &p("filtered"),
        &p("set/png16"),
        "-o",
        &p("toned"),
    ]);
    let drr = dxr::io::read(&dir.path("set/png16/00000.png")).unwrap();
    let like = dxr::io::read(&dir.path("filtered/00000.png")).unwrap();
    let toned = dxr::io::read(&dir.path("toned/00000.png")).unwrap();
    let sorted = |g: &GrayImage| {
        let mut v = g.data.clone();
        v.sort_by(f32::total_cmp);
        v
    };
    let (a, b) = (sorted(&toned), sorted(&like));
    let gap = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
    assert!(gap < 0.01, "histogram gap {gap}");
    assert!(
        (0..drr.data.len())
            .zip(1..drr.data.len())
            .all(|(i, j)| (drr.data[i] < drr.data[j]) <= (toned.data[i] <= toned.data[j])),
        "the order of grey levels is kept"
    );
    assert_ne!(toned.data, drr.data);
    std::fs::create_dir_all(dir.path("partial")).unwrap();
    std::fs::copy(
        dir.path("filtered/00000.png"),
        dir.path("partial/00000.png"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
        .args([
            "filter",
            "--tone-of",
            &p("partial"),
            &p("set/png16"),
            "-o",
            &p("t2"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no image named 00001"));
    assert!(!dir.path("t2").exists());
    // a restoration of another size: refused by name, and what was written before it is
    // taken back
    std::fs::create_dir_all(dir.path("odd")).unwrap();
    for e in std::fs::read_dir(dir.path("filtered")).unwrap() {
        let e = e.unwrap().path();
        std::fs::copy(&e, dir.path("odd").join(e.file_name().unwrap())).unwrap();
    }
    write_png(&dir.path("odd/00001.png"), &blobs(5, 40, 40));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
        .args([
            "filter",
            "--tone-of",
            &p("odd"),
            &p("set/png16"),
            "-o",
            &p("t3"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("00001") && err.contains("one size"), "{err}");
    assert!(!dir.path("t3").exists(), "a half-done folder was left");
    // a file that is not a fitted look is refused by name
    std::fs::write(dir.path("junk.json"), "{}").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
        .args([
            "pairs",
            "--method",
            "drr",
            "--weights",
            &p("junk.json"),
            "--hq",
            &p("real.png"),
            "--out",
            &p("p2"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a fitted DRR look"));
}

#[test]
fn sheet_command_tiles_folders_by_name_and_draws_the_nodule_boxes() {
    let dir = Scratch::new("sheet");
    fake_drr_set(&dir);
    // a second column at twice the size, as a restoration of other size would be
    for k in 0..2 {
        write_png(
            &dir.path(&format!("big/{k:05}.png")),
            &blobs(k as u64, 128, 128),
        );
    }
    let p = |s: &str| dir.path(s).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
            .arg("sheet")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        &p("set/png16"),
        &p("big"),
        "--labels",
        &p("set"),
        "--thumb",
        "32",
        "-o",
        &p("s.png"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sheet = image::open(dir.path("s.png")).unwrap().to_rgb8();
    // 2 rows × 2 columns of 32² cells with 4-px gaps
    assert_eq!((sheet.width(), sheet.height()), (76, 76));
    // the disk's box [24,28,36,40] of 64 px → [12,14,18,20] in a 32-px cell, grown by a pixel:
    // its left edge at x = 4 + 11 in the first column and 40 + 11 in the second (label scaled)
    for x0 in [4, 40] {
        assert_eq!(
            *sheet.get_pixel(x0 + 11, 4 + 16),
            image::Rgb([255, 40, 40]),
            "cell at x {x0}"
        );
    }
    // a close-up: the right half of every image, at its own pixels (64² → 32×64, 128² → 64×128
    // scaled to the first cell's 32×64); the box moves with the crop
    let out = run(&[
        &p("set/png16"),
        &p("big"),
        "--labels",
        &p("set"),
        "--crop",
        "0.25,0,0.75,1",
        "-o",
        &p("c.png"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let close = image::open(dir.path("c.png")).unwrap().to_rgb8();
    assert_eq!(
        (close.width(), close.height()),
        (4 + 32 + 4 + 32 + 4, 4 + 64 + 4 + 64 + 4)
    );
    // the box [24,28,36,40] less the crop's 16 px → its left edge at x = 8 - 1 in the cell
    assert_eq!(*close.get_pixel(4 + 7, 4 + 34), image::Rgb([255, 40, 40]));
    for bad in ["0.25,0,0.75", "0.8,0,0.2,1"] {
        let out = run(&[&p("set/png16"), "--crop", bad, "-o", &p("bad.png")]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("crop"));
        assert!(!dir.path("bad.png").exists());
    }
    // a folder without one of the names is refused by name, and nothing is written
    std::fs::remove_file(dir.path("big/00001.png")).unwrap();
    let out = run(&[&p("set/png16"), &p("big"), "-o", &p("t.png")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no image named 00001"));
    assert!(!dir.path("t.png").exists());
}

#[test]
fn training_on_flex_follows_ndarray_and_repeats_itself() {
    let dir = Scratch::new("train-flex");
    pair_set(&dir.path("pairs"));
    let flex = "flex"
        .parse::<dxr::device::DeviceChoice>()
        .and_then(dxr::device::open)
        .unwrap();
    // both families: on flex every convolution of either UNet trains through im2col
    // (src/model/conv.rs), the stride-2 down-sampling included; ndarray runs burn's own op
    for preset in ["tiny", "sr3-small"] {
        let make = |device: &Device| {
            let set = PairSet::load(&dir.path("pairs")).unwrap();
            let settings = DdpmSettings {
                spec: train::preset(preset, 2).unwrap(),
                ..settings(2)
            };
            DdpmTrainer::new(settings, DdpmData::Pairs(set), DdpmVal::None, device).unwrap()
        };
        use dxr::train::Trainer;
        let mut cpu = make(&dxr::device::cpu());
        let mut state = StateFile::default();
        cpu.save(&mut state).unwrap();
        let (mut f1, mut f2) = (make(&flex), make(&flex));
        f1.load(&state).unwrap();
        f2.load(&state).unwrap();
        for step in 0..4 {
            let (a, b, c) = (
                cpu.step(step).unwrap(),
                f1.step(step).unwrap(),
                f2.step(step).unwrap(),
            );
            println!("{preset} step {step}: ndarray {a:.6}, flex {b:.6}");
            assert!(
                (a - b).abs() < 1e-4 * a.abs().max(1.0),
                "{preset} step {step}: {a} vs {b}"
            );
            assert_eq!(
                b, c,
                "flex training is not repeatable ({preset}, step {step})"
            );
        }
    }
}

/// `dxr train ddpm-hq` on the tiny config in `out`, to `steps`, saving every 3 steps.
fn tiny_train(pairs: &str, out: &str, steps: u64, resume: bool) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"));
    c.args([
        "train", "ddpm-hq", "--config", "tiny", "--patch", "16", "--batch", "2",
    ])
    .args([
        "--save-every",
        "3",
        "--seed",
        "3",
        "--steps",
        &steps.to_string(),
    ])
    .args(["--pairs", pairs, "--out", out])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    if resume {
        c.arg("--resume");
    }
    c
}

/// (step, loss) of every row of a run's log.csv.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("log.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            (
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_run_killed_at_random_moments_resumes_from_its_last_save_with_the_same_curve() {
    let dir = Scratch::new("train-sigkill");
    pair_set(&dir.path("pairs"));
    let pairs = dir.path("pairs").to_str().unwrap().to_string();
    let (reference, killed) = (dir.path("ref"), dir.path("killed"));
    const STEPS: u64 = 120;
    let t0 = std::time::Instant::now();
    let ok = tiny_train(&pairs, reference.to_str().unwrap(), STEPS, false)
        .status()
        .unwrap();
    assert!(ok.success());
    // lives drawn up to a twentieth of a whole run: kills land in start-up, steps and saves
    let whole = t0.elapsed().as_secs_f64();
    let state = killed.join("state.safetensors");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let (mut kills, mut last_step) = (0, 0u64);
    while kills < 24 {
        let mut child = tiny_train(&pairs, killed.to_str().unwrap(), STEPS, state.exists())
            .spawn()
            .unwrap();
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let life = whole / 20.0 * ((rng >> 11) as f64 / (1u64 << 53) as f64);
        std::thread::sleep(std::time::Duration::from_secs_f64(life));
        if child.try_wait().unwrap().is_some() {
            break; // finished before its kill
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        // whatever the moment, what is on disk is a complete state (or none yet), never older
        // than the last one seen, and an exported model that reads
        if state.exists() {
            let file = StateFile::read(&state).unwrap();
            let meta: serde_json::Value = serde_json::from_str(&file.meta["dxr_train"]).unwrap();
            let step = meta["step"].as_u64().unwrap();
            assert!(
                step >= last_step,
                "state went back from {last_step} to {step}"
            );
            last_step = step;
            let rows = losses(&killed);
            assert!(
                rows.len() as u64 >= step,
                "the log lags its state: {} < {step}",
                rows.len()
            );
            let model = std::fs::read(killed.join("model.safetensors")).unwrap();
            dxr::checkpoint::load_bytes(&model, None, &dxr::device::cpu()).unwrap();
        }
    }
    println!(
        "{kills} kills (lives up to {:.2} s of a {whole:.2} s run), last saved step {last_step}",
        whole / 20.0
    );
    assert!(kills >= 20, "only {kills} kills before the run ended");
    let ok = tiny_train(&pairs, killed.to_str().unwrap(), STEPS, state.exists())
        .status()
        .unwrap();
    assert!(ok.success());
    let (a, b) = (losses(&reference), losses(&killed));
    assert_eq!(a.len() as u64, STEPS);
    assert_eq!(
        a.iter().map(|r| r.0).collect::<Vec<_>>(),
        b.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    for ((step, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 1e-6 * x.abs().max(1e-3),
            "step {step}: {x} vs {y}"
        );
    }
}

#[test]
fn two_wgpu_devices_take_the_same_steps_as_one_with_the_whole_batch_and_resume_on_either() {
    use dxr::train::Trainer;
    // two logical devices on one adapter (in CI: the CPU's Vulkan driver); the first alone is
    // the one-device run
    let two = dxr::device::open_devices("wgpu:0,wgpu:1").unwrap();
    assert!(two.len() == 2 && two[0] != two[1]);
    let one = two[0].clone();
    let dir = Scratch::new("train-ddp");
    pair_set(&dir.path("pairs"));
    // batch 3: an uneven split (2 + 1), so the slices' weights matter
    let make = |devices: &[Device]| {
        let set = PairSet::load(&dir.path("pairs")).unwrap();
        let s = DdpmSettings {
            batch: 3,
            ..settings(2)
        };
        let mut t = DdpmTrainer::new(s, DdpmData::Pairs(set), DdpmVal::None, &devices[0]).unwrap();
        t.data_parallel(devices.to_vec()).unwrap();
        t
    };
    // 1. from the same state: the loss of the whole batch and every parameter's gradient, then
    //    the losses of the following steps (the weights follow)
    let mut single = make(std::slice::from_ref(&one));
    let mut parallel = make(&two);
    let mut state = StateFile::default();
    single.save(&mut state).unwrap();
    parallel.load(&state).unwrap();
    let flat = |t: &DdpmTrainer, g: &GradientsParams| -> Vec<Vec<f32>> {
        grads_in_order(t.network(), g)
            .into_iter()
            .map(|g| {
                g.unwrap()
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .unwrap()
            })
            .collect()
    };
    let (la, ga) = single.loss_and_grads(0).unwrap();
    let (lb, gb) = parallel.loss_and_grads(0).unwrap();
    let (ga, gb) = (flat(&single, &ga), flat(&parallel, &gb));
    let largest = ga.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let gap = ga
        .iter()
        .zip(&gb)
        .flat_map(|(p, q)| p.iter().zip(q).map(|(u, v)| (u - v).abs()))
        .fold(0f32, f32::max);
    println!(
        "loss {la:.7} vs {lb:.7}; gradients differ by at most {gap:.2e} (largest {largest:.2e})"
    );
    assert!((la - lb).abs() < 1e-5 * la.abs().max(1.0), "{la} vs {lb}");
    assert!(
        largest > 1e-3 && gap < 1e-4 * largest,
        "gradients differ by {gap} ({largest})"
    );
    for step in 0..4 {
        let (a, b) = (single.step(step).unwrap(), parallel.step(step).unwrap());
        println!("step {step}: one device {a:.7}, two devices {b:.7}");
        assert!(
            (a - b).abs() < 1e-5 * a.abs().max(1.0),
            "step {step}: {a} vs {b}"
        );
    }

    // 2. a run resumes across device counts with the curve of an uninterrupted one
    let curve = |first: &[Device], then: &[Device], name: &str| {
        let out = dir.path(name);
        let mut t = make(first);
        train::run(&mut t, &opts(&out, 3, false), &mut |_| true).unwrap();
        let mut t = make(then);
        train::run(&mut t, &opts(&out, 6, true), &mut |_| true).unwrap();
        losses(&out)
    };
    let whole = {
        let out = dir.path("whole");
        let mut t = make(std::slice::from_ref(&one));
        train::run(&mut t, &opts(&out, 6, false), &mut |_| true).unwrap();
        losses(&out)
    };
    for (name, got) in [
        ("2→1", curve(&two, &two[..1], "two-then-one")),
        ("1→2", curve(&two[..1], &two, "one-then-two")),
    ] {
        assert_eq!(got.len(), whole.len(), "{name}");
        for ((s, a), (_, b)) in whole.iter().zip(&got) {
            assert!(
                (a - b).abs() < 1e-5 * a.abs().max(1.0),
                "{name}, step {s}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn the_devices_and_precision_flags_train_and_name_what_they_refuse() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_dxr"))
        .args(["train", "ddpm-hq", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--devices <DEVICES>",
        "wgpu:0,wgpu:1",
        "--precision <PRECISION>",
        "bf16",
    ] {
        assert!(
            help.contains(flag),
            "`dxr train ddpm-hq --help` lacks {flag}:\n{help}"
        );
    }
    let dir = Scratch::new("train-devices-cli");
    pair_set(&dir.path("pairs"));
    let (pairs, out) = (dir.path("pairs"), dir.path("run"));
    let (pairs, out) = (pairs.to_str().unwrap(), out.to_str().unwrap());
    let ok = tiny_train(pairs, out, 2, false)
        .args(["--devices", "wgpu:0, gpu:1"])
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(losses(&dir.path("run")).len(), 2);
    let refused = |devices: &str, want: &str| {
        let r = tiny_train(pairs, &format!("{out}-bad"), 1, false)
            .args(["--devices", devices])
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            !r.status.success() && err.contains(want),
            "{devices}: {err}"
        );
        assert!(!dir.path("run-bad").join("state.safetensors").exists());
    };
    refused("wgpu:0,wgpu:99", "wgpu:99: this machine has");
    refused("wgpu:0,gpu:0", "'gpu:0' is the same device as 'wgpu:0'");
    refused("flex:1", "flex is one device per process");
    refused("wgpu:x", "must be a number");
    refused("wgpu:0,,wgpu:1", "empty entry");
    // mixed precision: an unknown type, and one the device cannot compute in
    for (args, want) in [
        (["--precision", "f8"], "unknown precision 'f8'"),
        (["--precision", "f16"], "has no F16 arithmetic"),
    ] {
        let r = tiny_train(pairs, &format!("{out}-bad"), 1, false)
            .args(args)
            .args(["--device", "ndarray"])
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.contains(want), "{args:?}: {err}");
    }
    // --batch 2 over 3 devices: one would get nothing
    let r = tiny_train(pairs, &format!("{out}-bad"), 1, false)
        .args(["--devices", "flex,wgpu:0,wgpu:1"])
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("--batch 2 is smaller than the 3 devices"),
        "{err}"
    );
}

#[test]
fn mixed_precision_follows_f32_training_with_f32_master_weights() {
    use dxr::train::Trainer;
    use dxr::train::precision::Precision;
    let Ok(gpu) = dxr::device::gpu() else {
        panic!("a wgpu adapter (Mesa's llvmpipe Vulkan from scripts/setup.sh is enough)");
    };
    let dir = Scratch::new("train-amp");
    pair_set(&dir.path("pairs"));
    let make = |precision: Precision| {
        let set = PairSet::load(&dir.path("pairs")).unwrap();
        let s = DdpmSettings {
            precision,
            ..settings(2)
        };
        DdpmTrainer::new(s, DdpmData::Pairs(set), DdpmVal::None, &gpu).unwrap()
    };
    let steps = 30;
    let run = |precision: Precision| -> Option<(Vec<f64>, DdpmTrainer)> {
        if !gpu.supports_dtype(precision.dtype()) {
            println!("{precision:?}: this adapter has no such arithmetic; skipped");
            return None;
        }
        let mut t = make(precision);
        let losses = (0..steps).map(|s| t.step(s).unwrap()).collect();
        Some((losses, t))
    };
    let (full, _) = run(Precision::F32).unwrap();
    let mut compared = 0;
    for precision in [Precision::F16, Precision::Bf16] {
        let Some((half, t)) = run(precision) else {
            continue;
        };
        compared += 1;
        let rel: Vec<f64> = full
            .iter()
            .zip(&half)
            .map(|(a, b)| (a - b).abs() / a.abs())
            .collect();
        let worst = rel.iter().cloned().fold(0.0, f64::max);
        println!(
            "{precision:?}: mean relative loss gap {:.4}, worst {worst:.4}; f32 {:.4} → {:.4}, half {:.4} → {:.4}",
            mean(&rel),
            full[0],
            full[steps as usize - 1],
            half[0],
            half[steps as usize - 1]
        );
        // the tolerance: 2 % per step on average, 10 % at worst, and the same learning
        assert!(mean(&rel) < 0.02 && worst < 0.10, "{precision:?}: {rel:?}");
        assert!(
            rel.iter().any(|&r| r > 0.0),
            "{precision:?} gave f32's losses bit for bit"
        );
        let (first, last) = (mean(&half[..5]), mean(&half[steps as usize - 5..]));
        assert!(
            last < 0.9 * first,
            "{precision:?} did not learn: {first} → {last}"
        );
        // the master weights (what is saved and exported) stay f32
        assert!(
            params(&t.ema_network().unwrap())
                .iter()
                .all(|p| p.dtype() == burn::tensor::DType::F32)
        );
    }
    assert!(compared > 0, "the wgpu adapter has neither f16 nor bf16");
}
