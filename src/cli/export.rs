//! `lim export`: a checkpoint in another framework's format. `--format torch` writes what
//! the paper's downstream notebooks load: a `torch.save` file holding
//! `{"state_dict": {"model.<name>": tensor}}`.

use std::path::PathBuf;

use lim::io::torch::{Named, Values, save_state_dict};
use lim::ssl::pretrain::{OPTIMIZER, QUEUE};
use safetensors::{Dtype, SafeTensors};

use super::CliResult;

#[derive(clap::ValueEnum, Clone, Copy)]
enum Format {
    /// PyTorch's zip format, read by `torch.load(path, weights_only=True)`
    Torch,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Format::Torch)]
    format: Format,
    /// A `lim pretrain` checkpoint (or any safetensors state dict of float32 and int64
    /// tensors); the optimiser's state and the queue are left out
    checkpoint: PathBuf,
    /// The file to write (.pt)
    out: PathBuf,
}

pub fn run(args: &Args) -> CliResult {
    let Format::Torch = args.format;
    let same = |a: &PathBuf, b: &PathBuf| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(&args.checkpoint, &args.out) {
        return Err(format!("{}: would overwrite the checkpoint", args.out.display()).into());
    }
    let name = args.checkpoint.display();
    let bytes = std::fs::read(&args.checkpoint).map_err(|e| format!("{name}: {e}"))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{name}: not a safetensors file: {e}"))?;
    let mut names: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| !n.starts_with(OPTIMIZER) && !n.starts_with(QUEUE))
        .map(String::from)
        .collect();
    names.sort();
    let mut floats: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut ints: Vec<(String, Vec<usize>, Vec<i64>)> = Vec::new();
    for n in &names {
        let view = st.tensor(n).map_err(|e| format!("{name}: {n}: {e}"))?;
        let key = format!("model.{n}");
        let shape = view.shape().to_vec();
        match view.dtype() {
            Dtype::F32 => {
                let v = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()));
                floats.push((key, shape, v.collect()));
            }
            Dtype::I64 => {
                let v = view
                    .data()
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()));
                ints.push((key, shape, v.collect()));
            }
            other => {
                return Err(
                    format!("{name}: {n} holds {other:?}; float32 and int64 are exported").into(),
                );
            }
        }
    }
    let mut tensors: Vec<Named> = floats
        .iter()
        .map(|(k, s, v)| Named {
            name: k,
            shape: s,
            values: Values::F32(v),
        })
        .chain(ints.iter().map(|(k, s, v)| Named {
            name: k,
            shape: s,
            values: Values::I64(v),
        }))
        .collect();
    tensors.sort_by(|a, b| a.name.cmp(b.name));
    save_state_dict(&args.out, "state_dict", &tensors)?;
    println!(
        "{} tensors -> {} (torch.load(path, weights_only=True)[\"state_dict\"], keys \"model.<name>\")",
        tensors.len(),
        args.out.display()
    );
    Ok(())
}
