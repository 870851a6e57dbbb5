//! DDPM-HQ and DDPM-LQ on tiny data: losses go down, a resumed run equals an uninterrupted one,
//! gradients equal finite differences, SDEdit/ILVR and the bicubic baseline, evaluation = fixtures.

use super::*;

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
    // half the way, 6 steps, with or without ILVR guidance at 4× scale
    let half_way = |ilvr: Option<usize>| {
        let settings = Sdedit {
            strength: 0.5,
            steps: 6,
            ilvr,
            seed: 1,
        };
        sdedit(&model, &schedule, &img, &settings, &device).unwrap()
    };
    let out = half_way(Some(4));
    assert_eq!((out.width, out.height), (30, 22));
    let (a, b) = (block_means(&img, 4), block_means(&out, 4));
    let mean_abs = |p: &[f32], q: &[f32]| {
        p.iter().zip(q).map(|(x, y)| (x - y).abs()).sum::<f32>() / p.len() as f32
    };
    let guided = mean_abs(&a, &b);
    // without guidance the (untrained) model drifts away from the input's layout
    let free = half_way(None);
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
        let out = common::cli::command()
            .args([
                "eval",
                "--restored",
                restored.to_str().unwrap(),
                "--reference",
                reference.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        common::cli::assert_ok(&out);
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
