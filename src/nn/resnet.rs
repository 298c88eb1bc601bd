//! torchvision's ResNet-18, -34 (BasicBlock) and -50 (Bottleneck v1.5, the stride on the
//! 3 x 3), with 1 or 3 input channels and a width multiplier for small models. Parameter
//! names are torchvision's, so its `state_dict` loads as it is.

use super::{BatchNorm, Conv2d, Entry, Linear, Source, Visit, join};
use crate::autograd::Var;
use crate::error::{Error, Result};
use crate::ops::conv2d::Conv2dSpec;
use crate::ops::pool::PoolSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    ResNet18,
    ResNet34,
    ResNet50,
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Arch, String> {
        match s {
            "resnet18" => Ok(Arch::ResNet18),
            "resnet34" => Ok(Arch::ResNet34),
            "resnet50" => Ok(Arch::ResNet50),
            other => Err(format!(
                "`{other}` is not an architecture: use resnet18, resnet34 or resnet50"
            )),
        }
    }
}

impl Arch {
    fn blocks(self) -> [usize; 4] {
        match self {
            Arch::ResNet18 => [2, 2, 2, 2],
            Arch::ResNet34 | Arch::ResNet50 => [3, 4, 6, 3],
        }
    }

    fn bottleneck(self) -> bool {
        self == Arch::ResNet50
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResNetConfig {
    pub arch: Arch,
    /// 3 for torchvision's models, 1 for grey images.
    pub in_channels: usize,
    /// Multiplies every width (64, 128, 256, 512); 1.0 is torchvision's.
    pub width: f32,
    /// The classifier's outputs; `None` leaves `fc` out (a feature extractor).
    pub num_classes: Option<usize>,
}

impl ResNetConfig {
    /// torchvision's model with its 1000-class head.
    pub fn torchvision(arch: Arch) -> ResNetConfig {
        ResNetConfig {
            arch,
            in_channels: 3,
            width: 1.0,
            num_classes: Some(1000),
        }
    }
}

struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

/// A BasicBlock (two 3 x 3) or a Bottleneck (1 x 1, 3 x 3, 1 x 1).
struct Block {
    convs: Vec<Conv2d>,
    bns: Vec<BatchNorm>,
    downsample: Option<Downsample>,
}

impl Block {
    fn new(
        src: &mut dyn Source,
        prefix: &str,
        inplanes: usize,
        planes: usize,
        stride: usize,
        bottleneck: bool,
    ) -> Result<Block> {
        let expansion = if bottleneck { 4 } else { 1 };
        let layout: Vec<(usize, usize, usize, Conv2dSpec)> = if bottleneck {
            vec![
                (planes, inplanes, 1, Conv2dSpec::new(1, 0)),
                (planes, planes, 3, Conv2dSpec::new(stride, 1)),
                (planes * 4, planes, 1, Conv2dSpec::new(1, 0)),
            ]
        } else {
            vec![
                (planes, inplanes, 3, Conv2dSpec::new(stride, 1)),
                (planes, planes, 3, Conv2dSpec::new(1, 1)),
            ]
        };
        let mut convs = Vec::new();
        let mut bns = Vec::new();
        for (i, (out_ch, in_ch, k, spec)) in layout.into_iter().enumerate() {
            convs.push(Conv2d::new(
                src,
                &format!("{prefix}.conv{}", i + 1),
                [out_ch, in_ch, k],
                spec,
                false,
            )?);
            bns.push(BatchNorm::new(
                src,
                &format!("{prefix}.bn{}", i + 1),
                out_ch,
            )?);
        }
        let downsample = if stride != 1 || inplanes != planes * expansion {
            Some(Downsample {
                conv: Conv2d::new(
                    src,
                    &format!("{prefix}.downsample.0"),
                    [planes * expansion, inplanes, 1],
                    Conv2dSpec::new(stride, 0),
                    false,
                )?,
                bn: BatchNorm::new(src, &format!("{prefix}.downsample.1"), planes * expansion)?,
            })
        } else {
            None
        };
        Ok(Block {
            convs,
            bns,
            downsample,
        })
    }

    fn forward(&self, x: &Var, training: bool) -> Result<Var> {
        let mut out = x.clone();
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            out = bn.forward(&conv.forward(&out)?, training, i < last)?;
        }
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(&d.conv.forward(x)?, training, false)?,
            None => x.clone(),
        };
        out.add(&identity)?.relu()
    }
}

impl Visit for Block {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        for (i, (conv, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            conv.visit(&join(prefix, &format!("conv{}", i + 1)), f);
            bn.visit(&join(prefix, &format!("bn{}", i + 1)), f);
        }
        if let Some(d) = &self.downsample {
            d.conv.visit(&join(prefix, "downsample.0"), f);
            d.bn.visit(&join(prefix, "downsample.1"), f);
        }
    }
}

pub struct ResNet {
    pub config: ResNetConfig,
    conv1: Conv2d,
    bn1: BatchNorm,
    layers: Vec<Vec<Block>>,
    fc: Option<Linear>,
    features: usize,
}

impl ResNet {
    pub fn new(config: ResNetConfig, src: &mut dyn Source) -> Result<ResNet> {
        if config.width <= 0.0 || ![1, 3].contains(&config.in_channels) {
            return Err(Error::InvalidArgument {
                op: "ResNet",
                why: format!("needs 1 or 3 input channels and a positive width, got {config:?}"),
            });
        }
        let widths =
            [64, 128, 256, 512].map(|w| ((w as f32 * config.width).round() as usize).max(1));
        let bottleneck = config.arch.bottleneck();
        let expansion = if bottleneck { 4 } else { 1 };
        let conv1 = Conv2d::new(
            src,
            "conv1",
            [widths[0], config.in_channels, 7],
            Conv2dSpec::new(2, 3),
            false,
        )?;
        let bn1 = BatchNorm::new(src, "bn1", widths[0])?;
        let mut inplanes = widths[0];
        let mut layers = Vec::new();
        for (l, (&planes, &count)) in widths.iter().zip(&config.arch.blocks()).enumerate() {
            let stride = if l == 0 { 1 } else { 2 };
            let mut blocks = Vec::new();
            for b in 0..count {
                let prefix = format!("layer{}.{b}", l + 1);
                blocks.push(Block::new(
                    src,
                    &prefix,
                    inplanes,
                    planes,
                    if b == 0 { stride } else { 1 },
                    bottleneck,
                )?);
                inplanes = planes * expansion;
            }
            layers.push(blocks);
        }
        let fc = match config.num_classes {
            Some(classes) => Some(Linear::new(src, "fc", inplanes, classes)?),
            None => None,
        };
        Ok(ResNet {
            config,
            conv1,
            bn1,
            layers,
            fc,
            features: inplanes,
        })
    }

    /// The length of the pooled feature vector (`fc`'s input).
    pub fn feature_len(&self) -> usize {
        self.features
    }

    /// The globally average-pooled features `[N, feature_len]` of images `[N, C, H, W]`.
    pub fn features(&self, x: &Var, training: bool) -> Result<Var> {
        let stem = self.bn1.forward(&self.conv1.forward(x)?, training, true)?;
        let mut out = stem.max_pool2d(PoolSpec::RESNET)?;
        for block in self.layers.iter().flatten() {
            out = block.forward(&out, training)?;
        }
        out.global_avg_pool()
    }

    /// The logits (the features where there is no `fc`).
    pub fn forward(&self, x: &Var, training: bool) -> Result<Var> {
        let features = self.features(x, training)?;
        match &self.fc {
            Some(fc) => fc.forward(&features),
            None => Ok(features),
        }
    }
}

impl Visit for ResNet {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        self.conv1.visit(&join(prefix, "conv1"), f);
        self.bn1.visit(&join(prefix, "bn1"), f);
        for (l, blocks) in self.layers.iter().enumerate() {
            for (b, block) in blocks.iter().enumerate() {
                block.visit(&join(prefix, &format!("layer{}.{b}", l + 1)), f);
            }
        }
        if let Some(fc) = &self.fc {
            fc.visit(&join(prefix, "fc"), f);
        }
    }
}
