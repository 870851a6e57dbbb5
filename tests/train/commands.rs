//! The training commands end to end: chained runs, refusals of mixed-up runs, Ctrl-C and kills.

use super::*;

#[test]
fn the_commands_chain_and_refuse_mixed_up_runs() {
    let dir = Scratch::new("train-cli");
    write_png(&dir.path("cxr.png"), &blobs(60, 96, 48));
    let dxr = common::cli::dxr;
    let ok = common::cli::ok;
    let p = |s: &str| dir.path(s).to_str().unwrap().to_string();
    // bicubic pairs of 32² crops of the radiograph
    let pairs = |out: &str, count: &str, extra: &[&str]| {
        let (hq, out) = (p("cxr.png"), p(out));
        let mut args = vec!["pairs", "--method", "bicubic", "--hq", &hq, "--out", &out];
        args.extend(["--count", count, "--size", "32"]);
        args.extend(extra);
        ok(dxr(&args))
    };
    pairs("pairs", "4", &[]);
    pairs("val", "2", &["--region", "heldout"]);
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
    let child = common::cli::command()
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
    let out = common::cli::command()
        .args(args(&target, true))
        .output()
        .unwrap();
    common::cli::assert_ok(&out);
    assert_eq!(
        std::fs::read_to_string(dir.path("run/log.csv"))
            .unwrap()
            .lines()
            .count() as u64,
        step + 3
    );
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
