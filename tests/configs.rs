//! Configurations beyond the public fixtures (no attention, one attention layer, explicit
//! init_dim, several image channels, RGB SR3 with attention at two resolutions, non-square
//! inputs, batch 3): every network builds, runs every sampler, survives a save/load round trip
//! unchanged, and gives the same numbers on wgpu as on the CPU backend.

mod common;

use std::ops::ControlFlow;

use burn::prelude::*;
use dxr::checkpoint::{SaveDType, load_bytes, to_safetensors_bytes};
use dxr::diffusion::sampler::{Denoiser, SamplerKind, SamplerSettings, SeededNoise, sample};
use dxr::spec::{
    BetaKind, CheffUnetConfig, Family, ModelSpec, NetworkConfig, ScheduleConfig, Sr3UnetConfig,
};

fn specs() -> Vec<(&'static str, ModelSpec)> {
    let cheff = |c: CheffUnetConfig, kind| ModelSpec {
        network: NetworkConfig::Cheff(c),
        schedule: ScheduleConfig {
            family: Family::Cheff,
            kind,
            timesteps: 50,
            beta_start: 1e-4,
            beta_end: 0.02,
        },
        prediction: Default::default(),
        scale: None,
        steps: None,
        tone: None,
    };
    let sr3 = |c: Sr3UnetConfig, kind| ModelSpec {
        network: NetworkConfig::Sr3(c),
        schedule: ScheduleConfig {
            family: Family::Sr3,
            kind,
            timesteps: 40,
            beta_start: 1e-4,
            beta_end: 0.05,
        },
        prediction: Default::default(),
        scale: None,
        steps: None,
        tone: None,
    };
    let small = CheffUnetConfig::new()
        .with_dim(8)
        .with_dim_mults(vec![1, 2, 2]);
    vec![
        (
            "cheff no attention",
            cheff(small.clone().with_num_attention_layer(0), BetaKind::Linear),
        ),
        (
            "cheff mid attention only",
            cheff(small.clone().with_num_attention_layer(1), BetaKind::Sigmoid),
        ),
        (
            "cheff two attention layers",
            cheff(
                small.clone().with_num_attention_layer(2),
                BetaKind::Quadratic,
            ),
        ),
        (
            "cheff init_dim 6, 4 in / 2 out channels",
            // (Linear: the cosine schedule's ᾱ_T ≈ 1e-6 amplifies 1e-6 backend differences in x₀
            // by 1/√ᾱ ≈ 1e3 at the first step, which says nothing about the port.)
            cheff(
                small
                    .clone()
                    .with_init_dim(Some(6))
                    .with_channels(4)
                    .with_out_dim(Some(2)),
                BetaKind::Linear,
            ),
        ),
        (
            "sr3 rgb, attention at 8 and 4",
            sr3(
                Sr3UnetConfig::new()
                    .with_in_channel(6)
                    .with_out_channel(3)
                    .with_inner_channel(8)
                    .with_norm_groups(4)
                    .with_channel_multiplier(vec![1, 2, 2])
                    .with_attn_res(vec![8, 4])
                    .with_res_blocks(2)
                    .with_image_size(16),
                BetaKind::Warmup10,
            ),
        ),
        (
            "sr3 grey, jsd schedule",
            sr3(
                Sr3UnetConfig::new()
                    .with_inner_channel(8)
                    .with_norm_groups(8)
                    .with_channel_multiplier(vec![1, 1])
                    .with_attn_res(vec![])
                    .with_res_blocks(1)
                    .with_image_size(8),
                BetaKind::Jsd,
            ),
        ),
    ]
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

fn run(spec: &ModelSpec, bytes: &[u8], device: &Device, kind: SamplerKind) -> Vec<f32> {
    let model = load_bytes(bytes, None, device).unwrap();
    assert_eq!(&model.spec, spec);
    let schedule = spec.schedule.build().unwrap();
    let cond_c = spec.network.cond_channels().unwrap();
    // Non-square, batch 3, sizes that are multiples of the network's need (24 × 40).
    let n = 3 * cond_c * 24 * 40;
    let cond = Tensor::<4>::from_data(
        TensorData::new(
            (0..n)
                .map(|i| ((i * 29 % 97) as f32 / 48.0) - 1.0)
                .collect::<Vec<f32>>(),
            [3, cond_c, 24, 40],
        ),
        device,
    );
    let den = Denoiser::new(&model.network, &schedule, Default::default());
    let settings = SamplerSettings {
        kind,
        steps: 3,
        eta: 0.5,
        clip_denoised: true,
    };
    let out = sample(
        den,
        cond,
        spec.network.image_channels(),
        &settings,
        &mut SeededNoise::new(9),
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(out.dims(), [3, spec.network.image_channels(), 24, 40]);
    values(out)
}

#[test]
fn unusual_configs_run_round_trip_and_agree_across_backends() {
    let cpu = dxr::device::cpu();
    let gpu = common::gpu_or_skip("configs");
    for (name, spec) in specs() {
        spec.network
            .validate()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let net = spec.network.init(&cpu).unwrap();
        let bytes = to_safetensors_bytes(&net, &spec, SaveDType::F32).unwrap();
        for kind in [
            SamplerKind::Ddpm,
            SamplerKind::Ddim,
            SamplerKind::Plms,
            SamplerKind::Dpmpp,
        ] {
            let a = run(&spec, &bytes, &cpu, kind);
            assert!(
                a.iter().all(|v| v.is_finite()),
                "{name} {kind:?}: non-finite output"
            );
            // Saved and reloaded weights give the same numbers.
            let again = to_safetensors_bytes(
                &load_bytes(&bytes, None, &cpu).unwrap().network,
                &spec,
                SaveDType::F32,
            )
            .unwrap();
            assert_eq!(again, bytes, "{name}: save → load → save is not stable");
            if let Some(gpu) = &gpu {
                let b = run(&spec, &bytes, gpu, kind);
                let err = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
                println!("configs {name} {kind:?} cpu-vs-wgpu max_err={err:.2e}");
                assert!(
                    err <= 1e-4 * scale,
                    "{name} {kind:?}: wgpu differs from cpu by {err}"
                );
            }
        }
    }
}
