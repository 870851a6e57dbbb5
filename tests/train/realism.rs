//! `dxr realism`: every measure, the nodules, the checks of a restoration against its inputs.

use super::*;

#[test]
fn realism_command_reports_every_measure_and_the_nodules() {
    let dir = Scratch::new("realism");
    fake_drr_set(&dir);
    write_png(&dir.path("real.png"), &blobs(70, 90, 60));
    let p = |s: &str| dir.path(s).to_str().unwrap().to_string();
    let out = common::cli::command()
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
    common::cli::assert_ok(&out);
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
        common::cli::command()
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
    common::cli::assert_ok(&out);
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
        common::cli::command()
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
    let out = common::cli::command()
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
