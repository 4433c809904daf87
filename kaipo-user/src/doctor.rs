//! `kaipo doctor`: what works here, what degrades and why.

use std::io::Write;

pub async fn run(_json: bool, _out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::bail!("doctor is not built yet")
}
