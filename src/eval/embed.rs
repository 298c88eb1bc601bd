//! Image files to pooled features, as `lim embed` writes them: each image at its own size,
//! scaled to [0, 1] and normalised as the encoder expects, batched by size.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::dataset::{normalised_planes, read_file};
use super::encoder::Encoder;
use crate::autograd::{Var, no_grad};
use crate::io::IoError;
use crate::{Gpu, Result, Tensor};

/// An image as an encoder's input: `channels` planes of `height` x `width`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Planes {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

impl Encoder {
    /// The image file at `path` as this encoder's input: pixels scaled to [0, 1], a grey image
    /// replicated to three channels, a colour one taken to its luma (ITU-R 601-2) for a
    /// one-channel network, then `(v - mean) / std` per channel.
    pub fn planes(&self, path: &Path) -> std::result::Result<Planes, IoError> {
        let (width, height, source_channels, values) = read_file(path)?;
        Ok(Planes {
            width,
            height,
            values: normalised_planes(
                &values,
                source_channels,
                self.channels,
                &self.mean,
                &self.std,
            ),
        })
    }

    /// The pooled features (`model.feature_len()` values) of each file in `paths`, in order,
    /// with one forward pass per image size. A file that cannot be read is that file's error;
    /// the outer error is the device's, which no file caused.
    pub fn embed_files(
        &self,
        gpu: &Arc<Gpu>,
        paths: &[PathBuf],
    ) -> Result<Vec<std::result::Result<Vec<f32>, IoError>>> {
        let loaded: Vec<_> = paths.par_iter().map(|p| self.planes(p)).collect();
        let mut sizes: Vec<(usize, usize)> = loaded
            .iter()
            .flatten()
            .map(|p| (p.width, p.height))
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        let len = self.model.feature_len();
        let mut features: Vec<Option<Vec<f32>>> = vec![None; paths.len()];
        for (w, h) in sizes {
            let members: Vec<usize> = (0..paths.len())
                .filter(|&i| matches!(&loaded[i], Ok(p) if (p.width, p.height) == (w, h)))
                .collect();
            let data: Vec<f32> = members
                .iter()
                .flat_map(|&i| loaded[i].as_ref().map_or(&[][..], |p| &p.values[..]))
                .copied()
                .collect();
            let shape = [members.len(), self.channels, h, w];
            let x = Var::constant(Tensor::from_slice(gpu, &shape, &data)?);
            let out = no_grad(|| self.model.features(&x, false))?
                .value()
                .to_vec()?;
            for (k, &i) in members.iter().enumerate() {
                features[i] = Some(out[k * len..(k + 1) * len].to_vec());
            }
        }
        Ok(loaded
            .into_iter()
            .zip(features)
            .map(|(planes, f)| planes.map(|_| f.expect("every readable image has features")))
            .collect())
    }
}
