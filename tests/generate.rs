//! The dataset factory (`dxr generate`, `dxr merge`) end to end on a set of CTs the test makes:
//! the torso phantom on three grids (as is, resampled, stored flipped with the affine saying so)
//! and as a DICOM series; with the example CT (`scripts/fetch-data.sh ct`) also on it.
//! Determinism over runs, shards and threads; resume after SIGKILL; restoration equal to
//! `dxr restore`; the label formats agreeing with each other; bad manifests named.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::Scratch;
use common::cli::{dxr, ok, s};
use common::phantom::torso_on;
use dxr::drr::nifti::nifti_bytes;

/// Every file under `dir`, by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "{} and {} hold different files",
        a.display(),
        b.display()
    );
    for (k, v) in &ta {
        assert!(
            v == &tb[k],
            "{k} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// The torso sampled on a grid (see `torso_on`) written as `NAME.nii` and its mask as `MASK`.
fn write_torso(
    dir: &Scratch,
    name: &str,
    mask: &str,
    dims: [usize; 3],
    spacing: [f64; 3],
    flip: bool,
) {
    let (ct, labels) = torso_on(dims, spacing, flip);
    dir.write(&format!("{name}.nii"), &nifti_bytes(&ct));
    dir.write(mask, &nifti_bytes(&labels));
}

/// The test torso's grid (voxels, mm) and a coarser resampling of it.
const TORSO: ([usize; 3], [f64; 3]) = ([90, 70, 48], [2.0, 2.0, 3.0]);
const COARSE: ([usize; 3], [f64; 3]) = ([60, 47, 36], [3.0, 3.0, 4.0]);

/// A scratch folder for `test` with three CTs (the torso as is, resampled coarser, stored
/// flipped) and their masks, and the manifest that lists them.
fn three_cts(test: &str) -> (Scratch, PathBuf) {
    let dir = Scratch::new(test);
    let mut lines = Vec::new();
    for (id, (dims, spacing), flip) in [
        ("torso", TORSO, false),
        ("coarse", COARSE, false),
        ("flipped", TORSO, true),
    ] {
        write_torso(&dir, id, &format!("{id}-mask.nii"), dims, spacing, flip);
        lines.push(format!(
            r#"{{"id": "{id}", "ct": "{id}.nii", "mask": "{id}-mask.nii"}}"#
        ));
    }
    let manifest = dir.write("cts.jsonl", lines.join("\n").as_bytes());
    (dir, manifest)
}

const SMALL: &[&str] = &[
    "--size",
    "64",
    "--detector-mm",
    "260",
    "--nodule-radius",
    "4:9",
    "--seed",
    "5",
    "--validation",
    "0.34",
    "--device",
    "cpu",
];

fn generate_args(manifest: &Path, out: &Path, views: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "generate",
        "--cts",
        &s(manifest),
        "--out",
        &s(out),
        "--views",
        views,
    ]
    .map(String::from)
    .to_vec();
    args.extend(SMALL.iter().chain(extra).map(|a| a.to_string()));
    if !extra.contains(&"--nodules") {
        args.extend(["--nodules".to_string(), "2".to_string()]);
    }
    args
}

fn generate(manifest: &Path, out: &Path, views: &str, extra: &[&str]) -> Output {
    let args = generate_args(manifest, out, views, extra);
    dxr(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `dxr generate` of a manifest with the example CT: 128² views with 2 nodules on the CPU.
fn generate_example(manifest: &Path, out: &Path, views: &str, extra: &[&str]) -> Output {
    let (manifest, out) = (s(manifest), s(out));
    let mut args = vec![
        "generate", "--cts", &manifest, "--out", &out, "--views", views,
    ];
    args.extend(["--size", "128", "--nodules", "2", "--device", "cpu"]);
    args.extend(extra);
    dxr(&args)
}

fn item(dir: &Path, ct: &str, view: usize) -> serde_json::Value {
    let p = dir.join(format!("items/{ct}/{ct}_{view:05}.json"));
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

#[test]
fn items_are_seeded_per_ct_and_repeat_byte_for_byte_over_runs_shards_and_threads() {
    let (dir, manifest) = three_cts("gen-det");
    let one = dir.path("one");
    ok(generate(&manifest, &one, "3", &["--threads", "1"]));
    // two CTs with equal settings: different poses and nodules, view for view
    for v in 0..3 {
        let (a, b) = (item(&one, "torso", v), item(&one, "flipped", v));
        assert_ne!(a["pose"], b["pose"], "view {v}: same pose for two CTs");
        assert_ne!(a["seed"], b["seed"]);
        assert_ne!(a["nodules"][0]["centre_mm"], b["nodules"][0]["centre_mm"]);
    }
    // the same item twice, another thread count
    let again = dir.path("again");
    ok(generate(&manifest, &again, "3", &["--threads", "2"]));
    assert_same_tree(&one, &again);
    // in two shards, merged
    let (s0, s1, merged) = (dir.path("s0"), dir.path("s1"), dir.path("merged"));
    ok(generate(
        &manifest,
        &s0,
        "3",
        &["--shard", "0/2", "--threads", "2"],
    ));
    ok(generate(
        &manifest,
        &s1,
        "3",
        &["--shard", "1/2", "--threads", "1"],
    ));
    let m = ok(dxr(&["merge", &s(&s1), &s(&s0), "-o", &s(&merged)]));
    assert!(String::from_utf8_lossy(&m.stdout).contains("9 journal entries"));
    assert_same_tree(&one, &merged);
    ok(dxr(&["generate", "--verify", &s(&merged)]));
    // a shard of other settings, a missing shard, a shard twice: refused by name
    let other = dir.path("other");
    ok(generate(&manifest, &other, "2", &["--shard", "1/2"]));
    let e = dxr(&["merge", &s(&s0), &s(&other), "-o", &s(&dir.path("m2"))]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(
        !e.status.success() && msg.contains("render.views: 3 → 2"),
        "{msg}"
    );
    let e = dxr(&["merge", &s(&s0), "-o", &s(&dir.path("m3"))]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("shard 1/2 is missing"));
    let e = dxr(&["merge", &s(&s0), &s(&s0), "-o", &s(&dir.path("m4"))]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("are both shard 0/2"));
    assert!(!dir.path("m2").exists() && !dir.path("m3").exists());
}

#[test]
fn a_killed_run_resumes_to_the_dataset_an_uninterrupted_run_makes() {
    let (dir, manifest) = three_cts("gen-kill");
    let whole = dir.path("whole");
    // restoration makes each item take long enough to be killed in the middle of one
    let restore = ["--restore", "--threads", "2"];
    ok(generate(&manifest, &whole, "3", &restore));
    ok(dxr(&["generate", "--verify", &s(&whole)]));
    for k in [1, 4] {
        let out = dir.path(&format!("killed-{k}"));
        let args = generate_args(&manifest, &out, "3", &restore);
        let mut child = common::cli::command()
            .args(&args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let journal = out.join("journal.jsonl");
        let lines = || {
            std::fs::read_to_string(&journal)
                .map(|t| t.matches('\n').count())
                .unwrap_or(0)
        };
        while lines() < k {
            assert!(
                child.try_wait().unwrap().is_none(),
                "finished before the kill"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let done = lines();
        assert!(done < 9, "k = {k}: nothing left to resume ({done} done)");
        // unfinished: --verify says so, and no set file claims the dataset is whole
        let v = dxr(&["generate", "--verify", &s(&out)]);
        assert!(!v.status.success(), "k = {k}");
        assert!(String::from_utf8_lossy(&v.stderr).contains("not made yet"));
        assert!(!out.join("coco.json").exists() && !out.join("README.md").exists());
        // a kill during the journal's append, and a stale file of the next item: both redone
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        std::io::Write::write_all(&mut f, br#"{"item": "cut-sh"#).unwrap();
        drop(f);
        let (t, have) = (tree(&whole), tree(&out));
        let next = t
            .keys()
            .find(|k| k.starts_with("images/") && !have.contains_key(*k));
        if let Some(n) = next {
            std::fs::create_dir_all(out.join(n).parent().unwrap()).unwrap();
            std::fs::write(out.join(n), b"half an item").unwrap();
        }
        let r = ok(generate(&manifest, &out, "3", &restore));
        let said = String::from_utf8_lossy(&r.stderr).to_string();
        assert!(said.contains(&format!("{done} already done")), "{said}");
        assert_same_tree(&whole, &out);
        ok(dxr(&["generate", "--verify", &s(&out)]));
    }
    // a changed file is named by --verify
    let img = whole.join("images/coarse/coarse_00001.png");
    std::fs::write(&img, b"changed").unwrap();
    let v = dxr(&["generate", "--verify", &s(&whole)]);
    let said = String::from_utf8_lossy(&v.stdout);
    assert!(
        !v.status.success() && said.contains("images/coarse/coarse_00001.png: content differs"),
        "{said}"
    );
    // other settings on an existing dataset are refused by name, and nothing is written
    let before = tree(&whole);
    let e = generate(&manifest, &whole, "3", &["--restore", "--nodules", "3"]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(
        !e.status.success() && msg.contains("render.nodules: 2 → 3"),
        "{msg}"
    );
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        tree(&whole).keys().collect::<Vec<_>>()
    );
}

/// The example CT's manifest line, when it was fetched (`scripts/fetch-data.sh ct`).
fn example_ct_line(id: &str) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ct");
    let (ct, mask) = (root.join("cxr.nii.gz"), root.join("mask.nii.gz"));
    if !ct.is_file() {
        assert!(
            std::env::var_os("DXR_REQUIRE_DATA").is_none(),
            "DXR_REQUIRE_DATA is set but {} is missing: run scripts/fetch-data.sh ct",
            ct.display()
        );
        println!("example CT not fetched (scripts/fetch-data.sh ct): its part did not run");
        return None;
    }
    Some(format!(
        "{{\"id\": \"{id}\", \"ct\": \"{}\", \"mask\": \"{}\"}}",
        s(&ct),
        s(&mask)
    ))
}

/// Each restored item equals `dxr restore` of its DRR with its seed, though items are restored
/// in batches (views whose estimated scale differs go in different batches).
fn assert_restorations_match_the_cli(dir: &Scratch, out: &Path, ct: &str, views: usize) {
    for v in 0..views {
        let label = item(out, ct, v);
        let seed = label["seed"].as_u64().unwrap().to_string();
        let mm = label["pixel_mm"].as_f64().unwrap().to_string();
        let drr = out.join(label["drr"].as_str().unwrap());
        let by_hand = dir.path(&format!("by-hand-{ct}-{v}"));
        ok(dxr(&[
            "restore",
            &s(&drr),
            "-o",
            &s(&by_hand),
            "--seed",
            &seed,
            "--pixel-mm",
            &mm,
        ]));
        let a = std::fs::read(out.join(label["image"].as_str().unwrap())).unwrap();
        let b = std::fs::read(by_hand.join(drr.file_name().unwrap())).unwrap();
        assert!(
            a == b,
            "{ct} view {v}: the dataset's restoration differs from dxr restore's"
        );
        assert_ne!(
            a,
            std::fs::read(&drr).unwrap(),
            "restoration changed nothing"
        );
    }
}

#[test]
fn restored_items_equal_dxr_restore_of_their_drr_with_their_seed() {
    let dir = Scratch::new("gen-restore");
    write_torso(&dir, "t", "t_mask.nii", TORSO.0, TORSO.1, false);
    let out = dir.path("set");
    // a folder is a manifest: t.nii with its mask t_mask.nii
    let dry = ok(generate(&dir.0, &out, "2", &["--dry-run"]));
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(
        said.contains("| t |")
            && said.contains("t_mask.nii")
            && said.contains("1 CT(s), 2 item(s)"),
        "{said}"
    );
    assert!(!out.exists(), "--dry-run wrote {}", out.display());
    ok(generate(&dir.0, &out, "2", &["--restore"]));
    assert_restorations_match_the_cli(&dir, &out, "t", 2);
    // the example CT: real anatomy, whose views the scale estimate tells apart
    if let Some(line) = example_ct_line("ex") {
        let m = dir.write("ex.jsonl", line.as_bytes());
        let out = dir.path("ex-set");
        ok(generate_example(&m, &out, "3", &["--restore"]));
        assert_restorations_match_the_cli(&dir, &out, "ex", 3);
    }
}

#[test]
fn coco_monai_and_yolo_say_the_same_and_the_split_is_by_ct() {
    let (dir, manifest) = three_cts("gen-labels");
    let out = dir.path("set");
    ok(generate(&manifest, &out, "4", &["--nodules", "3"]));
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(f)).unwrap()).unwrap()
    };
    let (coco, monai, split) = (read("coco.json"), read("monai.json"), read("split.json"));
    // COCO boxes per image
    let mut by_image: BTreeMap<String, Vec<[f64; 4]>> = BTreeMap::new();
    let images = coco["images"].as_array().unwrap();
    assert_eq!(images.len(), 12);
    for a in coco["annotations"].as_array().unwrap() {
        let img = &images[a["image_id"].as_u64().unwrap() as usize - 1];
        let b: Vec<f64> = serde_json::from_value(a["bbox"].clone()).unwrap();
        by_image
            .entry(img["file_name"].as_str().unwrap().into())
            .or_default()
            .push([b[0], b[1], b[0] + b[2], b[1] + b[3]]);
    }
    let boxes: usize = by_image.values().map(Vec::len).sum();
    assert!(boxes >= 12, "only {boxes} boxes for 12 views × 3 nodules");
    // MONAI: its keys, paths relative to the datalist, xyxy boxes equal to COCO's
    let mut monai_images = 0;
    for part in ["training", "validation"] {
        for e in monai[part].as_array().unwrap() {
            monai_images += 1;
            let image = e["image"].as_str().unwrap();
            assert!(out.join(image).is_file() && !Path::new(image).is_absolute());
            let b: Vec<[f64; 4]> = serde_json::from_value(e["box"].clone()).unwrap();
            let labels = e["label"].as_array().unwrap();
            assert_eq!(labels.len(), b.len());
            assert_eq!(&b, by_image.get(image).unwrap_or(&vec![]), "{image}");
        }
    }
    assert_eq!(monai_images, 12);
    // YOLO: normalised centre/size, back to pixels = COCO (to the 6 decimals written)
    for (image, want) in &by_image {
        let txt = out.join(
            image
                .replacen("images/", "labels/", 1)
                .replace(".png", ".txt"),
        );
        let got: Vec<[f64; 4]> = std::fs::read_to_string(&txt)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Vec<f64> = l.split(' ').skip(1).map(|x| x.parse().unwrap()).collect();
                let (cx, cy, w, h) = (v[0] * 64.0, v[1] * 64.0, v[2] * 64.0, v[3] * 64.0);
                [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
            })
            .collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                g.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-3),
                "{image}: {g:?} vs {w:?}"
            );
        }
    }
    // split by CT: none in both, validation not empty, and every image in its CT's part
    let ids = |k: &str| -> Vec<String> { serde_json::from_value(split[k].clone()).unwrap() };
    let (train, val) = (ids("training"), ids("validation"));
    assert_eq!(val.len(), 1, "0.34 of 3 CTs");
    assert!(train.iter().all(|c| !val.contains(c)) && train.len() + val.len() == 3);
    for e in monai["validation"].as_array().unwrap() {
        let ct = e["image"].as_str().unwrap().split('/').nth(1).unwrap();
        assert!(val.iter().any(|v| v == ct));
    }
    let list = std::fs::read_to_string(out.join("yolo-validation.txt")).unwrap();
    assert_eq!(list.lines().count(), 4);
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains("| validation | 1 | 4 |") && card.contains("| training | 2 | 8 |"),
        "{card}"
    );
}

#[test]
fn bad_manifests_are_named_by_line_and_nothing_is_rendered() {
    let dir = Scratch::new("gen-bad");
    write_torso(&dir, "a", "a-mask.nii", TORSO.0, TORSO.1, false);
    let (other, _) = torso_on(COARSE.0, COARSE.1, false);
    dir.write("small.nii", &nifti_bytes(&other));
    dir.write("broken.nii", b"not a NIfTI file at all");
    // a DICOM series one of whose slices is of another size
    ok(dxr(&[
        "ct-to-dicom",
        &s(&dir.path("a.nii")),
        &s(&dir.path("mixed")),
    ]));
    ok(dxr(&[
        "ct-to-dicom",
        &s(&dir.path("small.nii")),
        &s(&dir.path("other")),
    ]));
    std::fs::copy(dir.path("other/IM00001.dcm"), dir.path("mixed/IMX.dcm")).unwrap();
    let manifest = dir.write(
        "m.jsonl",
        [
            r#"{"id": "a", "ct": "a.nii", "mask": "a-mask.nii"}"#,
            r#"{"id": "a", "ct": "a.nii"}"#,
            r#"{"id": "b", "ct": "nowhere.nii"}"#,
            r#"{"id": "c", "ct": "a.nii", "mask": "small.nii"}"#,
            r#"{"id": "d", "ct": "broken.nii"}"#,
            r#"{"id": "e", "ct": "a.nii", "views": 0}"#,
            r#"{"id": "f", "ct": "mixed"}"#,
        ]
        .join("\n")
        .as_bytes(),
    );
    let out = dir.path("set");
    let e = generate(&manifest, &out, "1", &[]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(
        !e.status.success() && msg.contains("6 bad manifest entries"),
        "{msg}"
    );
    for (line, says) in [
        (2, "also given at"),
        (3, "no such file"),
        (4, "[60, 47, 36]"),
        (5, "NIfTI"),
        (6, "views 0"),
        (7, "slices of different sizes"),
    ] {
        assert!(
            msg.contains(&format!("m.jsonl:{line}: ")),
            "line {line} not named: {msg}"
        );
        assert!(msg.contains(says), "{says}: {msg}");
    }
    assert!(!out.exists(), "a bad manifest rendered something");
    // --skip-bad renders the rest and the card lists what was left out
    ok(generate(&manifest, &out, "1", &["--skip-bad"]));
    assert!(out.join("images/a/a_00000.png").is_file());
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains("## Left out") && card.contains("m.jsonl:3"),
        "{card}"
    );
}

/// `vol` resampled by taking every second voxel in x and y, cropped to slices `k0..k1`, and
/// stored with x reversed, the affine saying all of it: the same anatomy in world millimetres.
fn variant(vol: &dxr::drr::Volume, k0: usize, k1: usize) -> dxr::drr::Volume {
    let [nx, ny, _] = vol.dims;
    let dims = [nx / 2, ny / 2, k1 - k0];
    let mut data = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                data.push(vol.data[vol.index(2 * (dims[0] - 1 - i), 2 * j, k + k0)]);
            }
        }
    }
    // new index → old index: i = 2(n − 1 − i'), j = 2j', k = k' + k0
    let m = [
        [-2.0, 0.0, 0.0, 2.0 * (dims[0] as f64 - 1.0)],
        [0.0, 2.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, k0 as f64],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let a = vol.affine;
    let affine =
        std::array::from_fn(|r| std::array::from_fn(|c| (0..4).map(|x| a[r][x] * m[x][c]).sum()));
    dxr::drr::Volume::new(dims, data, affine).unwrap()
}

/// The example CT, its DICOM-series twin (`dxr ct-to-dicom`) and a resampled, cropped and
/// flipped copy in one manifest: NIfTI with masks, a DICOM folder without one. Every nodule
/// lies in its view's lung fields.
#[test]
fn the_example_ct_its_dicom_series_and_a_resampled_flipped_crop_in_one_dataset() {
    let Some(line) = example_ct_line("nifti") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ct");
    let (ct, mask) = (root.join("cxr.nii.gz"), root.join("mask.nii.gz"));
    let dir = Scratch::new("gen-example");
    ok(dxr(&["ct-to-dicom", &s(&ct), &s(&dir.path("series"))]));
    let (vol, labels) = (
        dxr::drr::read_volume(&ct).unwrap(),
        dxr::drr::read_volume(&mask).unwrap(),
    );
    let k = vol.dims[2];
    dir.write(
        "variant.nii",
        &nifti_bytes(&variant(&vol, k / 8, k - k / 8)),
    );
    dir.write(
        "variant-mask.nii",
        &nifti_bytes(&variant(&labels, k / 8, k - k / 8)),
    );
    drop((vol, labels));
    let manifest = dir.write(
        "cts.jsonl",
        format!(
            "{line}\n{{\"id\": \"dicom\", \"ct\": \"series\", \"nodules\": 1}}\n{{\"id\": \"variant\", \"ct\": \"variant.nii\", \"mask\": \"variant-mask.nii\"}}\n"
        )
        .as_bytes(),
    );
    let out = dir.path("set");
    ok(generate_example(&manifest, &out, "2", &[]));
    for (id, nodules) in [("nifti", 2), ("dicom", 1), ("variant", 2)] {
        for v in 0..2 {
            let l = item(&out, id, v);
            let found = l["nodules"].as_array().unwrap();
            assert_eq!(found.len(), nodules, "{id} {v}");
            let lungs = dxr::io::read(&out.join(l["lungs"].as_str().unwrap())).unwrap();
            for n in found {
                let c: [f64; 2] = serde_json::from_value(n["centre_px"].clone()).unwrap();
                let (x, y) = (c[0] as usize, c[1] as usize);
                assert!(
                    lungs.data[y * lungs.width + x] > 0.5,
                    "{id} {v}: a nodule at {c:?} is outside the lungs"
                );
            }
        }
    }
    ok(dxr(&["generate", "--verify", &s(&out)]));
}
