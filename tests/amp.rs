//! Mixed precision's loss scaling: the unscale kernel against its reference on awkward
//! lengths, with and without inf and NaN, and the scale's update rule.

mod common;

use common::{gpu, random};
use lim::Tensor;
use lim::autograd::Var;
use lim::ops::amp::{reference, unscale_and_check};
use lim::optim::LossScale;

#[test]
fn unscale_matches_the_reference_and_finds_every_kind_of_non_finite() {
    let gpu = gpu();
    let lengths = [1, 255, 256, 257, 70_001];
    let poisons = [
        None,
        Some(f32::INFINITY),
        Some(f32::NEG_INFINITY),
        Some(f32::NAN),
    ];
    for (k, &len) in lengths.iter().enumerate() {
        for (p, poison) in poisons.into_iter().enumerate() {
            // Several tensors; the poison sits in the last element of the last one, where an
            // off-by-one bound would miss it.
            let mut hosts: Vec<Vec<f32>> = (0..3)
                .map(|t| random(len + t, (10 * k + p + t) as u64))
                .map(|v| v.into_iter().map(|x| x * 1e4).collect())
                .collect();
            if let Some(bad) = poison {
                *hosts[2].last_mut().unwrap() = bad;
            }
            let tensors: Vec<Tensor> = hosts
                .iter()
                .map(|h| Tensor::from_slice(&gpu, &[h.len()], h).unwrap())
                .collect();
            let finite = unscale_and_check(&tensors.iter().collect::<Vec<_>>(), 1.0 / 1024.0);
            let mut want_finite = true;
            for (t, h) in tensors.iter().zip(&hosts) {
                let h: Vec<f64> = h.iter().map(|&v| v as f64).collect();
                let (want, finite) = reference::unscale_and_check(&h, 1.0 / 1024.0);
                want_finite &= finite;
                let got = t.to_vec().unwrap();
                // A power-of-two scale is exact in f32 too: the results agree to the bit.
                for (i, (g, w)) in got.iter().zip(want.iter().map(|&w| w as f32)).enumerate() {
                    assert!(
                        g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                        "len {len} poison {poison:?} element {i}: {g} != {w}"
                    );
                }
            }
            assert_eq!(finite.unwrap(), want_finite, "len {len} poison {poison:?}");
            assert_eq!(want_finite, poison.is_none());
        }
    }
}

#[test]
fn the_scale_halves_on_overflow_and_doubles_after_a_run_of_finite_steps() {
    let mut s = LossScale {
        growth_interval: 3,
        ..LossScale::default()
    };
    assert_eq!(s.scale, 65536.0);
    let steps = [true, true, false, true, true, true, true];
    let want = [
        (65536.0, 1),
        (65536.0, 2),
        (32768.0, 0),
        (32768.0, 1),
        (32768.0, 2),
        (65536.0, 0),
        (65536.0, 1),
    ];
    for (finite, (scale, good)) in steps.into_iter().zip(want) {
        s.update(finite);
        assert_eq!((s.scale, s.good_steps), (scale, good), "after {finite}");
    }
}

#[test]
fn unscale_divides_the_parameters_gradients() {
    let gpu = gpu();
    let w = Var::param(Tensor::from_slice(&gpu, &[3], &[1.0, 2.0, 3.0]).unwrap());
    let unused = Var::param(Tensor::from_slice(&gpu, &[1], &[1.0]).unwrap());
    let s = LossScale::default();
    w.scale(s.scale)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(s.unscale(&[w.clone(), unused.clone()]).unwrap());
    assert_eq!(w.grad().unwrap().to_vec().unwrap(), vec![1.0; 3]);
    assert!(unused.grad().is_none());
}
