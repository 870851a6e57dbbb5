//! Training, natively, on the same networks the engine runs: DDPM-LQ (unconditional, the
//! LQ domain's look), DDPM-HQ (conditional restoration on (LQ, HQ) pairs) and the run machinery
//! every trainer shares: one safetensors state file (weights, EMA, Adam moments, settings),
//! written atomically and resumed exactly, `log.csv` and its plot, validation, cancellation.

pub mod data;
pub mod ddpm;
pub mod degrade;
pub mod munit;
pub mod optim;
pub mod parallel;
pub mod plot;
pub mod precision;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::io::write_atomic;
use crate::spec::{
    CheffUnetConfig, Family, ModelSpec, NetworkConfig, ScheduleConfig, Sr3UnetConfig,
};
use crate::{Error, Result};
use burn::prelude::*;
use optim::{Adam, Ema, Flat};

/// Builds `config` with weights drawn from `seed`. The backend's generator is global and burn
/// draws parameters lazily, so seeding, building and materialising every parameter happen
/// under one lock.
pub fn init_seeded(
    config: &NetworkConfig,
    device: &Device,
    seed: u64,
) -> Result<crate::model::Network> {
    seeded(device, seed, |d| {
        let net = config.init(d)?;
        let _ = optim::params(&net);
        Ok(net)
    })
}

/// Runs `build` (which must materialise every parameter it draws) right after seeding the
/// backend, under the lock every seeded initialisation shares.
pub fn seeded<T>(
    device: &Device,
    seed: u64,
    build: impl FnOnce(&Device) -> Result<T>,
) -> Result<T> {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    build(device)
}

/// The state file of a run folder.
pub const STATE_FILE: &str = "state.safetensors";
/// The exported model (EMA weights, reference names; loads in `dxr restore` and the page).
pub const MODEL_FILE: &str = "model.safetensors";
/// Metadata key of the run settings in the state file.
pub const TRAIN_KEY: &str = "dxr_train";

/// Named network sizes. `channels` is the network input: 1 (unconditional) or 2 (x_t + LQ).
pub fn preset(name: &str, channels: usize) -> Result<ModelSpec> {
    let cheff = |dim: usize, mults: Vec<usize>, attn: usize| {
        NetworkConfig::Cheff(CheffUnetConfig {
            dim,
            init_dim: None,
            out_dim: Some(1),
            dim_mults: mults,
            num_attention_layer: attn,
            channels,
            block_groups: 8,
        })
    };
    let cheff_schedule = ScheduleConfig::cheff_default();
    let (network, schedule) = match name {
        // 3 narrow levels, full attention only in the middle (at 1/4 of the side, where it is
        // cheap): tests and laptop-CPU trials
        "tiny" => (cheff(8, vec![1, 2, 2], 1), cheff_schedule),
        // 3 levels, attention in the two deepest
        "small" => (cheff(16, vec![1, 2, 4], 2), cheff_schedule),
        // the authors' published DDPM-HQ network (8 levels)
        "base" => (
            NetworkConfig::Cheff(CheffUnetConfig {
                channels,
                ..CheffUnetConfig::new()
            }),
            cheff_schedule,
        ),
        // SR3's UNet at about the size of `small`, 4 levels, attention at 1/8 of the training
        // side: it upsamples by nearest-neighbour + 3×3 conv, so it has no transposed
        // convolution to leave a checkerboard at its strides (the shipped default)
        "sr3-small" => (
            NetworkConfig::Sr3(Sr3UnetConfig {
                in_channel: channels,
                out_channel: 1,
                inner_channel: 16,
                norm_groups: 8,
                channel_multiplier: vec![1, 2, 4, 4],
                attn_res: vec![16],
                res_blocks: 1,
                dropout: 0.0,
                image_size: 128,
            }),
            ScheduleConfig {
                family: Family::Sr3,
                ..cheff_schedule
            },
        ),
        path => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Usage(format!(
                    "--config {path:?}: not tiny, small, base or sr3-small, and not a readable file ({e})"
                ))
            })?;
            return ModelSpec::from_json(&text);
        }
    };
    let spec = ModelSpec {
        network,
        schedule,
        prediction: Default::default(),
        scale: None,
        steps: None,
        tone: None,
    };
    spec.network.validate()?;
    Ok(spec)
}

/// The error for a state file that lacks what an exact resume needs.
fn missing(what: &str) -> Error {
    Error::CheckpointFormat(format!(
        "the training state lacks {what} (damaged, or written by another version): not resuming \
         from it"
    ))
}

/// Flat tensors by name plus string metadata: the state file's content.
#[derive(Default)]
pub struct StateFile {
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub meta: HashMap<String, String>,
}

impl StateFile {
    /// Stores `values` as `prefix.0000`, `prefix.0001`, …
    pub fn put(&mut self, prefix: &str, values: &[Flat]) -> Result<()> {
        for (k, v) in values.iter().enumerate() {
            let data: Vec<f32> = v
                .clone()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Failed(format!("reading {prefix}.{k:04}: {e:?}")))?;
            self.tensors
                .push((format!("{prefix}.{k:04}"), vec![data.len()], data));
        }
        Ok(())
    }

    /// The values stored under `prefix`, in order, on `device`.
    pub fn take(&self, prefix: &str, device: &Device) -> Vec<Flat> {
        let want = format!("{prefix}.");
        let mut found: Vec<&(String, Vec<usize>, Vec<f32>)> = self
            .tensors
            .iter()
            .filter(|(n, _, _)| n.starts_with(&want))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
            .into_iter()
            .map(|(_, _, d)| Tensor::<1>::from_data(TensorData::new(d.clone(), [d.len()]), device))
            .collect()
    }

    /// A counter the state must hold: a state without it is refused, never defaulted to 0.
    pub fn counter(&self, key: &str) -> Result<u64> {
        self.meta
            .get(key)
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| missing(&format!("its `{key}` counter")))
    }

    /// The values under `prefix`: exactly `n` of them, or the state is refused.
    pub fn take_exact(&self, prefix: &str, n: usize, device: &Device) -> Result<Vec<Flat>> {
        let v = self.take(prefix, device);
        if v.len() != n {
            return Err(missing(&format!(
                "`{prefix}`: {} tensor(s) where the network has {n}",
                v.len()
            )));
        }
        Ok(v)
    }

    /// An optimizer's moments and step count under `name`.
    pub fn put_adam(&mut self, name: &str, a: &Adam) -> Result<()> {
        self.put(&format!("{name}.m"), &a.m)?;
        self.put(&format!("{name}.v"), &a.v)?;
        self.meta.insert(format!("{name}_t"), a.t.to_string());
        Ok(())
    }

    /// Restores what [`Self::put_adam`] stored, for a network of `n` parameter tensors: both
    /// moments for every tensor once a step was taken, none before.
    pub fn take_adam(&self, name: &str, a: &mut Adam, n: usize, device: &Device) -> Result<()> {
        a.t = self.counter(&format!("{name}_t"))?;
        let want = if a.t == 0 { 0 } else { n };
        a.m = self.take_exact(&format!("{name}.m"), want, device)?;
        a.v = self.take_exact(&format!("{name}.v"), want, device)?;
        Ok(())
    }

    /// The moving average of the weights and its update count.
    pub fn put_ema(&mut self, ema: &Ema) -> Result<()> {
        self.put("ema", &ema.values)?;
        self.meta
            .insert("ema_updates".into(), ema.updates.to_string());
        Ok(())
    }

    pub fn take_ema(&self, ema: &mut Ema, n: usize, device: &Device) -> Result<()> {
        ema.values = self.take_exact("ema", n, device)?;
        ema.updates = self.counter("ema_updates")?;
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let entries: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(n, shape, d)| {
                let bytes = d.iter().flat_map(|v| v.to_le_bytes()).collect();
                (n.clone(), shape.clone(), bytes)
            })
            .collect();
        crate::checkpoint::write_safetensors(&entries, safetensors::Dtype::F32, self.meta.clone())
    }

    pub fn read(path: &Path) -> Result<Self> {
        let bytes = crate::checkpoint::read_file(path)?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::CheckpointFormat(format!("{}: {e}", path.display())))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::CheckpointFormat(format!("{}: {e}", path.display())))?;
        let mut out = StateFile {
            meta: meta.metadata().clone().unwrap_or_default(),
            ..Default::default()
        };
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(Error::CheckpointFormat(format!(
                    "{}: {name} is not f32",
                    path.display()
                )));
            }
            let d: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            out.tensors.push((name, view.shape().to_vec(), d));
        }
        Ok(out)
    }
}

/// One row of `log.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub step: u64,
    pub loss: f64,
    /// Validation figures when they were computed at this step.
    pub val: Option<Validation>,
    pub seconds: f64,
}

/// What a validation reports (fields a trainer does not measure stay `None`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Validation {
    pub psnr: Option<f64>,
    pub ssim: Option<f64>,
    pub loss: Option<f64>,
}

/// `log.csv` header.
pub const LOG_HEADER: &str = "step,loss,val_psnr,val_ssim,val_loss,seconds";

fn log_csv(rows: &[LogRow]) -> String {
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let mut s = String::from(LOG_HEADER);
    s.push('\n');
    for r in rows {
        let v = r.val.unwrap_or_default();
        s.push_str(&format!(
            "{},{},{},{},{},{:.3}\n",
            r.step,
            r.loss,
            opt(v.psnr),
            opt(v.ssim),
            opt(v.loss),
            r.seconds
        ));
    }
    s
}

fn parse_log(text: &str) -> Vec<LogRow> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let num = |k: usize| f.get(k).and_then(|x| x.parse::<f64>().ok());
            let val = Validation {
                psnr: num(2),
                ssim: num(3),
                loss: num(4),
            };
            Some(LogRow {
                step: f.first()?.parse().ok()?,
                loss: num(1)?,
                val: (val != Validation::default()).then_some(val),
                seconds: num(5).unwrap_or(0.0),
            })
        })
        .collect()
}

/// What every trainer does; [`run`] drives it.
pub trait Trainer {
    /// Which trainer (refuses resuming another's state).
    fn kind(&self) -> &'static str;
    /// Settings as JSON (stored in the state; a resume must match them).
    fn settings_json(&self) -> String;
    /// One optimisation step on draw `step`; the loss.
    fn step(&mut self, step: u64) -> Result<f64>;
    /// Validation on held-out data with the EMA weights, when the trainer has it.
    fn validate(&mut self) -> Result<Option<Validation>>;
    /// Weights, EMA, optimizer state into the state file.
    fn save(&self, file: &mut StateFile) -> Result<()>;
    /// The reverse of [`save`](Trainer::save).
    fn load(&mut self, file: &StateFile) -> Result<()>;
    /// Writes the usable model(s) into the run folder.
    fn export(&self, dir: &Path) -> Result<()>;
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out: PathBuf,
    /// Train until this many steps in total.
    pub steps: u64,
    pub resume: bool,
    /// Validate every N steps (0 = never) and at the end.
    pub val_every: u64,
    /// Save state every N steps (0 = only at the end).
    pub save_every: u64,
}

/// Progress of a run, for bars and logs.
pub struct Progress<'a> {
    pub step: u64,
    pub total: u64,
    pub loss: f64,
    pub val: Option<&'a Validation>,
}

/// What [`run`] did.
#[derive(Debug)]
pub struct RunSummary {
    pub first_step: u64,
    pub last_step: u64,
    pub cancelled: bool,
    pub rows: Vec<LogRow>,
}

/// Trains from the saved step (with `resume`) or from scratch up to `opts.steps`, saving the state,
/// the exported model, `log.csv` and `loss.png` at every save point, at the end, and when
/// `progress` returns false (then it stops).
pub fn run(
    trainer: &mut dyn Trainer,
    opts: &RunOptions,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<RunSummary> {
    let out = &opts.out;
    let state_path = out.join(STATE_FILE);
    let log_path = out.join("log.csv");
    let mut rows = Vec::new();
    let mut step = 0u64;
    let mut elapsed = 0.0;
    if opts.resume {
        let file = StateFile::read(&state_path)?;
        let meta: serde_json::Value = serde_json::from_str(
            file.meta
                .get(TRAIN_KEY)
                .map(String::as_str)
                .unwrap_or("null"),
        )
        .map_err(|e| Error::CheckpointFormat(format!("{}: {e}", state_path.display())))?;
        if meta["kind"] != trainer.kind() {
            return Err(Error::CheckpointMismatch(format!(
                "{} holds a {} run, not {}",
                state_path.display(),
                meta["kind"],
                trainer.kind()
            )));
        }
        let saved: serde_json::Value =
            serde_json::from_str(meta["settings"].as_str().unwrap_or("null")).unwrap_or_default();
        let now: serde_json::Value =
            serde_json::from_str(&trainer.settings_json()).unwrap_or_default();
        if saved != now {
            return Err(Error::CheckpointMismatch(format!(
                "{}: the run was started with other settings ({saved}); resume with the same ones ({now})",
                state_path.display()
            )));
        }
        trainer.load(&file)?;
        step = meta["step"]
            .as_u64()
            .ok_or_else(|| missing("its step count"))?;
        elapsed = meta["seconds"]
            .as_f64()
            .ok_or_else(|| missing("its elapsed seconds"))?;
        if let Ok(text) = std::fs::read_to_string(&log_path) {
            rows = parse_log(&text)
                .into_iter()
                .filter(|r| r.step <= step)
                .collect();
        }
    } else if state_path.exists() {
        return Err(Error::Failed(format!(
            "{} already holds a run: pass --resume to continue it, or choose another --out",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let first_step = step;
    let t0 = Instant::now();
    let seconds = |e: f64| e + t0.elapsed().as_secs_f64();
    let save = |trainer: &dyn Trainer, step: u64, rows: &[LogRow]| -> Result<()> {
        let mut file = StateFile::default();
        trainer.save(&mut file)?;
        let meta = serde_json::json!({
            "kind": trainer.kind(),
            "settings": trainer.settings_json(),
            "step": step,
            "seconds": seconds(elapsed),
        });
        file.meta.insert(TRAIN_KEY.into(), meta.to_string());
        // The state goes last: it is the commit point of a save. A kill before it leaves the
        // previous state with a log that runs ahead (resume drops those rows); a kill after it
        // finds the log and the model already at this step.
        write_atomic(&log_path, log_csv(rows).as_bytes())?;
        write_atomic(&out.join("loss.png"), &plot::loss_plot(rows)?)?;
        trainer.export(out)?;
        write_atomic(&state_path, &file.to_bytes()?)?;
        Ok(())
    };
    let mut cancelled = false;
    while step < opts.steps {
        let loss = trainer.step(step)?;
        if !loss.is_finite() {
            return Err(Error::Failed(format!(
                "the loss became {loss} at step {}; state kept at the last save",
                step + 1
            )));
        }
        step += 1;
        let val =
            if (opts.val_every > 0 && step.is_multiple_of(opts.val_every)) || step == opts.steps {
                trainer.validate()?
            } else {
                None
            };
        rows.push(LogRow {
            step,
            loss,
            val,
            seconds: seconds(elapsed),
        });
        let go_on = progress(Progress {
            step,
            total: opts.steps,
            loss,
            val: val.as_ref(),
        });
        if !go_on {
            cancelled = step < opts.steps;
            break;
        }
        if opts.save_every > 0 && step.is_multiple_of(opts.save_every) && step < opts.steps {
            save(trainer, step, &rows)?;
        }
    }
    save(trainer, step, &rows)?;
    Ok(RunSummary {
        first_step,
        last_step: step,
        cancelled,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_round_trips() {
        let rows = vec![
            LogRow {
                step: 1,
                loss: 0.5,
                val: None,
                seconds: 0.1,
            },
            LogRow {
                step: 2,
                loss: 0.25,
                val: Some(Validation {
                    psnr: Some(20.0),
                    ssim: Some(0.5),
                    loss: None,
                }),
                seconds: 0.2,
            },
        ];
        let text = log_csv(&rows);
        assert!(text.starts_with("step,loss,"));
        assert_eq!(parse_log(&text), rows);
    }

    #[test]
    fn presets_build_and_unknown_names_are_named() {
        for name in ["tiny", "small", "base", "sr3-small"] {
            let spec = preset(name, 2).unwrap();
            assert_eq!(spec.network.cond_channels().unwrap(), 1);
            assert_eq!(spec.schedule.timesteps, 2000);
            // each network is run by the schedule of its own family
            assert_eq!(spec.schedule.family, spec.network.family(), "{name}");
        }
        assert!(
            preset("huge", 1)
                .unwrap_err()
                .to_string()
                .contains("tiny, small, base or sr3-small")
        );
    }
}
