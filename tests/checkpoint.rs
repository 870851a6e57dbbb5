//! Our own checkpoints (safetensors + spec in the header) round-trip exactly, in f32 and f16, and
//! a bare checkpoint without a config gets a message that says what was assumed.

mod common;

use burn::prelude::*;
use dxr::checkpoint::{SaveDType, load_bytes, read_checkpoint, to_safetensors_bytes};
use dxr::spec::ModelSpec;

fn forward(net: &dxr::model::Network, device: &Device, channels: usize) -> Vec<f32> {
    let x = Tensor::<4>::from_data(
        TensorData::new(
            (0..channels * 256)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect::<Vec<f32>>(),
            [1, channels, 16, 16],
        ),
        device,
    );
    net.forward_raw(x, &[0.5])
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap()
}

#[test]
fn own_checkpoints_round_trip_with_their_spec() {
    let device = dxr::device::cpu();
    for (family, case) in [("cheff", "tiny"), ("sr3", "tiny_gray")] {
        let dir = common::fixtures_root().join(family).join(case);
        let spec = ModelSpec::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap())
            .unwrap();
        let weights = if family == "cheff" {
            "weights.pt"
        } else {
            "weights.pth"
        };
        let model = load_bytes(
            &std::fs::read(dir.join(weights)).unwrap(),
            Some(spec.clone()),
            &device,
        )
        .unwrap();
        let channels = match &spec.network {
            dxr::spec::NetworkConfig::Cheff(c) => c.channels,
            dxr::spec::NetworkConfig::Sr3(c) => c.in_channel,
        };
        let reference = forward(&model.network, &device, channels);

        let bytes = to_safetensors_bytes(&model.network, &model.spec, SaveDType::F32).unwrap();
        let raw = read_checkpoint(&bytes).unwrap();
        // Stored under the reference's own names, so the reference code can read it.
        let original =
            read_checkpoint(&std::fs::read(dir.join("weights.safetensors")).unwrap()).unwrap();
        for name in raw.tensors.keys() {
            assert!(
                original.tensors.contains_key(name),
                "{family}: saved name {name} is not a reference name"
            );
        }
        let back = load_bytes(&bytes, None, &device).unwrap();
        assert_eq!(back.spec, spec);
        assert_eq!(
            forward(&back.network, &device, channels),
            reference,
            "{family}: f32 round trip is exact"
        );

        let half = to_safetensors_bytes(&model.network, &model.spec, SaveDType::F16).unwrap();
        assert!(half.len() < bytes.len() * 6 / 10);
        let back = load_bytes(&half, None, &device).unwrap();
        let (err, _) = common::compare(&forward(&back.network, &device, channels), &reference);
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            err < 2e-2 * scale.max(1.0),
            "{family}: f16 round trip error {err}"
        );
    }
}

#[test]
fn bare_checkpoints_say_what_was_assumed() {
    let device = dxr::device::cpu();
    let tiny = common::fixtures_root().join("cheff/tiny/weights.pt");
    let err = load_bytes(&std::fs::read(tiny).unwrap(), None, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("authors' published setting") && err.contains("init_conv.weight"),
        "{err}"
    );
    let sr3 = common::fixtures_root().join("sr3/tiny_gray/weights.pth");
    let err = load_bytes(&std::fs::read(sr3).unwrap(), None, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--config"), "{err}");
}
