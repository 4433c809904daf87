//! Benchmarks (`cargo xtask bench <which>`).

use clap::Subcommand;

#[derive(Clone, Copy, Subcommand)]
pub enum Which {
    /// Per-packet cost of the kernel programs, a UDP flood with and without kaipo, and
    /// kaipo's own CPU and memory.
    Collector,
}

pub fn run(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Collector => anyhow::bail!("the collector benchmark is being written"),
    }
}
