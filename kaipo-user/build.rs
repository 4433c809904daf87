//! Builds the kernel programs (`kaipo-ebpf`) and leaves the object in `OUT_DIR`, where
//! `include_bytes_aligned!` embeds it in the binary: a plain `cargo build` makes a working `kaipo`.
use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return Ok(());
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("kaipo-user has no parent folder"))?
        .join("kaipo-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "kaipo-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the eBPF programs failed; run scripts/setup.sh to install the nightly \
         toolchain's rust-src and bpf-linker",
    )
}
