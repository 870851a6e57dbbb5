//! The MUNIT networks: the shape of every part on tiny inputs, finite losses, LSGAN targets.

use super::*;

#[test]
fn shapes_of_every_part_on_tiny_inputs() {
    let device = crate::device::cpu();
    let cfg = MunitConfig::preset("tiny").unwrap();
    let g = cfg.init_gen(&device).unwrap();
    let d = cfg.init_dis(&device).unwrap();
    let x = Tensor::<4>::random(
        [2, 1, 32, 48],
        burn::tensor::Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let c = g.a.encode_content(x.clone());
    assert_eq!(c.dims(), [2, 8 * 4, 8, 12]);
    let s = g.a.encode_style(x.clone());
    assert_eq!(s.dims(), [2, 8]);
    let y = g.b.decode(c, s);
    assert_eq!(y.dims(), [2, 1, 32, 48]);
    let v: Vec<f32> = y.into_data().try_to_vec::<f32>().unwrap();
    assert!(v.iter().all(|v| v.abs() <= 1.0), "tanh output");
    let outs = d.a.forward(x.clone());
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[0].dims(), [2, 1, 8, 12]);
    assert_eq!(outs[1].dims(), [2, 1, 4, 6]);
    let pad = reflect_pad(
        Tensor::<4>::from_data([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]], &device),
        1,
    );
    let p: Vec<f32> = pad.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(&p[..5], &[5.0, 4.0, 5.0, 6.0, 5.0]);
}

#[test]
fn losses_are_finite_and_lsgan_targets_are_right() {
    let device = crate::device::cpu();
    let cfg = MunitConfig::preset("tiny").unwrap();
    let g = cfg.init_gen(&device).unwrap();
    let d = cfg.init_dis(&device).unwrap();
    let rand = |s: [usize; 4]| {
        Tensor::<4>::random(s, burn::tensor::Distribution::Uniform(-1.0, 1.0), &device)
    };
    let (x_a, x_b) = (rand([2, 1, 32, 32]), rand([2, 1, 32, 32]));
    let style = || {
        Tensor::<2>::random(
            [2, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        )
    };
    let l = g.losses(
        &d,
        x_a.clone(),
        x_b,
        style(),
        style(),
        &MunitWeights::default(),
    );
    let total = l.total.into_scalar::<f32>();
    let parts = [l.gan, l.recon_x, l.recon_s, l.recon_c].map(|t| t.into_scalar::<f32>());
    assert!(total.is_finite() && parts.iter().all(|p| p.is_finite() && *p >= 0.0));
    let w = MunitWeights::default();
    let sum = parts[0] * w.gan as f32
        + parts[1] * w.recon_x as f32
        + parts[2] * w.recon_s as f32
        + parts[3] * w.recon_c as f32;
    assert!((total - sum).abs() < 1e-4 * sum.abs().max(1.0));
    // LSGAN: a discriminator output D gives (D)² + (D − 1)² on fake = real = x
    let outs = d.a.forward(x_a.clone());
    let expect: f32 = outs
        .iter()
        .map(|o| {
            let v: Vec<f32> = o.clone().into_data().try_to_vec::<f32>().unwrap();
            let n = v.len() as f32;
            v.iter().map(|d| d * d).sum::<f32>() / n
                + v.iter().map(|d| (d - 1.0) * (d - 1.0)).sum::<f32>() / n
        })
        .sum();
    let got = d.a.loss_dis(x_a.clone(), x_a).into_scalar::<f32>();
    assert!((got - expect).abs() < 1e-4, "{got} vs {expect}");
}
