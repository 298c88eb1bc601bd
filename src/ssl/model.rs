//! The SwAV network of the paper (FB's `swav_resnet.py`): a ResNet backbone, a projection
//! head `Linear -> BatchNorm1d -> ReLU -> Linear`, L2 normalisation, and prototypes (a
//! linear layer without bias whose rows are kept at unit length).

use crate::autograd::{Var, no_grad};
use crate::error::{Error, Result};
use crate::nn::{BatchNorm, Entry, Init, Linear, ResNet, ResNetConfig, Source, Visit};
use crate::ops::rows::RowOp;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SwavConfig {
    /// The backbone; its `num_classes` must be `None` (features only).
    pub backbone: ResNetConfig,
    /// The head's hidden width (2048) and output dimension (128), and the prototypes (500
    /// in the paper, 3000 in FB's ImageNet runs).
    pub hidden: usize,
    pub dim: usize,
    pub prototypes: usize,
}

/// `projection_head`: `.0` Linear, `.1` BatchNorm1d, (`.2` ReLU,) `.3` Linear.
pub struct ProjectionHead {
    pub first: Linear,
    pub bn: BatchNorm,
    pub last: Linear,
}

pub struct Swav {
    pub config: SwavConfig,
    pub backbone: ResNet,
    pub head: ProjectionHead,
    /// `prototypes.weight`, `[prototypes, dim]`.
    pub prototypes: Var,
}

/// What the network makes of a batch's crops.
pub struct SwavOutput {
    /// L2-normalised embeddings `[crops * B, dim]`, crop-major.
    pub embeddings: Var,
    /// Their scores against every prototype, `[crops * B, prototypes]`.
    pub scores: Var,
}

impl Swav {
    /// Builds the network from `src` under the names the paper's checkpoints use (less the
    /// `model.` prefix): the backbone's torchvision names, `projection_head.*`,
    /// `prototypes.weight`.
    pub fn new(config: SwavConfig, src: &mut dyn Source) -> Result<Swav> {
        if config.backbone.num_classes.is_some()
            || config.hidden == 0
            || config.dim == 0
            || config.prototypes == 0
        {
            return Err(Error::InvalidArgument {
                op: "SwAV",
                why: format!(
                    "needs a backbone without classifier and positive head sizes, got {config:?}"
                ),
            });
        }
        let backbone = ResNet::new(config.backbone, src)?;
        let features = backbone.feature_len();
        let head = ProjectionHead {
            first: Linear::new(src, "projection_head.0", features, config.hidden)?,
            bn: BatchNorm::new(src, "projection_head.1", config.hidden)?,
            last: Linear::new(src, "projection_head.3", config.hidden, config.dim)?,
        };
        let bound = 1.0 / (config.dim as f32).sqrt();
        let prototypes = Var::param(src.tensor(
            "prototypes.weight",
            &[config.prototypes, config.dim],
            Init::Uniform(bound),
        )?);
        Ok(Swav {
            config,
            backbone,
            head,
            prototypes,
        })
    }

    /// Scales every prototype to unit length, in place and outside the graph (the paper does
    /// this before every step).
    pub fn normalize_prototypes(&self) -> Result<()> {
        let w = self.prototypes.value();
        let unit = no_grad(|| w.rows(RowOp::L2Normalize))?;
        w.copy_from(&unit)
    }

    /// The embeddings and scores of the crops, given as one tensor per crop size
    /// `[count * B, C, S, S]` (crop-major): each goes through the backbone as one batch, with
    /// its own BatchNorm statistics; the head sees all of them together.
    pub fn forward(&self, groups: &[Var], training: bool) -> Result<SwavOutput> {
        let features = groups
            .iter()
            .map(|x| self.backbone.features(x, training))
            .collect::<Result<Vec<Var>>>()?;
        let features = Var::concat_batch(&features.iter().collect::<Vec<_>>())?;
        let hidden = self.head.first.forward(&features)?;
        let hidden = self.head.bn.forward(&hidden, training, true)?;
        let embeddings = self.head.last.forward(&hidden)?.l2_normalize()?;
        let scores = embeddings.linear(&self.prototypes, None)?;
        Ok(SwavOutput { embeddings, scores })
    }
}

impl Visit for Swav {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        self.backbone.visit(prefix, f);
        let join = |name: &str| match prefix {
            "" => name.to_string(),
            p => format!("{p}.{name}"),
        };
        self.head.first.visit(&join("projection_head.0"), f);
        self.head.bn.visit(&join("projection_head.1"), f);
        self.head.last.visit(&join("projection_head.3"), f);
        f(join("prototypes.weight"), Entry::Param(&self.prototypes));
    }
}
