//! `lim export`: a checkpoint in another framework's format. `--format torch` writes what
//! the paper's downstream notebooks load: a `torch.save` file holding
//! `{"state_dict": {"model.<name>": tensor}}`.

use std::path::PathBuf;

use lim::io::torch::{Named, Storage, save_state_dict};
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
    let mut views = Vec::new();
    for n in &names {
        let view = st.tensor(n).map_err(|e| format!("{name}: {n}: {e}"))?;
        let storage = match view.dtype() {
            Dtype::F32 => Storage::F32,
            Dtype::I64 => Storage::I64,
            other => {
                return Err(
                    format!("{name}: {n} holds {other:?}; float32 and int64 are exported").into(),
                );
            }
        };
        views.push((format!("model.{n}"), storage, view));
    }
    // The keys in order, as the names they are made from.
    let tensors: Vec<Named> = views
        .iter()
        .map(|(key, storage, view)| Named {
            name: key,
            shape: view.shape(),
            storage: *storage,
            data: view.data(),
        })
        .collect();
    save_state_dict(&args.out, "state_dict", &tensors)?;
    println!(
        "{} tensors -> {} (torch.load(path, weights_only=True)[\"state_dict\"], keys \"model.<name>\")",
        tensors.len(),
        args.out.display()
    );
    Ok(())
}
