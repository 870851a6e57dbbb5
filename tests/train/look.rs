//! The DRR look: fitted, made into pairs, and the fixed filter.

use super::*;

#[test]
fn the_drr_look_is_fitted_made_into_pairs_and_the_fixed_filter_runs() {
    let dir = Scratch::new("drr-look");
    fake_drr_set(&dir);
    write_png(&dir.path("real.png"), &blobs(71, 96, 96));
    let p = |s: &str| dir.path(s).to_str().unwrap().to_string();
    let dxr = |args: &[&str]| {
        let out = common::cli::command().args(args).output().unwrap();
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
    let out = common::cli::command()
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
    let out = common::cli::command()
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
    for (args, needle) in [
        (
            ["--method", "drr", "--flatten", "1.5"],
            "--flatten 1.5: out of range",
        ),
        (
            ["--method", "bicubic", "--flatten", "0.2"],
            "--flatten needs --method drr",
        ),
    ] {
        let out = common::cli::command()
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
    let out = common::cli::command()
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
    let out = common::cli::command()
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
    let out = common::cli::command()
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
