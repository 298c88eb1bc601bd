//! `lim bench conv`: GFLOP/s of every conv2d variant on ResNet-18's layer shapes, forward and
//! both gradients, and the autotuner's choice for each.

use lim::Gpu;
use lim::bench::ConvCase;
use lim::ops::conv2d::{ConvPass, ConvVariant};
use serde_json::json;

use super::super::{CliResult, GpuArgs};
use super::{measure, ms, print_json};

#[derive(clap::Args)]
pub struct ConvArgs {
    /// Timed runs per variant; the median is reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print one JSON object per line instead of a table
    #[arg(long)]
    json: bool,
}

pub fn run(gpu_args: &GpuArgs, args: &ConvArgs) -> CliResult {
    let gpu = Gpu::new(&gpu_args.options()?)?;
    if !args.json {
        println!(
            "conv2d f32, ResNet-18 at batch 16, 64 x 64 input, on {}",
            gpu.describe()
        );
        println!(
            "wall = dispatch + submit + wait, median of {} runs",
            args.runs
        );
        println!(
            "{:<20} {:<15} {:<10} {:>10} {:>9}",
            "layer", "pass", "variant", "wall ms", "GFLOP/s"
        );
    }
    for case in ConvCase::resnet18(&gpu)? {
        let (layer, d) = (&case.layer, &case.dims);
        let passes = [
            ConvPass::Forward,
            ConvPass::BackwardInput,
            ConvPass::BackwardWeight,
        ];
        for pass in passes {
            for v in ConvVariant::ALL {
                let s = measure(&gpu, args.runs, || case.run(pass, v).map(drop))?;
                let gflops = d.flops() / s.median.as_secs_f64() / 1e9;
                if args.json {
                    let line = json!({
                        "what": "conv2d",
                        "layer": layer.name,
                        "pass": format!("{pass:?}"),
                        "variant": v.name(),
                        "x": layer.x,
                        "w": layer.w,
                        "median_ms": ms(s.median),
                        "min_ms": ms(s.min),
                        "runs": args.runs,
                        "gflops": gflops,
                    });
                    print_json(line, &gpu);
                } else {
                    println!(
                        "{:<20} {:<15} {:<10} {:>10.2} {gflops:>9.2}",
                        layer.name,
                        format!("{pass:?}"),
                        v.name(),
                        ms(s.median)
                    );
                }
            }
        }
    }
    Ok(())
}
