//! Sinkhorn-Knopp (`shaders/sinkhorn.wgsl`): SwAV's codes, an equal partition of a batch
//! over the prototypes, computed without gradient.

use crate::dist::{self, Collective, Reduce, Solo};
use crate::error::{Error, Result};
use crate::gpu::shader;
use crate::tensor::{DType, Tensor};
use crate::uniform;

uniform! {
    pub(crate) struct Params for [shader::SINKHORN] {
        samples: u32,
        prototypes: u32,
        scale: f32,
        log_count: f32,
        last: u32,
    }
}

/// The codes `[B, K]` of scores `[B, K]` (samples by prototypes), each row summing to 1:
/// the Sinkhorn-Knopp iteration of facebookresearch/swav and of the paper's code
/// (`Q = exp(scores / epsilon)`, then `iterations` rounds of normalising each prototype's
/// total to 1/K and each sample's to 1/B). SwAV uses epsilon 0.05 and 3 iterations.
///
/// It runs in the log domain: equal to the paper's formula in exact arithmetic, and finite
/// for any finite scores, where the paper's `exp(scores / 0.05)` overflows f16 at scores
/// near 1 and f32 beyond 4.4. With 0 iterations each row is `softmax(scores / epsilon)`.
pub fn sinkhorn(scores: &Tensor, epsilon: f32, iterations: usize) -> Result<Tensor> {
    sinkhorn_across(scores, epsilon, iterations, &Solo)
}

/// `[B, K]` of non-empty f32 scores and a positive epsilon.
fn check(scores: &Tensor, epsilon: f32) -> Result<(usize, usize)> {
    let &[samples, prototypes] = scores.shape() else {
        return Err(Error::InvalidArgument {
            op: "sinkhorn",
            why: format!("takes scores [B, K], got shape {:?}", scores.shape()),
        });
    };
    scores.expect_dtype("sinkhorn", DType::F32)?;
    if samples == 0 || prototypes == 0 {
        return Err(Error::InvalidArgument {
            op: "sinkhorn",
            why: format!(
                "takes non-empty f32 scores, got {:?} {:?}",
                scores.dtype(),
                scores.shape()
            ),
        });
    }
    if !(epsilon > 0.0 && epsilon.is_finite()) {
        return Err(Error::InvalidArgument {
            op: "sinkhorn",
            why: format!("epsilon must be positive, got {epsilon}"),
        });
    }
    Ok((samples, prototypes))
}

/// [`sinkhorn`] of a batch split over the ranks of `comm`, each holding its own rows `[B_r,
/// K]`: every rank gets the codes of its rows as one process would compute them on the whole
/// batch, as facebookresearch/swav's `distributed_sinkhorn`. Each iteration all-reduces K
/// values twice (each prototype's largest log-sum-exp over ranks, then the sum of the ranks'
/// shares under it, so nothing overflows), and the batch size is the ranks' summed (as
/// lightly's), not assumed equal. One rank alone is [`sinkhorn`].
pub fn sinkhorn_across(
    scores: &Tensor,
    epsilon: f32,
    iterations: usize,
    comm: &dyn Collective,
) -> Result<Tensor> {
    let (samples, prototypes) = check(scores, epsilon)?;
    let total = dist::total(comm, samples)?;
    let gpu = scores.gpu();
    let codes = scores.deep_clone()?;
    let l = codes.binding("sinkhorn scores")?;
    let by_sample = gpu.kernel(&shader::SINKHORN, "samples", &[])?;
    let params = |scale: f32, log_count: usize, last: bool| Params {
        samples: samples as u32,
        prototypes: prototypes as u32,
        scale,
        log_count: (log_count as f32).ln(),
        last: last as u32,
    };
    let sample_groups = gpu.grid_1d(samples as u64, &by_sample.label)?;
    // One rank normalises each prototype in one pass; several all-reduce between two.
    let fused = match comm.size() {
        1 => {
            let kernel = gpu.kernel(&shader::SINKHORN, "prototypes", &[])?;
            let groups = gpu.grid_1d(prototypes as u64, &kernel.label)?;
            Some((kernel, groups))
        }
        _ => None,
    };
    // The first pass reads the scores and divides them by epsilon.
    let mut scale = 1.0 / epsilon;
    for round in 0..iterations {
        let by_prototype = params(scale, prototypes, false);
        match &fused {
            Some((kernel, groups)) => {
                gpu.dispatch(kernel, &by_prototype, &[("l", l.clone())], *groups)?
            }
            None => prototypes_across(&codes, &by_prototype, comm)?,
        }
        scale = 1.0;
        gpu.dispatch(
            &by_sample,
            &params(1.0, total, round + 1 == iterations),
            &[("l", l.clone())],
            sample_groups,
        )?;
    }
    if iterations == 0 {
        gpu.dispatch(
            &by_sample,
            &params(scale, total, true),
            &[("l", l)],
            sample_groups,
        )?;
    }
    Ok(codes)
}

/// The prototypes' pass over every rank's samples: each rank's log-sum-exp per prototype,
/// their all-reduce (the largest, then the shares under it), and the shift by the total.
fn prototypes_across(codes: &Tensor, params: &Params, comm: &dyn Collective) -> Result<()> {
    let gpu = codes.gpu();
    let k = params.prototypes as usize;
    let lse = Tensor::zeros(gpu, &[k], DType::F32)?;
    let local_lse = gpu.kernel(&shader::SINKHORN, "prototype_lse", &[])?;
    let groups = gpu.grid_1d(k as u64, &local_lse.label)?;
    let l = codes.binding("sinkhorn scores")?;
    gpu.dispatch(
        &local_lse,
        params,
        &[("l", l.clone()), ("lse", lse.binding("sinkhorn lse")?)],
        groups,
    )?;
    let local = lse.to_vec()?;
    let mut top = local.clone();
    comm.all_reduce(&mut top, Reduce::Max)?;
    let mut shares: Vec<f32> = local.iter().zip(&top).map(|(v, t)| (v - t).exp()).collect();
    comm.all_reduce(&mut shares, Reduce::Sum)?;
    let log_k = (k as f32).ln();
    let shift: Vec<f32> = top
        .iter()
        .zip(&shares)
        .map(|(t, s)| t + s.ln() + log_k)
        .collect();
    let shift = Tensor::from_slice(gpu, &[k], &shift)?;
    let apply = gpu.kernel(&shader::SINKHORN, "prototype_shift", &[])?;
    gpu.dispatch(
        &apply,
        params,
        &[("l", l), ("shift", shift.binding("sinkhorn shift")?)],
        groups,
    )?;
    Ok(())
}

/// CPU references in f64.
pub mod reference {
    /// The paper's code (`swav_module_lidc.py`, `SwAV.sinkhorn`) as written: exp, then
    /// divisions by sums. It overflows where `scores / epsilon` exceeds about 709.
    pub fn sinkhorn_paper(scores: &[f64], k: usize, epsilon: f64, iterations: usize) -> Vec<f64> {
        let b = scores.len() / k;
        let mut q: Vec<f64> = scores.iter().map(|s| (s / epsilon).exp()).collect();
        let total: f64 = q.iter().sum();
        q.iter_mut().for_each(|v| *v /= total);
        for _ in 0..iterations {
            for j in 0..k {
                let sum: f64 = (0..b).map(|i| q[i * k + j]).sum();
                (0..b).for_each(|i| q[i * k + j] *= 1.0 / k as f64 / sum);
            }
            for row in q.chunks_mut(k) {
                let sum: f64 = row.iter().sum();
                row.iter_mut().for_each(|v| *v *= 1.0 / b as f64 / sum);
            }
        }
        for row in q.chunks_mut(k) {
            let sum: f64 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= sum);
        }
        q
    }

    fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
        let top = values.clone().fold(f64::NEG_INFINITY, f64::max);
        top + values.map(|v| (v - top).exp()).sum::<f64>().ln()
    }

    /// The same in the log domain, finite for any finite scores.
    pub fn sinkhorn_log(scores: &[f64], k: usize, epsilon: f64, iterations: usize) -> Vec<f64> {
        let b = scores.len() / k;
        let mut l: Vec<f64> = scores.iter().map(|s| s / epsilon).collect();
        for _ in 0..iterations {
            for j in 0..k {
                let lse = log_sum_exp((0..b).map(|i| l[i * k + j]));
                (0..b).for_each(|i| l[i * k + j] -= lse + (k as f64).ln());
            }
            for row in l.chunks_mut(k) {
                let lse = log_sum_exp(row.iter().copied());
                row.iter_mut().for_each(|v| *v -= lse + (b as f64).ln());
            }
        }
        for row in l.chunks_mut(k) {
            let lse = log_sum_exp(row.iter().copied());
            row.iter_mut().for_each(|v| *v = (*v - lse).exp());
        }
        l
    }
}
