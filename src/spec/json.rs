//! A model's full description: network + training schedule ([`ModelSpec`]), read from our own
//! JSON, from the cheff fixtures' `config.json`, or from an upstream SR3 JSON config.

use serde::Serialize;
use serde_json::Value;

use super::{
    BetaKind, CheffUnetConfig, Family, ModelScale, ModelSpec, NetworkConfig, Prediction,
    ScheduleConfig, Sr3UnetConfig,
};
use crate::error::{Error, Result};

impl ModelScale {
    /// Refuses scales that cannot describe an image (non-finite, not positive).
    pub fn validate(&self) -> Result<()> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if !ok(self.chest_px) || self.pixel_mm.is_some_and(|p| !ok(p)) {
            return Err(Error::Config(format!(
                "model scale {:?} mm/px, {} px across the chest: both must be positive numbers",
                self.pixel_mm, self.chest_px
            )));
        }
        Ok(())
    }
}

impl ModelSpec {
    /// Refuses recorded sampler steps that the schedule cannot give (0, or more than T).
    pub fn check_steps(&self) -> Result<()> {
        match self.steps {
            Some(n) if n == 0 || n > self.schedule.timesteps => Err(Error::Config(format!(
                "the model's recorded sampler steps ({n}) must be between 1 and its schedule's T = {}",
                self.schedule.timesteps
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a tone curve that is not monotone grey levels.
    pub fn check_tone(&self) -> Result<()> {
        match &self.tone {
            Some(t) => t.validate().map_err(Error::Config),
            None => Ok(()),
        }
    }

    /// The family of the network.
    pub fn family(&self) -> Family {
        self.network.family()
    }

    /// The authors' published DDPM-HQ setting: `Unet(dim=16, channels=2, out_dim=1,
    /// dim_mults=(1,2,4,8,16,32,32,32))`, cosine schedule with T = 2000. Used for a cheff
    /// checkpoint given without a config.
    pub fn authors_default() -> Self {
        Self {
            network: NetworkConfig::Cheff(CheffUnetConfig::new()),
            schedule: ScheduleConfig::cheff_default(),
            prediction: Prediction::Eps,
            scale: None,
            steps: None,
            tone: None,
        }
    }

    /// Parses any of the accepted JSON layouts:
    /// - ours: `{"network": {"family": ..., ...}, "schedule": {...}}`;
    /// - cheff: `{"model": {dim, dim_mults, ...}, "schedule": {name, timesteps, kwargs}}`;
    /// - SR3 upstream: `{"model": {"unet": {...}, "beta_schedule": {"val": ...}, "diffusion": {...}}}`.
    pub fn from_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::Config(format!("config is not valid JSON: {e}")))?;
        if v.get("network").is_some() {
            let spec: Self =
                serde_json::from_value(v).map_err(|e| Error::Config(format!("config: {e}")))?;
            if let Some(s) = &spec.scale {
                s.validate()?;
            }
            spec.check_steps()?;
            spec.check_tone()?;
            return Ok(spec);
        }
        let model = v.get("model").ok_or_else(|| {
            Error::Config(
                "config has neither `network` (dxr) nor `model` (cheff / SR3) section".into(),
            )
        })?;
        if let Some(unet) = model.get("unet") {
            return Self::from_sr3_json(model, unet);
        }
        Self::from_cheff_json(model, v.get("schedule"))
    }

    fn from_cheff_json(model: &Value, schedule: Option<&Value>) -> Result<Self> {
        let d = CheffUnetConfig::new();
        let get_usize = |k: &str, default: usize| -> Result<usize> {
            match model.get(k) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x.as_u64().map(|n| n as usize).ok_or_else(|| {
                    Error::Config(format!("model.{k} must be a non-negative integer"))
                }),
            }
        };
        let opt_usize = |k: &str, default: Option<usize>| -> Result<Option<usize>> {
            match model.get(k) {
                None => Ok(default),
                Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_u64()
                    .map(|n| Some(n as usize))
                    .ok_or_else(|| Error::Config(format!("model.{k} must be an integer or null"))),
            }
        };
        let dim_mults = match model.get("dim_mults") {
            None => d.dim_mults.clone(),
            Some(x) => serde_json::from_value(x.clone())
                .map_err(|_| Error::Config("model.dim_mults must be a list of integers".into()))?,
        };
        let channels = get_usize("channels", d.channels)?;
        let network = CheffUnetConfig {
            dim: get_usize("dim", d.dim)?,
            init_dim: opt_usize("init_dim", None)?,
            out_dim: opt_usize("out_dim", None)?,
            dim_mults,
            num_attention_layer: get_usize("num_attention_layer", d.num_attention_layer)?,
            channels,
            block_groups: get_usize("block_groups", d.block_groups)?,
        };
        let schedule = match schedule {
            None => ScheduleConfig::cheff_default(),
            Some(s) => {
                let name = s.get("name").and_then(Value::as_str).unwrap_or("cosine");
                let kw = s.get("kwargs");
                let f = |k: &str, dflt: f64| {
                    kw.and_then(|kw| kw.get(k))
                        .and_then(Value::as_f64)
                        .unwrap_or(dflt)
                };
                ScheduleConfig {
                    family: Family::Cheff,
                    kind: name.parse()?,
                    timesteps: s.get("timesteps").and_then(Value::as_u64).unwrap_or(2000) as usize,
                    beta_start: f("beta_start", 1e-4),
                    beta_end: f("beta_end", 0.02),
                }
            }
        };
        Self::checked_eps(NetworkConfig::Cheff(network), schedule)
    }

    /// The spec of a reference checkpoint (ε prediction, no recorded scale, steps or tone),
    /// refused if its network is not one we can build.
    fn checked_eps(network: NetworkConfig, schedule: ScheduleConfig) -> Result<Self> {
        let spec = Self {
            network,
            schedule,
            prediction: Prediction::Eps,
            scale: None,
            steps: None,
            tone: None,
        };
        spec.network.validate()?;
        Ok(spec)
    }

    fn from_sr3_json(model: &Value, unet: &Value) -> Result<Self> {
        let mut cfg: Sr3UnetConfig = with_defaults(&Sr3UnetConfig::new(), unet)
            .map_err(|e| Error::Config(format!("model.unet: {e}")))?;
        if let Some(size) = model
            .pointer("/diffusion/image_size")
            .and_then(Value::as_u64)
        {
            cfg.image_size = size as usize;
        }
        let bs = model
            .pointer("/beta_schedule/val")
            .or_else(|| model.pointer("/beta_schedule/train"))
            .ok_or_else(|| {
                Error::Config("SR3 config has no model.beta_schedule.val / train".into())
            })?;
        let schedule = Self::sr3_schedule(bs)?;
        Self::checked_eps(NetworkConfig::Sr3(cfg), schedule)
    }

    /// An SR3 `{schedule, n_timestep, linear_start, linear_end}` object.
    pub fn sr3_schedule(bs: &Value) -> Result<ScheduleConfig> {
        let kind: BetaKind = bs
            .get("schedule")
            .and_then(Value::as_str)
            .unwrap_or("linear")
            .parse()?;
        Ok(ScheduleConfig {
            family: Family::Sr3,
            kind,
            timesteps: bs
                .get("n_timestep")
                .and_then(Value::as_u64)
                .ok_or_else(|| Error::Config("beta schedule without n_timestep".into()))?
                as usize,
            beta_start: bs
                .get("linear_start")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            beta_end: bs.get("linear_end").and_then(Value::as_f64).unwrap_or(1e-2),
        })
    }

    /// Our own JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("spec serialises")
    }
}

/// `given` laid over the serialised `default` (burn configs have no serde defaults).
fn with_defaults<T: Serialize + serde::de::DeserializeOwned>(
    default: &T,
    given: &Value,
) -> serde_json::Result<T> {
    let mut merged = serde_json::to_value(default)?;
    if let (Value::Object(m), Value::Object(g)) = (&mut merged, given) {
        for (k, v) in g {
            m.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_steps_are_saved_read_back_and_checked_against_t() {
        let spec = ModelSpec::authors_default();
        assert!(!serde_json::to_string(&spec).unwrap().contains(r#""steps""#));
        let stepped = ModelSpec {
            steps: Some(4),
            ..spec.clone()
        };
        let text = serde_json::to_string(&stepped).unwrap();
        assert_eq!(ModelSpec::from_json(&text).unwrap(), stepped);
        let t = spec.schedule.timesteps;
        for bad in [0, t + 1] {
            let text = serde_json::to_string(&ModelSpec {
                steps: Some(bad),
                ..spec.clone()
            })
            .unwrap();
            let e = ModelSpec::from_json(&text).unwrap_err().to_string();
            assert!(e.contains("recorded sampler steps"), "{e}");
        }
    }

    #[test]
    fn the_objective_is_saved_only_when_it_is_not_the_authors() {
        let eps = ModelSpec::authors_default();
        let text = serde_json::to_string(&eps).unwrap();
        assert!(!text.contains("prediction"), "{text}");
        let x0 = ModelSpec {
            prediction: Prediction::X0,
            ..eps
        };
        let text = serde_json::to_string(&x0).unwrap();
        assert!(text.contains(r#""prediction":"x0""#), "{text}");
        assert_eq!(serde_json::from_str::<ModelSpec>(&text).unwrap(), x0);
    }

    #[test]
    fn parses_the_three_layouts() {
        let cheff = r#"{"model": {"dim": 8, "init_dim": null, "out_dim": 1, "dim_mults": [1, 2], "num_attention_layer": 5,
            "channels": 2, "block_groups": 8}, "schedule": {"name": "linear", "timesteps": 6, "kwargs": {"beta_start": 0.001, "beta_end": 0.3}}}"#;
        let s = ModelSpec::from_json(cheff).unwrap();
        assert_eq!(s.family(), Family::Cheff);
        assert_eq!(s.schedule.kind, BetaKind::Linear);
        assert_eq!(s.schedule.beta_end, 0.3);
        let sr3 = r#"{"model": {"unet": {"in_channel": 6, "out_channel": 3, "inner_channel": 16, "norm_groups": 8,
            "channel_multiplier": [1, 2], "attn_res": [8], "res_blocks": 1, "dropout": 0},
            "beta_schedule": {"val": {"schedule": "quad", "n_timestep": 5, "linear_start": 1e-3, "linear_end": 0.4}},
            "diffusion": {"image_size": 16, "channels": 3, "conditional": true}}}"#;
        let s = ModelSpec::from_json(sr3).unwrap();
        assert_eq!(s.family(), Family::Sr3);
        assert_eq!(s.schedule.kind, BetaKind::Quadratic);
        let ours = s.to_json();
        assert_eq!(ModelSpec::from_json(&ours).unwrap(), s);
        assert!(
            ModelSpec::from_json("{}")
                .unwrap_err()
                .to_string()
                .contains("section")
        );
        assert!(
            ModelSpec::from_json("not json")
                .unwrap_err()
                .to_string()
                .contains("JSON")
        );
    }
}
