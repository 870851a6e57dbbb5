//! Numerical parity with the reference PyTorch code, on every case folder under
//! `../shared/fixtures/{cheff,sr3}` and under each directory in `DXR_FIXTURES` (':'-separated).
//! A case is a folder with `config.json` and `case.safetensors`; its family comes from the config.
//! Each check prints `parity <family>/<case> <check> max_err=<x> ok|FAIL`.

mod common;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use dxr::checkpoint::{RawCheckpoint, load_bytes, read_checkpoint};
use dxr::diffusion::sampler::{
    self, DdpmStep, Denoiser, FixedNoise, SamplerKind, SamplerSettings, ddpm_step, sample,
};
use dxr::diffusion::schedule::Schedule;
use dxr::spec::{Family, ModelSpec, ScheduleConfig};
use serde_json::Value;

struct Case {
    family: Family,
    name: String,
    dir: PathBuf,
    spec: ModelSpec,
    data: RawCheckpoint,
}

impl Case {
    fn f32(&self, name: &str) -> Vec<f32> {
        self.data
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("{} lacks {name}", self.name))
            .to_f32(name)
            .unwrap()
    }
    fn shape(&self, name: &str) -> Vec<usize> {
        self.data.tensors[name].shape.clone()
    }
    fn i64(&self, name: &str) -> Vec<i64> {
        self.data.tensors[name].to_i64(name).unwrap()
    }
    fn tensor4(&self, name: &str, device: &Device) -> Tensor<4> {
        let s = self.shape(name);
        Tensor::from_data(
            TensorData::new(self.f32(name), [s[0], s[1], s[2], s[3]]),
            device,
        )
    }
    /// `[n, b, c, h, w]` noise stacks as a list of `[b, c, h, w]` tensors.
    fn noise(&self, name: &str, device: &Device) -> Vec<Tensor<4>> {
        let s = self.shape(name);
        let v = self.f32(name);
        let per = s[1] * s[2] * s[3] * s[4];
        (0..s[0])
            .map(|i| {
                Tensor::from_data(
                    TensorData::new(v[i * per..(i + 1) * per].to_vec(), [s[1], s[2], s[3], s[4]]),
                    device,
                )
            })
            .collect()
    }
    fn meta(&self, key: &str) -> &str {
        self.data
            .metadata
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{} lacks metadata {key}", self.name))
    }
}

fn discover() -> Vec<Case> {
    let root = common::fixtures_root();
    let mut dirs: Vec<PathBuf> = ["cheff", "sr3"]
        .iter()
        .flat_map(|f| common::case_dirs(&root.join(f), &["config.json", "case.safetensors"]))
        .collect();
    for extra in common::env_dirs("DXR_FIXTURES") {
        let found = common::case_dirs(&extra, &["config.json", "case.safetensors"]);
        assert!(
            !found.is_empty(),
            "DXR_FIXTURES names {} but it holds no case folder",
            extra.display()
        );
        dirs.extend(found);
    }
    dirs.into_iter()
        .map(|dir| {
            let spec =
                ModelSpec::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let data =
                read_checkpoint(&std::fs::read(dir.join("case.safetensors")).unwrap()).unwrap();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            Case {
                family: spec.family(),
                name,
                dir,
                spec,
                data,
            }
        })
        .collect()
}

/// Weight files present in a case folder (every one must load and agree).
fn weight_files(dir: &Path) -> Vec<PathBuf> {
    ["weights.pt", "weights.pth", "weights.safetensors"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.is_file())
        .collect()
}

struct Report {
    backend: &'static str,
    failures: Vec<String>,
    checks: usize,
}

impl Report {
    fn check(&mut self, case: &Case, what: &str, port: Tensor<4>, reference: &[f32]) {
        let port: Vec<f32> = port.into_data().try_into_vec_as::<f32>().unwrap();
        self.check_vec(case, what, &port, reference);
    }
    fn check_vec(&mut self, case: &Case, what: &str, port: &[f32], reference: &[f32]) {
        let (err, tol) = common::compare(port, reference);
        let ok = err <= tol;
        println!(
            "parity {}/{} {}{} max_err={err:.3e} {}",
            case.family,
            case.name,
            what,
            self.suffix(),
            if ok { "ok" } else { "FAIL" }
        );
        self.checks += 1;
        if !ok {
            self.failures.push(format!(
                "{}/{} {what}{} max_err={err:e} tol={tol:e}",
                case.family,
                case.name,
                self.suffix()
            ));
        }
    }
    fn suffix(&self) -> String {
        if self.backend == "cpu" {
            String::new()
        } else {
            format!("[{}]", self.backend)
        }
    }
}

fn run_case(case: &Case, device: &Device, report: &mut Report) {
    let files = weight_files(&case.dir);
    assert!(!files.is_empty(), "{}: no weights file", case.dir.display());
    let schedule = case.spec.schedule.build().unwrap();
    for (i, file) in files.iter().enumerate() {
        let model = load_bytes(
            &std::fs::read(file).unwrap(),
            Some(case.spec.clone()),
            device,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let fname = file.file_name().unwrap().to_string_lossy();
        let den = Denoiser::new(&model.network, &schedule, Default::default());
        // The network alone, from every weight file.
        let unet_in = case.tensor4("unet_in", device);
        let out = match case.family {
            Family::Cheff => {
                let t: Vec<f32> = case.i64("unet_t").iter().map(|&t| t as f32).collect();
                model.network.forward_raw(unet_in, &t)
            }
            Family::Sr3 => model.network.forward_raw(unet_in, &case.f32("noise_level")),
        };
        report.check(case, &format!("unet({fname})"), out, &case.f32("unet_out"));
        if i + 1 < files.len() {
            continue; // samplers once, with the last file
        }
        match case.family {
            Family::Cheff => cheff_samplers(case, den, &schedule, device, report),
            Family::Sr3 => sr3_samplers(case, den, &schedule, device, report),
        }
    }
}

fn cheff_samplers(
    case: &Case,
    den: Denoiser,
    schedule: &Schedule,
    device: &Device,
    report: &mut Report,
) {
    // Schedule arrays.
    for (name, ours) in [
        ("betas", &schedule.betas),
        ("alphas_cumprod", &schedule.alphas_cumprod),
        (
            "sqrt_recip_alphas_cumprod",
            &schedule.sqrt_recip_alphas_cumprod,
        ),
        (
            "sqrt_recipm1_alphas_cumprod",
            &schedule.sqrt_recipm1_alphas_cumprod,
        ),
        ("post_mean_coef1", &schedule.posterior_mean_coef1),
        ("post_mean_coef2", &schedule.posterior_mean_coef2),
        (
            "post_log_var_clipped",
            &schedule.posterior_log_variance_clipped,
        ),
    ] {
        report.check_vec(case, &format!("schedule.{name}"), ours, &case.f32(name));
    }
    // One ancestral step.
    let step = ancestral_step(case, den, schedule, device, "step_sr");
    report.check(case, "step.eps", step.eps, &case.f32("step_eps"));
    report.check(case, "step.x0", step.x0, &case.f32("step_x0"));
    report.check(case, "step.out", step.x_prev, &case.f32("step_out"));
    let x_ch = case.spec.network.image_channels();

    // DDIM loop.
    let steps: usize = case.meta("ddim_steps").parse().unwrap();
    let eta: f64 = case.meta("ddim_eta").parse().unwrap();
    let grid = sampler::ddim_timesteps(schedule.len(), steps).unwrap();
    let ref_grid: Vec<f32> = case
        .i64("ddim_timesteps")
        .iter()
        .map(|&v| v as f32)
        .collect();
    report.check_vec(
        case,
        "ddim.timesteps",
        &grid.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        &ref_grid,
    );
    let out = run_sampler(
        den,
        SamplerKind::Ddim,
        steps,
        eta,
        case.tensor4("ddim_sr", device),
        x_ch,
        FixedNoise(case.noise("ddim_noise", device)),
    );
    report.check(case, "ddim.out", out, &case.f32("ddim_out"));

    // PLMS loop.
    let steps: usize = case.meta("plms_steps").parse().unwrap();
    let out = run_sampler(
        den,
        SamplerKind::Plms,
        steps,
        0.0,
        case.tensor4("plms_sr", device),
        x_ch,
        FixedNoise(vec![case.tensor4("plms_x_T", device)]),
    );
    report.check(case, "plms.out", out, &case.f32("plms_out"));

    // DPM-Solver++(2M) against the float64 update written out below.
    for steps in [1, 2, 6] {
        let (cond, x_t) = (
            case.tensor4("plms_sr", device),
            case.tensor4("plms_x_T", device),
        );
        let noise = FixedNoise(vec![x_t.clone()]);
        let out = run_sampler(
            den,
            SamplerKind::Dpmpp,
            steps,
            0.0,
            cond.clone(),
            x_ch,
            noise,
        );
        let want = dpmpp_f64(den, schedule, cond, x_t, steps);
        report.check(case, &format!("dpmpp{steps}.out(f64)"), out, &want);
    }

    // Full ancestral loop on the short schedule.
    let kwargs: Value = serde_json::from_str(case.meta("ddpm_schedule_kwargs")).unwrap();
    let short = ScheduleConfig {
        family: Family::Cheff,
        kind: case.meta("ddpm_schedule").parse().unwrap(),
        timesteps: case.meta("ddpm_timesteps").parse().unwrap(),
        beta_start: kwargs
            .get("beta_start")
            .and_then(Value::as_f64)
            .unwrap_or(1e-4),
        beta_end: kwargs
            .get("beta_end")
            .and_then(Value::as_f64)
            .unwrap_or(0.02),
    }
    .build()
    .unwrap();
    report.check_vec(case, "ddpm.betas", &short.betas, &case.f32("ddpm_betas"));
    report.check_vec(
        case,
        "ddpm.alphas_cumprod",
        &short.alphas_cumprod,
        &case.f32("ddpm_alphas_cumprod"),
    );
    let out = ancestral_loop(case, den, &short, device, ["ddpm_sr", "ddpm_noise"]);
    report.check(case, "ddpm.out", out, &case.f32("ddpm_out"));
}

/// The case's one ancestral step (`step_t`, `step_x`, the condition `cond`, the noise `step_z`),
/// clipped as the reference clips.
fn ancestral_step(
    case: &Case,
    den: Denoiser,
    schedule: &Schedule,
    device: &Device,
    cond: &str,
) -> DdpmStep {
    let t = case.i64("step_t")[0];
    ddpm_step(
        den,
        schedule,
        t as usize,
        t,
        case.tensor4("step_x", device),
        case.tensor4(cond, device),
        Some(case.tensor4("step_z", device)),
        true,
    )
}

/// The case's whole ancestral (DDPM) loop over the short `schedule`, with the condition and
/// the noise the case stores under the names `cond` and `noise`.
fn ancestral_loop(
    case: &Case,
    den: Denoiser,
    schedule: &Schedule,
    device: &Device,
    [cond, noise]: [&str; 2],
) -> Tensor<4> {
    run_sampler(
        Denoiser::new(den.net, schedule, Default::default()),
        SamplerKind::Ddpm,
        schedule.len(),
        0.0,
        case.tensor4(cond, device),
        case.spec.network.image_channels(),
        FixedNoise(case.noise(noise, device)),
    )
}

/// A whole sampling run with the reference's clipping and the given noise.
fn run_sampler(
    den: Denoiser,
    kind: SamplerKind,
    steps: usize,
    eta: f64,
    cond: Tensor<4>,
    x_ch: usize,
    mut noise: FixedNoise,
) -> Tensor<4> {
    let settings = SamplerSettings {
        kind,
        steps,
        eta,
        clip_denoised: true,
    };
    sample(den, cond, x_ch, &settings, &mut noise, &mut |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap()
}

/// DPM-Solver++(2M) (Lu et al. 2022, data prediction, multistep) in float64, from its
/// definition: timesteps spread evenly over [0, T − 1] from the top; at each t the network's ε
/// gives x̂₀ = (x − σ·ε)/α, clipped to [−1, 1]; with λ = log(α/σ), h = λ_next − λ_t and
/// r = h_prev/h, D = (1 + 1/(2r))·x̂₀ − 1/(2r)·x̂₀_prev (first step: D = x̂₀), and
/// x_next = (σ_next/σ_t)·x − α_next·(e^(−h) − 1)·D; the last step returns x̂₀. Only the network
/// runs in f32 (on the state rounded to f32).
fn dpmpp_f64(
    den: Denoiser,
    schedule: &Schedule,
    cond: Tensor<4>,
    x_t: Tensor<4>,
    steps: usize,
) -> Vec<f32> {
    let t_max = schedule.len() - 1;
    let mut ts: Vec<usize> = (0..steps)
        .map(|i| {
            if steps == 1 {
                t_max
            } else {
                (i as f64 * t_max as f64 / (steps - 1) as f64).round() as usize
            }
        })
        .collect();
    ts.dedup();
    ts.reverse();
    let dims = x_t.dims();
    let device = x_t.device();
    let to_f64 = |t: Tensor<4>| -> Vec<f64> {
        t.into_data()
            .try_into_vec_as::<f32>()
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect()
    };
    let ac = |t: usize| schedule.alphas_cumprod[t] as f64;
    let (alpha, sigma) = (|t: usize| ac(t).sqrt(), |t: usize| (1.0 - ac(t)).sqrt());
    let lambda = |t: usize| (alpha(t) / sigma(t)).ln();
    let mut x = to_f64(x_t);
    let mut prev: Option<(Vec<f64>, f64)> = None;
    for (k, &t) in ts.iter().enumerate() {
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let eps = to_f64(den.output(
            Tensor::from_data(TensorData::new(x32, dims), &device),
            cond.clone(),
            t as i64,
        ));
        let x0: Vec<f64> = x
            .iter()
            .zip(&eps)
            .map(|(x, e)| ((x - sigma(t) * e) / alpha(t)).clamp(-1.0, 1.0))
            .collect();
        let Some(&tn) = ts.get(k + 1) else {
            x = x0;
            break;
        };
        let h = lambda(tn) - lambda(t);
        let d: Vec<f64> = match &prev {
            Some((x0_prev, h_prev)) => {
                let r = h_prev / h;
                x0.iter()
                    .zip(x0_prev)
                    .map(|(a, b)| (1.0 + 0.5 / r) * a - 0.5 / r * b)
                    .collect()
            }
            None => x0.clone(),
        };
        x = x
            .iter()
            .zip(&d)
            .map(|(x, d)| sigma(tn) / sigma(t) * x - alpha(tn) * ((-h).exp() - 1.0) * d)
            .collect();
        prev = Some((x0, h));
    }
    x.iter().map(|&v| v as f32).collect()
}

fn sr3_samplers(
    case: &Case,
    den: Denoiser,
    schedule: &Schedule,
    device: &Device,
    report: &mut Report,
) {
    let step = ancestral_step(case, den, schedule, device, "step_cond");
    report.check(case, "step.out", step.x_prev, &case.f32("step_out"));

    let loop_cfg: Value = serde_json::from_str(case.meta("loop_schedule")).unwrap();
    let short = ModelSpec::sr3_schedule(&loop_cfg).unwrap().build().unwrap();
    let out = ancestral_loop(case, den, &short, device, ["loop_cond", "loop_noise"]);
    report.check(case, "loop.out", out, &case.f32("loop_out"));
}

fn run_all(backend: &'static str, device: &Device) {
    let cases = discover();
    assert!(
        cases.len() >= 4,
        "expected the public cheff and sr3 cases under {}",
        common::fixtures_root().display()
    );
    let mut report = Report {
        backend,
        failures: vec![],
        checks: 0,
    };
    for case in &cases {
        run_case(case, device, &mut report);
    }
    println!(
        "parity[{backend}]: {} cases, {} checks, {} failed",
        cases.len(),
        report.checks,
        report.failures.len()
    );
    assert!(
        report.failures.is_empty(),
        "parity failures:\n{}",
        report.failures.join("\n")
    );
}

#[test]
fn parity_cpu() {
    run_all("cpu", &dxr::device::cpu());
}

/// flex, the default CPU backend, with its inference fast paths (fused GroupNorm, SiLU on two
/// threads: `dxr::model::norm`) against the same references.
#[test]
fn parity_flex() {
    run_all("flex", &burn::prelude::Device::flex());
}

#[test]
fn parity_wgpu() {
    if let Some(device) = common::gpu_or_skip("parity[wgpu]") {
        run_all("wgpu", &device);
    }
}
