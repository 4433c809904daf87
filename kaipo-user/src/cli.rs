//! The command line, in one place: every subcommand and flag kaipo accepts.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::format::parse_duration;

#[derive(Debug, Parser)]
#[command(
    name = "kaipo",
    version,
    about = "Which process is using the network, counted in the kernel"
)]
pub struct Cli {
    /// Log detail on stderr: error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "warn", env = "KAIPO_LOG")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print, each interval, the top processes, connections and interfaces.
    Watch(WatchArgs),
    /// Check what this machine lets kaipo do, trying each kernel program for real.
    Doctor(DoctorArgs),
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Length of one interval (500ms, 1s, 2m, ...).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Stop after this long; without it, run until interrupted.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Interface to monitor; repeat for more. Default: every interface that is up, except lo.
    #[arg(long = "iface", value_name = "NAME")]
    pub ifaces: Vec<String>,
    /// One JSON object per interval, one per line (schema in the README).
    #[arg(long)]
    pub json: bool,
    /// Count loopback traffic in process and connection totals.
    #[arg(long)]
    pub include_loopback: bool,
    /// Rows per table section (JSON always has every row).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn definition_is_consistent_and_parses_watch() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "kaipo",
            "watch",
            "--interval",
            "250ms",
            "--duration",
            "3s",
            "--iface",
            "eth0",
            "--iface",
            "eth1",
            "--json",
        ])
        .unwrap();
        let Command::Watch(w) = cli.command else {
            panic!("not watch")
        };
        assert_eq!(w.interval, Duration::from_millis(250));
        assert_eq!(w.duration, Some(Duration::from_secs(3)));
        assert_eq!(w.ifaces, vec!["eth0", "eth1"]);
        assert!(w.json && !w.include_loopback);
        assert!(Cli::try_parse_from(["kaipo", "watch", "--interval", "0s"]).is_err());
    }
}
