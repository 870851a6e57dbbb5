//! PSNR / SSIM equal scikit-image's on every pair in `../shared/fixtures/metrics/expected.json`
//! and in each directory listed in `DXR_METRIC_FIXTURES` (':'-separated, same layout).

mod common;

use std::path::Path;

use dxr::eval::metrics::{psnr, ssim};
use serde_json::Value;

fn eight_bit(path: &Path) -> (Vec<f64>, usize, usize) {
    let img = dxr::io::decode(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (
        img.data
            .iter()
            .map(|v| (v * 255.0).round() as f64)
            .collect(),
        img.width,
        img.height,
    )
}

#[test]
fn metrics_match_scikit_image() {
    let mut dirs = vec![common::fixtures_root().join("metrics")];
    dirs.extend(common::env_dirs("DXR_METRIC_FIXTURES"));
    let (mut pairs, mut failures) = (0, Vec::new());
    for dir in dirs {
        let text = std::fs::read_to_string(dir.join("expected.json"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let expected: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        for (name, case) in expected {
            let (a, w, h) = eight_bit(&dir.join(case["reference"].as_str().unwrap()));
            let (b, w2, h2) = eight_bit(&dir.join(case["test"].as_str().unwrap()));
            assert_eq!((w, h), (w2, h2), "{name}: sizes differ");
            let p = psnr(&a, &b, 255.0).unwrap();
            let s = ssim(&a, &b, w, h, 255.0).unwrap();
            let (ep, es) = (
                case["psnr"].as_f64().unwrap(),
                case["ssim"].as_f64().unwrap(),
            );
            let ok = (p - ep).abs() <= 1e-6 && (s - es).abs() <= 1e-5;
            println!(
                "metrics {name} psnr={p:.9} (expected {ep:.9}) ssim={s:.9} (expected {es:.9}) {}",
                if ok { "ok" } else { "FAIL" }
            );
            pairs += 1;
            if !ok {
                failures.push(name);
            }
        }
    }
    assert!(pairs >= 4, "expected the public metric pairs");
    assert!(failures.is_empty(), "metric mismatches: {failures:?}");
}
