//! Data-parallel SwAV across processes: `mpirun -np 2` on loopback (TCP, OpenMPI's settings
//! for running as root). This binary is the test and its ranks: started by `mpirun` it runs
//! the checks of tests/data_parallel/checks.rs on MPI (distributed Sinkhorn on two shares
//! against the whole, two ranks' steps against one process's), else it starts them, then
//! `lim pretrain` under `mpirun` (bit for bit the run on two devices of one process), and a
//! job whose rank is killed (it stops, and resumes from rank 0's checkpoint).

#[path = "data_parallel/checks.rs"]
mod checks;
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::losses;
use lim::dist::{Collective, Mpi};

fn main() {
    match lim::dist::launched_ranks() {
        Some(_) => rank(),
        None => drive(),
    }
}

/// One rank of `mpirun -np 2 <this test>`.
fn rank() {
    let mpi = Mpi::init().unwrap();
    let gpu = common::gpu();
    let sinkhorn = checks::sinkhorn_on_shares(&gpu, &mpi);
    let steps = checks::steps_on_shares(&gpu, &mpi);
    println!(
        "rank {} of {}: codes differ by {sinkhorn:e}, parameters by {steps:e}",
        mpi.rank(),
        mpi.size()
    );
    if sinkhorn >= 2e-6 || steps >= 1e-5 {
        std::process::exit(1);
    }
}

/// `mpirun -np 2` on this machine's loopback over TCP.
fn mpirun() -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-np", "2", "--oversubscribe", "--bind-to", "none"])
        .args(["--mca", "pml", "ob1", "--mca", "btl", "tcp,self"])
        .args([
            "--mca",
            "btl_tcp_if_include",
            "lo",
            "--mca",
            "oob_tcp_if_include",
            "lo",
        ])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    c
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output) -> String {
    let t = text(&out);
    assert!(out.status.success(), "failed: {t}");
    t
}

fn drive() {
    let exe = std::env::current_exe().unwrap();
    let out = mpirun()
        .arg(&exe)
        .output()
        .expect("mpirun runs (`make test` installs OpenMPI)");
    let t = ok(out);
    assert!(
        t.contains("rank 0 of 2") && t.contains("rank 1 of 2"),
        "{t}"
    );
    println!("{t}");
    pretrain_under_mpirun();
    println!("mpi: all passed");
}

/// 16 grey 40 x 40 slices.
fn slices(dir: &Path) -> PathBuf {
    let root = dir.join("slices");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..16u32 {
        let image = image::GrayImage::from_fn(40, 40, |x, y| {
            let ring = ((x as i32 - 20).pow(2) + (y as i32 - 20).pow(2)) < (60 + 25 * i) as i32;
            image::Luma([if ring {
                190
            } else {
                ((x / 4 + y / 6 + i) % 3 * 60) as u8
            }])
        });
        image.save(root.join(format!("{i:03}.png"))).unwrap();
    }
    root
}

/// A toy run of batch 8 (4 slices a rank) for `steps` steps, a checkpoint every 2.
fn toy(out: &Path, data: &Path, steps: &'static str) -> Vec<String> {
    common::toy_pretrain("8")
        .into_iter()
        .chain(["--max-steps", steps, "--checkpoint-every", "2", "--out"])
        .map(str::to_string)
        .chain([out.display().to_string(), data.display().to_string()])
        .collect()
}

/// Every tensor of a run's last checkpoint.
fn last(run: &Path) -> BTreeMap<String, (Vec<usize>, Vec<u8>)> {
    common::tensors(&run.join("checkpoints/last.safetensors"))
}

fn pretrain_under_mpirun() {
    let lim = env!("CARGO_BIN_EXE_lim");
    let dir = common::temp_dir("mpi", "pretrain");
    let data = slices(&dir);
    let ranks = dir.join("ranks");
    let t = ok(mpirun()
        .arg(lim)
        .args(toy(&ranks, &data, "4"))
        .output()
        .unwrap());
    assert_eq!(
        t.matches("done: 4 steps").count(),
        1,
        "rank 0 alone reports: {t}"
    );
    assert_eq!(losses(&ranks).len(), 4);
    // The same job as threads of one process, two devices on one adapter: the same bytes.
    let devices = dir.join("devices");
    let mut args = toy(&devices, &data, "4");
    args.splice(3..3, ["--devices".to_string(), "0,0".to_string()]);
    ok(Command::new(lim).args(&args).output().unwrap());
    assert!(
        last(&ranks) == last(&devices),
        "MPI and threads trained differently"
    );
    assert_eq!(losses(&ranks), losses(&devices));

    // A rank killed mid-run stops the job; it resumes from rank 0's last checkpoint.
    let killed = dir.join("killed");
    let mut job = mpirun()
        .arg(lim)
        .args(toy(&killed, &data, "8"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let checkpoint = killed.join("checkpoints/step-0000002.safetensors");
    common::wait_for(&checkpoint, &mut job, Duration::from_secs(300));
    let victim = rank_pid(1, &killed).expect("rank 1's process");
    Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let out = job.wait_with_output().unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("rank 1") && t.contains("signal 9"),
        "mpirun names the rank: {t}"
    );
    let resumed = ok(mpirun()
        .arg(lim)
        .args(["--tuning", "off", "pretrain"])
        .args(["--resume", killed.to_str().unwrap()])
        .output()
        .unwrap());
    assert!(
        ["steps 3..8", "steps 5..8", "steps 7..8"]
            .iter()
            .any(|s| resumed.contains(s)),
        "{resumed}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The process of MPI rank `rank` of the job writing into `run`.
fn rank_pid(rank: usize, run: &Path) -> Option<u32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            let has = |hay: &[u8], needle: &[u8]| hay.split(|&b| b == 0).any(|s| s == needle);
            (has(&environ, wanted.as_bytes()) && has(&cmdline, run.to_str()?.as_bytes()))
                .then_some(pid)
        })
}
