//! The workloads of lim's benchmarks, shared by `lim bench` and the criterion benches in
//! `benches/`, so that both measure the same work: deterministic inputs, ResNet-18's
//! convolutions at the peers' setting, a ResNet train step, CT-like slices, the paper's
//! preprocessing layouts.

use std::path::Path;
use std::sync::Arc;

use crate::autograd::Var;
use crate::data::GreyImage;
use crate::io::IoError;
use crate::nn::{self, Arch, Random, ResNet, ResNetConfig};
use crate::ops::conv2d::{Conv2dDims, ConvPass, ConvVariant, LayerShape, RESNET18_B16_64PX};
use crate::optim::{Adam, Optimizer, Sgd};
use crate::{DType, Gpu, Result, Tensor};

/// The decode bound of hashing PNG files: a PNG's bytes decoded by the `png` crate (which
/// `image` uses) into a buffer.
pub fn decode_png(bytes: &[u8]) -> std::result::Result<Vec<u8>, png::DecodingError> {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info()?;
    let mut buffer = vec![0; reader.output_buffer_size().unwrap_or(0)];
    reader.next_frame(&mut buffer)?;
    Ok(buffer)
}

/// The CPU's name (Linux's /proc/cpuinfo, else the architecture), for the record of where a
/// CPU figure was measured.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The two layouts of the paper's preprocessing scripts, built by [`paper_layouts`].
pub const PAPER_LAYOUTS: [&str; 2] = ["petct", "lidc"];

/// The inputs of the paper's two preprocessing scripts, built under `out` from the sample
/// chest CTs in `samples` (data/samples), `volumes` of each, as those scripts find their data:
/// `petct/PETCT_{n:04}/study/CT.nii.gz`, the two NRRD volumes in turn as gzipped NIfTI
/// (`lim bench preprocess`'s PET-CT input), and `lidc/LIDC-IDRI-{n+1:04}/study/series/`, each
/// a copy of the sample DICOM series (its LIDC input). Files already there are kept.
pub fn paper_layouts(samples: &Path, out: &Path, volumes: usize) -> Result<()> {
    let nrrd = ["lung1_image", "lung2_image"]
        .map(|name| samples.join("ct_volumes").join(format!("{name}.nrrd")));
    let series = samples.join("dicom").join("lung1_series");
    let missing = nrrd.iter().chain([&series]).find(|p| !p.exists());
    if let Some(missing) = missing {
        return Err(
            IoError::invalid(missing, "missing: run `make samples` in the lim folder").into(),
        );
    }
    let mut read = [None, None];
    let series_files = crate::io::walk(std::slice::from_ref(&series))?.files;
    for n in 0..volumes {
        let study = out.join(format!("petct/PETCT_{n:04}/study"));
        let nifti = study.join("CT.nii.gz");
        if !nifti.exists() {
            std::fs::create_dir_all(&study).map_err(|e| IoError::io(&study, e))?;
            if read[n % 2].is_none() {
                read[n % 2] = Some(crate::io::read_volume(&nrrd[n % 2])?);
            }
            let volume = read[n % 2].as_ref().expect("read just above");
            crate::io::nifti::write(&nifti, volume.dims, &volume.samples)?;
        }
        let to = out.join(format!("lidc/LIDC-IDRI-{:04}/study/series", n + 1));
        std::fs::create_dir_all(&to).map_err(|e| IoError::io(&to, e))?;
        for file in &series_files {
            let copy = to.join(file.file_name().expect("a walked file has a name"));
            if !copy.exists() {
                crate::io::copy_atomic(file, &copy)?;
            }
        }
    }
    Ok(())
}

/// Deterministic values in [-0.5, 0.5).
pub fn pattern(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// A tensor of `shape` holding [`pattern`].
pub fn pattern_tensor(gpu: &Arc<Gpu>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_slice(gpu, shape, &pattern(shape.iter().product()))
}

/// One of ResNet-18's convolutions at batch 16 and 64 x 64 input (where burn and PyTorch
/// are measured), with its input, weight and output gradient.
pub struct ConvCase {
    pub layer: LayerShape,
    pub dims: Conv2dDims,
    x: Tensor,
    w: Tensor,
    g: Tensor,
}

impl ConvCase {
    /// Every distinct layer of [`RESNET18_B16_64PX`].
    pub fn resnet18(gpu: &Arc<Gpu>) -> Result<Vec<ConvCase>> {
        RESNET18_B16_64PX
            .iter()
            .map(|layer| {
                let dims = Conv2dDims::infer(&layer.x, &layer.w, layer.spec)?;
                Ok(ConvCase {
                    layer: *layer,
                    x: pattern_tensor(gpu, &layer.x)?,
                    w: pattern_tensor(gpu, &layer.w)?,
                    g: pattern_tensor(gpu, &dims.out_shape())?,
                    dims,
                })
            })
            .collect()
    }

    /// One pass with one kernel variant, in f32.
    pub fn run(&self, pass: ConvPass, variant: ConvVariant) -> Result<Tensor> {
        let (layer, f32) = (&self.layer, DType::F32);
        match pass {
            ConvPass::Forward => self.x.conv2d_with(&self.w, layer.spec, variant, f32),
            ConvPass::BackwardInput => self
                .g
                .conv2d_backward_input_with(&self.w, &layer.x, layer.spec, variant, f32),
            ConvPass::BackwardWeight => self
                .g
                .conv2d_backward_weight_with(&self.x, &layer.w, layer.spec, variant, f32),
        }
    }
}

/// The optimisers a benchmarked train step takes, each with one set of settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    /// lr 0.01, momentum 0.9, weight decay 1e-4: the supervised baseline.
    Sgd,
    /// The paper's SwAV settings: lr 0.15, momentum 0.9, weight decay 1e-6, trust 0.001.
    Lars,
    /// lr 1e-4: the paper's fine-tuning.
    Adam,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<OptimizerKind, String> {
        OptimizerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("`{s}` is not an optimiser: use sgd, lars or adam"))
    }
}

impl OptimizerKind {
    pub const ALL: [OptimizerKind; 3] =
        [OptimizerKind::Sgd, OptimizerKind::Lars, OptimizerKind::Adam];

    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Lars => "lars",
            OptimizerKind::Adam => "adam",
        }
    }

    pub fn build(self, params: Vec<Var>) -> Box<dyn Optimizer> {
        match self {
            OptimizerKind::Sgd => Box::new(
                Sgd::new(params, 0.01)
                    .momentum(0.9, false)
                    .weight_decay(1e-4),
            ),
            OptimizerKind::Lars => Box::new(
                Sgd::lars(params, 0.15)
                    .momentum(0.9, false)
                    .weight_decay(1e-6),
            ),
            OptimizerKind::Adam => Box::new(Adam::new(params, 1e-4)),
        }
    }
}

/// One training step of a torchvision ResNet with 10 classes on fixed images and labels:
/// forward in training mode, cross-entropy, backward, the optimiser's update.
pub struct TrainStep {
    pub model: ResNet,
    pub optimizer: Box<dyn Optimizer>,
    x: Var,
    labels: Vec<usize>,
}

impl TrainStep {
    /// `batch` images of `size` x `size`; with `freeze_convolutions`, the convolutions'
    /// weights take no gradient (the paper's fine-tuning protocol).
    pub fn new(
        gpu: &Arc<Gpu>,
        arch: Arch,
        batch: usize,
        size: usize,
        optimizer: OptimizerKind,
        freeze_convolutions: bool,
    ) -> Result<TrainStep> {
        let config = ResNetConfig {
            num_classes: Some(10),
            ..ResNetConfig::torchvision(arch)
        };
        let model = ResNet::new(config, &mut Random::new(gpu, 0))?;
        let params = nn::parameters(&model);
        if freeze_convolutions {
            for p in params.iter().filter(|p| p.shape().len() == 4) {
                p.set_requires_grad(false)?;
            }
        }
        Ok(TrainStep {
            model,
            optimizer: optimizer.build(params),
            x: Var::constant(pattern_tensor(gpu, &[batch, 3, size, size])?),
            labels: (0..batch).map(|i| i % 10).collect(),
        })
    }

    /// One step; its loss, read back.
    pub fn step(&mut self) -> Result<f32> {
        let (model, x, labels) = (&self.model, &self.x, &self.labels);
        let loss = self
            .optimizer
            .train_step(&mut || model.forward(x, true)?.cross_entropy_classes(labels))?;
        Ok(loss.value().to_vec()?[0])
    }
}

/// `n` CT-like 16-bit slices of `side` x `side`: a disc of tissue with structure inside,
/// different in each slice.
pub fn ct_like_slices(n: usize, side: usize) -> Vec<GreyImage> {
    let (centre, radius) = (side as f64 / 2.0, side as f64 * 200.0 / 512.0);
    (0..n)
        .map(|i| GreyImage {
            width: side,
            height: side,
            pixels: (0..side * side)
                .map(|p| {
                    let (x, y) = ((p % side) as f64 - centre, (p / side) as f64 - centre);
                    let inside = x * x + y * y < radius * radius;
                    let texture = ((x * 0.05 + i as f64).sin() * (y * 0.07).cos() + 1.0) * 0.25;
                    (65535.0 * if inside { 0.3 + texture } else { 0.0 }) as u16
                })
                .collect(),
        })
        .collect()
}
