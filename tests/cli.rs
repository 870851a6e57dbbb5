//! `dxr` end to end: restoring PNG and DICOM inputs with a fixture checkpoint, reproducibility,
//! and every bad input exiting non-zero with a message that names the problem and leaving no
//! output file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use dxr::io::dicom::{DicomWriteOptions, write_u16};
use dxr::io::{BitDepth, GrayImage, encode_png};

use common::Scratch;
use common::cli::{dxr, s};

fn case(family: &str, name: &str) -> PathBuf {
    common::fixtures_root().join(family).join(name)
}

fn restore_args<'a>(
    input: &'a str,
    out: &'a str,
    weights: &'a str,
    config: &'a str,
) -> Vec<&'a str> {
    vec![
        "restore",
        input,
        "-o",
        out,
        "--weights",
        weights,
        "--config",
        config,
        "--sampler",
        "ddim",
        "--steps",
        "4",
        "--seed",
        "7",
    ]
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn synthetic(w: usize, h: usize) -> GrayImage {
    GrayImage::from_fn(w, h, |x, _| (x as f32 / w as f32) * 0.8 + 0.1)
}

/// A 24×16 gradient written as `scan.png` in `dir`.
fn write_scan(dir: &Scratch, depth: BitDepth) -> PathBuf {
    dir.write("scan.png", &encode_png(&synthetic(24, 16), depth).unwrap())
}

/// `dxr convert` of the tiny fixture checkpoint to `to`, with `extra` flags.
fn convert_tiny(to: &Path, extra: &[&str]) -> Output {
    let tiny = case("cheff", "tiny");
    let (weights, config) = (s(&tiny.join("weights.pt")), s(&tiny.join("config.json")));
    let mut args = vec!["convert", &weights, &*s(to), "--config", &config]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    args.extend(extra.iter().map(|a| a.to_string()));
    common::cli::command().args(&args).output().unwrap()
}

#[test]
fn restores_png_reproducibly_and_keeps_the_size() {
    let dir = Scratch::new("png");
    let tiny = case("cheff", "tiny");
    // An odd, non-square size: padded to the network's multiple and cropped back.
    let input = dir.write(
        "scan.png",
        &encode_png(&synthetic(37, 22), BitDepth::Eight).unwrap(),
    );
    let (w, c) = (s(&tiny.join("weights.pt")), s(&tiny.join("config.json")));
    let out1 = s(&dir.path("a"));
    let o = dxr(&restore_args(&s(&input), &out1, &w, &c));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let first = std::fs::read(dir.path("a/scan.png")).unwrap();
    let img = dxr::io::decode(&first).unwrap();
    assert_eq!((img.width, img.height), (37, 22));
    assert_eq!(
        files_in(&dir.path("a")),
        vec!["scan.png"],
        "no temporary files remain"
    );

    let out2 = s(&dir.path("b"));
    assert!(
        dxr(&restore_args(&s(&input), &out2, &w, &c))
            .status
            .success()
    );
    assert_eq!(
        first,
        std::fs::read(dir.path("b/scan.png")).unwrap(),
        "same seed, same output"
    );

    let input_s = s(&input);
    let mut other_seed = restore_args(&input_s, &out2, &w, &c);
    let last = other_seed.len() - 1;
    other_seed[last] = "8";
    assert!(dxr(&other_seed).status.success());
    assert_ne!(
        first,
        std::fs::read(dir.path("b/scan.png")).unwrap(),
        "another seed, another output"
    );
}

#[test]
fn restores_a_dicom_folder_with_every_sampler() {
    let dir = Scratch::new("dicom");
    std::fs::create_dir_all(dir.path("in")).unwrap();
    let px: Vec<u16> = (0..32 * 24).map(|i| (i % 4096) as u16).collect();
    dir.write(
        "in/chest.dcm",
        &write_u16(24, 32, &px, "MONOCHROME1", &DicomWriteOptions::default()).unwrap(),
    );
    let small = case("cheff", "small");
    for sampler in ["ddpm", "ddim", "plms", "dpmpp"] {
        let out = dir.path(sampler);
        let o = dxr(&[
            "restore",
            &s(&dir.path("in")),
            "-o",
            &s(&out),
            "--weights",
            &s(&small.join("weights.safetensors")),
            "--config",
            &s(&small.join("config.json")),
            "--sampler",
            sampler,
            "--steps",
            "3",
            "--bits",
            "8",
        ]);
        assert!(
            o.status.success(),
            "{sampler}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let img = dxr::io::decode(&std::fs::read(out.join("chest.png")).unwrap()).unwrap();
        assert_eq!((img.width, img.height), (32, 24));
    }
}

#[test]
fn info_reports_family_and_parameters() {
    let tiny = case("cheff", "tiny");
    let o = dxr(&[
        "info",
        &s(&tiny.join("weights.pt")),
        "--config",
        &s(&tiny.join("config.json")),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains("family:     cheff") && text.contains("parameters: 57317"),
        "{text}"
    );
    let sr3 = case("sr3", "tiny_gray");
    let o = dxr(&[
        "info",
        &s(&sr3.join("weights.pth")),
        "--config",
        &s(&sr3.join("config.json")),
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("family:     sr3"));
}

/// Runs a restore that must fail, and checks the message and that nothing was written.
fn assert_fails(
    dir: &Scratch,
    label: &str,
    input: &Path,
    weights: &Path,
    config: &Path,
    needle: &str,
) {
    let out = dir.path(&format!("out-{label}"));
    let o = dxr(&restore_args(&s(input), &s(&out), &s(weights), &s(config)));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{label}: should fail");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "{label}: message {err:?} should name {needle:?}"
    );
    assert!(
        files_in(&out).is_empty(),
        "{label}: left {:?}",
        files_in(&out)
    );
}

#[test]
fn a_usage_error_exits_with_2_and_other_failures_with_1() {
    let dir = Scratch::new("kinds");
    let input = dir.write(
        "in.png",
        &encode_png(&synthetic(16, 16), BitDepth::Eight).unwrap(),
    );
    // a flag's value: a usage error, named with the flag and the value
    let o = dxr(&[
        "restore",
        &s(&input),
        "-o",
        &s(&dir.path("o1")),
        "--bits",
        "7",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid option: --bits must be 8 or 16, got 7"),
        "{err}"
    );
    // an input that cannot be read: a failure, named with the file
    let bad = dir.write("bad.png", b"not an image at all");
    let o = dxr(&["restore", &s(&bad), "-o", &s(&dir.path("o2"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.png") && err.contains("cannot read image"),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_named_and_leave_nothing() {
    let dir = Scratch::new("bad");
    let tiny = case("cheff", "tiny");
    let (w, c) = (tiny.join("weights.pt"), tiny.join("config.json"));
    let good = encode_png(&synthetic(16, 16), BitDepth::Eight).unwrap();

    let text = dir.write("notes.png", b"this is a text file, not an image\n");
    assert_fails(&dir, "text", &text, &w, &c, "unrecognised format");

    let big = encode_png(&synthetic(64, 64), BitDepth::Sixteen).unwrap();
    let truncated = dir.write("cut.png", &big[..big.len() / 2]);
    assert_fails(&dir, "truncated", &truncated, &w, &c, "truncated");

    let one = dir.write(
        "one.png",
        &encode_png(&synthetic(1, 1), BitDepth::Eight).unwrap(),
    );
    assert_fails(&dir, "1x1", &one, &w, &c, "at least");

    // A PNG whose header declares 0×0.
    let mut zero = good.clone();
    zero[16..24].copy_from_slice(&[0; 8]);
    let zero = dir.write("zero.png", &zero);
    assert_fails(&dir, "0x0", &zero, &w, &c, "png");

    let jp2 = write_u16(
        16,
        16,
        &[0; 256],
        "MONOCHROME2",
        &DicomWriteOptions {
            transfer_syntax: Some("1.2.840.10008.1.2.4.90".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let jp2 = dir.write("j2k.dcm", &jp2);
    assert_fails(&dir, "dicom-ts", &jp2, &w, &c, "1.2.840.10008.1.2.4.90");

    // An RGB DICOM image (a photograph, not a radiograph): refused by name.
    let rgb = {
        use dicom_core::{DataElement, PrimitiveValue, VR};
        use dicom_dictionary_std::tags;
        let e = |tag, vr, v: PrimitiveValue| DataElement::new(tag, vr, v);
        let obj = dicom_object::InMemDicomObject::from_element_iter([
            e(
                tags::SOP_CLASS_UID,
                VR::UI,
                "1.2.840.10008.5.1.4.1.1.7".into(),
            ),
            e(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4".into()),
            e(tags::SAMPLES_PER_PIXEL, VR::US, 3u16.into()),
            e(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB".into()),
            e(tags::PLANAR_CONFIGURATION, VR::US, 0u16.into()),
            e(tags::ROWS, VR::US, 16u16.into()),
            e(tags::COLUMNS, VR::US, 16u16.into()),
            e(tags::BITS_ALLOCATED, VR::US, 8u16.into()),
            e(tags::BITS_STORED, VR::US, 8u16.into()),
            e(tags::HIGH_BIT, VR::US, 7u16.into()),
            e(tags::PIXEL_REPRESENTATION, VR::US, 0u16.into()),
            e(
                tags::PIXEL_DATA,
                VR::OB,
                PrimitiveValue::from(vec![90u8; 16 * 16 * 3]),
            ),
        ]);
        let file = obj
            .with_meta(
                dicom_object::FileMetaTableBuilder::new()
                    .transfer_syntax("1.2.840.10008.1.2.1")
                    .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
                    .media_storage_sop_instance_uid("1.2.3.4"),
            )
            .unwrap();
        let mut bytes = Vec::new();
        file.write_all(&mut bytes).unwrap();
        dir.write("photo.dcm", &bytes)
    };
    assert_fails(
        &dir,
        "rgb",
        &rgb,
        &w,
        &c,
        "colour image (RGB, 3 samples per pixel) is not a radiograph",
    );

    let input = dir.write("ok.png", &good);
    let sr3 = case("sr3", "tiny_gray");
    assert_fails(
        &dir,
        "family",
        &input,
        &sr3.join("weights.pth"),
        &c,
        "sr3 checkpoint",
    );

    // The fixture checkpoint minus one tensor.
    let bytes = std::fs::read(tiny.join("weights.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "downs.0.0.block1.proj.weight")
        .collect();
    let missing = dir.write(
        "missing.safetensors",
        &safetensors::serialize(kept, None).unwrap(),
    );
    assert_fails(
        &dir,
        "missing",
        &input,
        &missing,
        &c,
        "missing tensor 'downs.0.0.block1.proj.weight'",
    );

    // A wrong-shaped config for the weights: the tensor and both shapes are named.
    let wrong = dir.write(
        "wrong.json",
        br#"{"model": {"dim": 16, "dim_mults": [1, 2], "channels": 2, "out_dim": 1}}"#,
    );
    assert_fails(&dir, "shape", &input, &w, &wrong, "init_conv.weight");

    let not_ckpt = dir.write("weights.pt", b"PK\x03\x04 certainly not a real zip archive");
    assert_fails(
        &dir,
        "not-ckpt",
        &input,
        &not_ckpt,
        &c,
        "damaged or truncated",
    );
    let half = dir.write("half.pt", &std::fs::read(&w).unwrap()[..1000]);
    assert_fails(&dir, "half-ckpt", &input, &half, &c, "checkpoint");
}

#[test]
fn never_overwrites_an_input() {
    let dir = Scratch::new("overwrite");
    let tiny = case("cheff", "tiny");
    let input = dir.write(
        "scan.png",
        &encode_png(&synthetic(16, 16), BitDepth::Eight).unwrap(),
    );
    let before = std::fs::read(&input).unwrap();
    let o = dxr(&restore_args(
        &s(&input),
        &s(&dir.0),
        &s(&tiny.join("weights.pt")),
        &s(&tiny.join("config.json")),
    ));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("overwrite"));
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

/// `dxr restore INPUT -o OUT` with 3 DDIM steps, `--weights` when given, and
/// `$DXR_DEFAULT_MODEL` set to `default_env` (or unset).
fn restore_3_steps(
    input: &Path,
    out: &str,
    weights: Option<&Path>,
    default_env: Option<&Path>,
) -> Output {
    let mut cmd = common::cli::command();
    cmd.args([
        "restore",
        &s(input),
        "-o",
        out,
        "--sampler",
        "ddim",
        "--steps",
        "3",
    ]);
    if let Some(w) = weights {
        cmd.args(["--weights", &s(w)]);
    }
    match default_env {
        Some(e) => cmd.env("DXR_DEFAULT_MODEL", e),
        None => cmd.env_remove("DXR_DEFAULT_MODEL"),
    };
    cmd.output().unwrap()
}

#[test]
fn restore_without_weights_uses_the_default_model_or_says_where_it_looked() {
    let dir = Scratch::new("default-model");
    let input = write_scan(&dir, BitDepth::Eight);
    let model = dir.path("default.safetensors");
    let conv = convert_tiny(&model, &[]);
    common::cli::assert_ok(&conv);
    let run = |out: &str, env: &Path, weights: bool| {
        restore_3_steps(&input, out, weights.then_some(model.as_path()), Some(env))
    };
    let implicit = run(&s(&dir.path("a")), &model, false);
    common::cli::assert_ok(&implicit);
    assert!(run(&s(&dir.path("b")), &model, true).status.success());
    assert_eq!(
        std::fs::read(dir.path("a/scan.png")).unwrap(),
        std::fs::read(dir.path("b/scan.png")).unwrap()
    );
    let missing = dir.path("nowhere/default.safetensors");
    let o = run(&s(&dir.path("c")), &missing, false);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nowhere/default.safetensors"));
}

/// The model the repository ships as the default (`models/default.safetensors`, described by
/// `models/default.json`): small enough for the page, stored as f16, its manifest right, and
/// `dxr restore` without `--weights` uses it.
#[test]
fn shipped_default_model_is_f16_under_25_mb_and_matches_its_manifest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (model, manifest) = (
        root.join("models/default.safetensors"),
        root.join("models/default.json"),
    );
    let bytes =
        std::fs::read(&model).expect("models/default.safetensors ships with the repository");
    assert!(bytes.len() <= 25 << 20, "{} bytes", bytes.len());
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.len() > 10);
    for (name, t) in st.tensors() {
        assert_eq!(t.dtype(), safetensors::Dtype::F16, "{name}");
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let info = dxr(&["info", &s(&model)]);
    let text = String::from_utf8_lossy(&info.stdout);
    let params = text
        .lines()
        .find_map(|l| l.strip_prefix("parameters:"))
        .map(|v| v.trim().to_string())
        .unwrap();
    assert_eq!(
        meta["parameters"].as_u64().map(|v| v.to_string()),
        Some(params)
    );
    assert!(
        meta["note"]
            .as_str()
            .unwrap()
            .contains("not for clinical use")
    );

    // without --weights and without $DXR_DEFAULT_MODEL, restore takes the shipped model
    let dir = Scratch::new("shipped-default");
    let input = dir.write(
        "scan.png",
        &encode_png(&synthetic(32, 32), BitDepth::Sixteen).unwrap(),
    );
    let run = |out: &str, weights: bool| {
        restore_3_steps(&input, out, weights.then_some(model.as_path()), None)
    };
    let (a, b) = (
        run(&s(&dir.path("a")), false),
        run(&s(&dir.path("b")), true),
    );
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success());
    assert_eq!(
        std::fs::read(dir.path("a/scan.png")).unwrap(),
        std::fs::read(dir.path("b/scan.png")).unwrap()
    );
}

/// Any side from 8 to 8192 restores (over tiles where the memory budget asks for them), a
/// budget too small for the tile asked for is named, and bad sampler settings are refused
/// before any image is read.
#[test]
fn any_size_restores_and_bad_settings_are_named() {
    let dir = Scratch::new("sizes");
    let tiny = case("cheff", "tiny");
    let (w, c) = (s(&tiny.join("weights.pt")), s(&tiny.join("config.json")));
    for (iw, ih) in [(8usize, 8usize), (9, 13), (8192, 24), (600, 500)] {
        let name = format!("img{iw}x{ih}.png");
        let input = dir.write(
            &name,
            &encode_png(&synthetic(iw, ih), BitDepth::Eight).unwrap(),
        );
        let out = dir.path(&format!("out{iw}x{ih}"));
        let o = dxr(&[
            "restore",
            &s(&input),
            "-o",
            &s(&out),
            "--weights",
            &w,
            "--config",
            &c,
            "--steps",
            "2",
            "--memory-mib",
            "256",
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{iw}×{ih}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        println!("{stdout}");
        let img = dxr::io::read(&out.join(&name)).unwrap();
        assert_eq!((img.width, img.height), (iw, ih));
        if iw == 600 {
            assert!(
                stdout.contains("tiles of"),
                "600×500 should need tiles: {stdout}"
            );
        }
    }
    let input = dir.write(
        "ok.png",
        &encode_png(&synthetic(64, 64), BitDepth::Eight).unwrap(),
    );
    let fails = |extra: &[&str], needle: &str| {
        let out = dir.path("bad-out");
        let (input_s, out_s) = (s(&input), s(&out));
        let mut args = vec![
            "restore",
            &input_s,
            "-o",
            &out_s,
            "--weights",
            &w,
            "--config",
            &c,
        ];
        args.extend_from_slice(extra);
        let o = dxr(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(needle),
            "{extra:?}: {err}"
        );
        assert!(
            files_in(&out).is_empty(),
            "{extra:?} left {:?}",
            files_in(&out)
        );
    };
    fails(&["--eta=-1"], "between 0 and 1, got -1");
    fails(&["--steps", "0"], "between 1 and T");
    fails(&["--sampler", "plms", "--steps", "2001"], "got 2001");
    fails(&["--memory-mib", "1", "--tile", "64"], "memory budget");
    fails(&["--output-scale", "huge"], "input or model");
    fails(&["--pixel-mm=-3"], "--pixel-mm");
    // PLMS with one or two steps and the x0 objective (the default model's) no longer panics
    for steps in ["1", "2", "3"] {
        let out = dir.path(&format!("plms{steps}"));
        let o = dxr(&[
            "restore",
            &s(&input),
            "-o",
            &s(&out),
            "--sampler",
            "plms",
            "--steps",
            steps,
        ]);
        assert!(
            o.status.success(),
            "plms {steps}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// `dxr info` shows the model's scale; `dxr convert --pixel-mm --chest-px` records one.
#[test]
fn the_model_scale_is_shown_and_can_be_set() {
    let dir = Scratch::new("scale");
    let conv = dir.path("tiny.safetensors");
    let o = convert_tiny(&conv, &["--pixel-mm", "0.2", "--chest-px", "800"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = String::from_utf8_lossy(&dxr(&["info", &s(&conv)]).stdout).into_owned();
    assert!(
        info.contains("scale:      0.200 mm/px, lung fields ~800 px wide"),
        "{info}"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let info = dxr(&["info", &s(&root.join("models/default.safetensors"))]);
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("lung fields ~"),
        "the default model records its scale: {info}"
    );
    let o = convert_tiny(&dir.path("bad.safetensors"), &["--chest-px=-1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("positive"));
    assert!(!dir.path("bad.safetensors").exists());
}

/// With `--labels`, a DRR's pitch comes from its label and the nodule labels are written for
/// the scale that is output.
#[test]
fn drr_labels_give_the_scale_and_follow_the_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (ct, mask) = (
        root.join("data/ct/cxr.nii.gz"),
        root.join("data/ct/mask.nii.gz"),
    );
    if !ct.is_file() {
        assert!(
            std::env::var_os("DXR_REQUIRE_DATA").is_none(),
            "example CT missing"
        );
        println!("example CT not fetched: the labels check did not run");
        return;
    }
    let dir = Scratch::new("labels");
    let set = dir.path("set");
    let o = dxr(&[
        "drr",
        "--ct",
        &s(&ct),
        "--mask",
        &s(&mask),
        "--out",
        &s(&set),
        "--count",
        "1",
        "--size",
        "384",
        "--nodules",
        "2",
        "--seed",
        "4",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let input = set.join("png16/00000.png");
    for (scale, side) in [("model", None), ("input", Some(384usize))] {
        let out = dir.path(scale);
        let o = dxr(&[
            "restore",
            &s(&input),
            "-o",
            &s(&out),
            "--labels",
            &s(&set),
            "--steps",
            "2",
            "--output-scale",
            scale,
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(stdout.contains("DRR label"), "{stdout}");
        let img = dxr::io::read(&out.join("00000.png")).unwrap();
        let label: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("labels/00000.json")).unwrap()).unwrap();
        let orig: serde_json::Value =
            serde_json::from_slice(&std::fs::read(set.join("labels/00000.json")).unwrap()).unwrap();
        assert_eq!(label["width"].as_u64().unwrap() as usize, img.width);
        if let Some(side) = side {
            assert_eq!(img.width, side);
            assert_eq!(label["nodules"], orig["nodules"]);
        } else {
            assert!(
                img.width < 384,
                "restored at the model's scale: {}",
                img.width
            );
            let f = img.width as f64 / 384.0;
            let (a, b) = (
                &label["nodules"][0]["centre_px"][0],
                &orig["nodules"][0]["centre_px"][0],
            );
            assert!((a.as_f64().unwrap() - b.as_f64().unwrap() * f).abs() < 1e-6);
        }
    }
}

/// (VmRSS KiB, open file descriptors) of a running process (Linux).
fn rss_and_fds(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

#[test]
fn a_folder_of_200_restores_with_flat_memory_and_no_leaked_handles() {
    let dir = Scratch::new("cli-soak");
    let n = 200;
    for k in 0..n {
        let mut img = synthetic(64, 64);
        img.data
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = (*v + 0.05 * (((i * (k + 3)) % 17) as f32 / 17.0)).min(1.0));
        std::fs::create_dir_all(dir.path("in")).unwrap();
        std::fs::write(
            dir.path("in").join(format!("{k:03}.png")),
            encode_png(&img, BitDepth::Eight).unwrap(),
        )
        .unwrap();
    }
    let (input, out) = (s(&dir.path("in")), s(&dir.path("out")));
    let mut child = common::cli::command()
        .args([
            "restore",
            &input,
            "-o",
            &out,
            "--keep-pixels",
            "--steps",
            "2",
        ])
        .args(["--device", "flex"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // (images written so far, resident KiB, descriptors), sampled while it runs
    let mut samples: Vec<(usize, u64, usize)> = Vec::new();
    while child.try_wait().unwrap().is_none() {
        let done = files_in(&dir.path("out"))
            .iter()
            .filter(|f| f.ends_with(".png"))
            .count();
        if let Some((rss, fds)) = rss_and_fds(child.id()) {
            samples.push((done, rss, fds));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = child.wait_with_output().unwrap();
    common::cli::assert_ok(&status);
    assert_eq!(files_in(&dir.path("out")).len(), n);
    // after the first 40 images (warm-up: kernels, pools) against the last 40
    let window = |lo: usize, hi: usize| -> (u64, usize) {
        let w: Vec<_> = samples
            .iter()
            .filter(|(d, _, _)| (lo..hi).contains(d))
            .collect();
        assert!(!w.is_empty(), "no sample with {lo}..{hi} images done");
        (
            w.iter().map(|s| s.1).max().unwrap(),
            w.iter().map(|s| s.2).max().unwrap(),
        )
    };
    let (early_rss, early_fds) = window(40, 80);
    let (late_rss, late_fds) = window(n - 40, n);
    println!(
        "soak: {n} images, {} samples; peak resident {early_rss} KiB after 40–80, {late_rss} KiB \
         after {}–{n}; descriptors {early_fds} → {late_fds}",
        samples.len(),
        n - 40
    );
    assert!(
        late_rss <= early_rss + early_rss / 10 + 16 * 1024,
        "resident memory grew: {early_rss} → {late_rss} KiB"
    );
    assert!(
        late_fds <= early_fds + 2,
        "descriptors leaked: {early_fds} → {late_fds}"
    );
}

#[test]
fn a_model_that_records_its_steps_restores_with_them_unless_told_otherwise() {
    let dir = Scratch::new("model-steps");
    let input = write_scan(&dir, BitDepth::Eight);
    let model = dir.path("stepped.safetensors");
    let convert = |steps: &str, to: &Path| convert_tiny(to, &["--steps", steps]);
    let conv = convert("2", &model);
    common::cli::assert_ok(&conv);
    let info = dxr(&["info", &s(&model)]);
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("steps:      2 "),
        "{}",
        String::from_utf8_lossy(&info.stdout)
    );
    let run = |out: &str, steps: Option<&str>| {
        let mut args = vec!["restore", &*s(&input), "-o", out, "--weights", &*s(&model)]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        args.extend(["--sampler", "ddim", "--seed", "3"].map(String::from));
        if let Some(n) = steps {
            args.extend(["--steps".to_string(), n.to_string()]);
        }
        let o = common::cli::command().args(&args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(Path::new(out).join("scan.png")).unwrap()
    };
    let implicit = run(&s(&dir.path("implicit")), None);
    assert_eq!(implicit, run(&s(&dir.path("two")), Some("2")));
    assert_ne!(implicit, run(&s(&dir.path("five")), Some("5")));
    // steps no schedule can give are refused by name, and nothing is written
    for bad in ["0", "100000"] {
        let to = dir.path(&format!("bad{bad}.safetensors"));
        let o = convert(bad, &to);
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("recorded sampler steps"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!to.exists());
    }
}

/// `dxr resize --crop` keeps only the region asked for (e.g. to leave out burned-in text) and
/// then brings it to the width; a bad crop is named and writes nothing.
#[test]
fn resize_crops_then_resamples_and_names_a_bad_crop() {
    let dir = Scratch::new("resize-crop");
    // left half black with a white "label" square, right half a left-to-right ramp
    let img = GrayImage::from_fn(100, 50, |x, y| {
        if x < 50 {
            if (10..20).contains(&x) && (10..20).contains(&y) {
                1.0
            } else {
                0.0
            }
        } else {
            (x - 50) as f32 / 49.0
        }
    });
    let input = dir.path("in.png");
    std::fs::write(&input, encode_png(&img, BitDepth::Sixteen).unwrap()).unwrap();
    let out = dir.path("out");
    let o = dxr(&[
        "resize",
        &s(&input),
        "-o",
        &s(&out),
        "--width",
        "25",
        "--crop",
        "0.5,0,1,1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = dxr::io::read(&out.join("in.png")).unwrap();
    assert_eq!((got.width, got.height), (25, 25));
    // the ramp, resampled: rising from ~0 to ~1 across, the black half and its label gone
    let row: Vec<f32> = (0..25).map(|x| got.data[12 * 25 + x]).collect();
    assert!(row[0] < 0.05 && row[24] > 0.95, "{row:?}");
    assert!(row.windows(2).all(|w| w[1] >= w[0]), "{row:?}");
    for (crop, says) in [
        ("0.5,0,0.4,1", "a crop is x0,y0,x1,y1"),
        ("0.1,0.2", "four fractions"),
    ] {
        let bad = dir.path(&format!("bad-{}", crop.len()));
        let o = dxr(&[
            "resize",
            &s(&input),
            "-o",
            &s(&bad),
            "--width",
            "25",
            "--crop",
            crop,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{crop}: {err}");
        assert!(files_in(&bad).is_empty(), "{crop}: {:?}", files_in(&bad));
    }
}

/// A reader that goes away (`dxr info … | head -1`) ends `dxr` as it ends other Unix tools: by
/// SIGPIPE, with no panic message (it used to panic in `println!`).
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_dxr_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader); // every write to it now fails
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = common::cli::command()
        .args(["info", &s(&root.join("models/default.safetensors"))])
        .stdout(writer)
        .output()
        .expect("dxr runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {err}",
        o.status
    );
}

/// Tone is a choice: a model records a gentle curve (`convert --tone`), `restore --tone 0`
/// leaves the restoration as it is, `--tone S` maps it by `x + S·(curve(x) − x)` and says so in
/// the PNG and the labels; a model without a curve, or a strength out of [0, 1], is refused.
#[test]
fn tone_is_a_separate_monotone_curve_at_a_chosen_strength() {
    let dir = Scratch::new("tone");
    let tiny = case("cheff", "tiny");
    let input = write_scan(&dir, BitDepth::Sixteen);
    // a matching-like curve with a flat stretch (0.6–0.8 all map to 0.9)
    let raw: Vec<f32> = (0..256)
        .map(|i| {
            let x = i as f32 / 255.0;
            if x < 0.6 {
                x * 1.5
            } else if x < 0.8 {
                0.9
            } else {
                0.9 + (x - 0.8) * 0.5
            }
        })
        .collect();
    let filter = dir.write(
        "filter.json",
        serde_json::json!({"curve": {"points": raw}, "sigma": 2.0, "amount": 1.0})
            .to_string()
            .as_bytes(),
    );
    let model = dir.path("toned.safetensors");
    let conv = convert_tiny(&model, &["--tone", &s(&filter), "--tone-default", "0.5"]);
    common::cli::assert_ok(&conv);
    let info = String::from_utf8_lossy(&dxr(&["info", &s(&model)]).stdout).to_string();
    let slope: f32 = info
        .split("smallest slope in the body ")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{info}"));
    assert!(slope >= 0.3, "no flat stretch left: {info}");
    assert!(info.contains("the page starts at 50 %"), "{info}");
    let restore = |name: &str, tone: &str, weights: &Path| {
        dxr(&[
            "restore",
            &s(&input),
            "-o",
            &s(&dir.path(name)),
            "--weights",
            &s(weights),
            "--sampler",
            "ddim",
            "--steps",
            "2",
            "--seed",
            "3",
            "--tone",
            tone,
        ])
    };
    for (name, tone) in [("t0", "0"), ("t1", "1"), ("t05", "0.5")] {
        let o = restore(name, tone, &model);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let read = |name: &str| dxr::io::read(&dir.path(name).join("scan.png")).unwrap();
    let (t0, t1, t05) = (read("t0"), read("t1"), read("t05"));
    // the curve recorded in the model, as the library reads it
    let spec = dxr::checkpoint::read_checkpoint(&std::fs::read(&model).unwrap())
        .unwrap()
        .stored_spec()
        .unwrap()
        .unwrap();
    let tone = spec.tone.expect("the model records its tone curve");
    assert_eq!(tone.page_default, 0.5);
    let mut moved = 0;
    for k in 0..t0.data.len() {
        let x = t0.data[k];
        let q = 1.0 / 65535.0 * 1.5;
        assert!(
            (t1.data[k] - tone.map(x, 1.0)).abs() <= q + 1e-4,
            "pixel {k}"
        );
        assert!(
            (t05.data[k] - tone.map(x, 0.5)).abs() <= q + 1e-4,
            "pixel {k}"
        );
        moved += usize::from((t1.data[k] - x).abs() > 0.01);
    }
    assert!(moved > 0, "tone 1 moves grey levels");
    // the strength travels with the image
    let png = std::fs::read(dir.path("t05").join("scan.png")).unwrap();
    let text = String::from_utf8_lossy(&png);
    assert!(text.contains("dxr:tone\u{0}0.5"), "tEXt chunk");
    // refused by name, nothing written
    let bare = tiny.join("weights.pt");
    let o = dxr(&[
        "restore",
        &s(&input),
        "-o",
        &s(&dir.path("bare")),
        "--weights",
        &s(&bare),
        "--config",
        &s(&tiny.join("config.json")),
        "--tone",
        "0.5",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has no tone curve"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(files_in(&dir.path("bare")).is_empty());
    let o = restore("bad", "1.5", &model);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tone 1.5"));
    assert!(files_in(&dir.path("bad")).is_empty());
    // a curve that falls, or a file with no curve, is refused by name and writes no model
    for (name, json, says) in [
        (
            "falling.json",
            r#"{"points": [0.0, 0.7, 0.4, 1.0]}"#,
            "monotone",
        ),
        ("none.json", r#"{"sigma": 2.0}"#, "no tone curve"),
    ] {
        let bad = dir.write(name, json.as_bytes());
        let to = dir.path(&format!("{name}.safetensors"));
        let o = convert_tiny(&to, &["--tone", &s(&bad)]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says) && err.contains(name), "{err}");
        assert!(!to.exists());
    }
}
