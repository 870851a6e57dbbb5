//! Training on every backend: wgpu and flex follow the references, several devices, precisions.

use super::*;

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
        let base = settings(2);
        let s = DdpmSettings {
            steps: Steps {
                batch: 3,
                ..base.steps
            },
            ..base
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
                    .try_into_vec::<f32>()
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
    let help = common::cli::command()
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
    common::cli::assert_ok(&ok);
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
