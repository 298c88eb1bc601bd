//! The encoder a downstream task starts from: a ResNet backbone with the weights of a
//! `lim pretrain` checkpoint (which names its own architecture, width, channels, normalisation
//! and crop size), of a torchvision state dict in safetensors or a PyTorch checkpoint (read
//! by [`crate::io::torch::load_state_dict`]), or torchvision's random
//! initialisation (the scratch baseline). Shared by `lim embed` and `lim evaluate`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::nn::{Arch, Init, Random, ResNet, ResNetConfig, Source, StateDict};
use crate::ssl::pretrain::FORMAT;
use crate::{Error, Gpu, Result, Tensor};

/// What the user asked for; `None` and empty fields take the checkpoint's values, else
/// torchvision's (ResNet-18, 3 channels, width 1, ImageNet's normalisation).
#[derive(Clone, Debug, Default)]
pub struct EncoderOptions {
    pub arch: Option<String>,
    pub weights: Option<PathBuf>,
    pub in_channels: Option<usize>,
    pub width: Option<f32>,
    /// Per channel, or one value for every channel (torchvision's `Normalize` broadcasts).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// The random initialisation's seed: of the whole network where there are no weights,
    /// else of the new classifier.
    pub seed: u64,
    /// A new classifier `fc` with this many outputs (torchvision's initialisation; a
    /// checkpoint's own `fc` is never used), or none: the pooled features are the output.
    pub classes: Option<usize>,
}

/// A backbone ready to embed images.
pub struct Encoder {
    pub model: ResNet,
    pub arch: String,
    pub channels: usize,
    /// One value per input channel.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// The side of the large crops it was pre-trained on, where a checkpoint says so.
    pub trained_size: Option<usize>,
    /// The weights file, or `None` for the random initialisation.
    pub weights: Option<PathBuf>,
}

/// What a `lim pretrain` checkpoint's metadata says about its backbone.
#[derive(Clone, Debug, PartialEq)]
pub struct Pretrained {
    pub arch: String,
    pub width: f32,
    pub in_channels: usize,
    pub mean: f32,
    pub std: f32,
    pub crop_size: Option<usize>,
}

impl Pretrained {
    /// The backbone's description in `state`, if it is a `lim pretrain` checkpoint.
    pub fn of(state: &StateDict) -> Result<Option<Pretrained>> {
        let meta = state.metadata();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Ok(None);
        }
        let invalid = |why: String| Error::InvalidArgument {
            op: "checkpoint",
            why: format!("{}: {why}", state.file()),
        };
        let field = |key: &str| {
            meta.get(key)
                .ok_or_else(|| invalid(format!("no `{key}` in the checkpoint's metadata")))
        };
        let number = |key: &str| -> Result<f32> {
            field(key)?
                .parse()
                .map_err(|e| invalid(format!("`{key}`: {e}")))
        };
        Ok(Some(Pretrained {
            arch: field("arch")?.clone(),
            width: number("width")?,
            in_channels: number("in_channels")? as usize,
            mean: number("mean")?,
            std: number("std")?,
            crop_size: meta.get("crop_size").and_then(|v| v.parse().ok()),
        }))
    }
}

/// Prefixes of what a checkpoint holds besides the backbone: a classifier, a SwAV head, the
/// optimiser's state.
const NOT_BACKBONE: [&str; 5] = [
    "fc.",
    "projection_head.",
    "prototypes.",
    "optimizer.",
    "queue.",
];

/// The backbone from a checkpoint, the classifier `fc` from the random initialisation.
struct NewClassifier<'a> {
    state: &'a mut StateDict,
    random: Random,
}

impl Source for NewClassifier<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        match name.starts_with("fc.") {
            true => self.random.tensor(name, shape, init),
            false => self.state.tensor(name, shape, init),
        }
    }

    fn count(&mut self, name: &str) -> Result<u64> {
        self.state.count(name)
    }
}

impl Encoder {
    pub fn load(gpu: &Arc<Gpu>, o: &EncoderOptions) -> Result<Encoder> {
        let invalid = |why: String| Error::InvalidArgument { op: "encoder", why };
        let state = o
            .weights
            .as_ref()
            .map(|path| StateDict::load(gpu, path))
            .transpose()?;
        let trained = state.as_ref().map(Pretrained::of).transpose()?.flatten();
        if let (Some(t), Some(given)) = (&trained, &o.arch)
            && t.arch != *given
        {
            return Err(invalid(format!(
                "--arch {given}, but the checkpoint holds a {}",
                t.arch
            )));
        }
        let arch = o
            .arch
            .clone()
            .or_else(|| trained.as_ref().map(|t| t.arch.clone()))
            .unwrap_or_else(|| "resnet18".into());
        let channels = o
            .in_channels
            .or(trained.as_ref().map(|t| t.in_channels))
            .unwrap_or(3);
        let per_channel = |given: &[f32],
                           trained: Option<f32>,
                           imagenet: [f32; 3]|
         -> Result<Vec<f32>> {
            let values = match given {
                [] => trained.map_or(imagenet.to_vec(), |v| vec![v; 3]),
                [one] => vec![*one; 3],
                v => v.to_vec(),
            };
            if ![1, 3].contains(&channels) || (given.len() > 1 && given.len() != channels) {
                return Err(invalid(format!(
                    "{channels} input channels (1 or 3) with {} mean or std values (one, or one per channel)",
                    given.len()
                )));
            }
            Ok(values[..channels].to_vec())
        };
        let mean = per_channel(
            &o.mean,
            trained.as_ref().map(|t| t.mean),
            [0.485, 0.456, 0.406],
        )?;
        let std = per_channel(
            &o.std,
            trained.as_ref().map(|t| t.std),
            [0.229, 0.224, 0.225],
        )?;
        let config = ResNetConfig {
            arch: arch.parse::<Arch>().map_err(invalid)?,
            in_channels: channels,
            width: o.width.or(trained.as_ref().map(|t| t.width)).unwrap_or(1.0),
            num_classes: o.classes,
        };
        let model = match state {
            Some(mut state) => {
                for other in NOT_BACKBONE {
                    state.skip(other);
                }
                let mut source = NewClassifier {
                    state: &mut state,
                    random: Random::new(gpu, o.seed),
                };
                let model = ResNet::new(config, &mut source)?;
                state.finish()?;
                model
            }
            None => ResNet::new(config, &mut Random::new(gpu, o.seed))?,
        };
        Ok(Encoder {
            model,
            arch,
            channels,
            mean,
            std,
            trained_size: trained.and_then(|t| t.crop_size),
            weights: o.weights.clone(),
        })
    }
}

/// An encoder as [`crate::select::Embedder`]: grey slices at `size` x `size`, normalised as
/// the encoder was trained, to pooled features (the paper's "DeepNet" reduction).
pub struct SliceEmbedder {
    pub gpu: Arc<Gpu>,
    pub encoder: Encoder,
    pub size: usize,
    /// Images per forward pass.
    pub batch: usize,
}

impl crate::select::Embedder for SliceEmbedder {
    fn embed(&self, images: &[&crate::hash::Luma8]) -> Result<Vec<Vec<f32>>> {
        use super::dataset::{Pixels, Sample, Transform};
        let samples: Vec<Sample> = images
            .iter()
            .enumerate()
            .map(|(i, image)| Sample {
                id: i.to_string(),
                label: 0,
                pixels: Pixels::Array {
                    data: Arc::new(image.pixels.clone()),
                    index: 0,
                    height: image.height,
                    width: image.width,
                    channels: 1,
                },
            })
            .collect();
        let transform = Transform {
            channels: self.encoder.channels,
            size: self.size,
            mean: self.encoder.mean.clone(),
            std: self.encoder.std.clone(),
        };
        let features = super::probe::embed(
            &self.gpu,
            &self.encoder,
            &samples,
            &transform,
            self.batch,
            &mut |_| {},
        )?;
        Ok(features
            .values
            .chunks(features.dim)
            .map(<[f32]>::to_vec)
            .collect())
    }
}
