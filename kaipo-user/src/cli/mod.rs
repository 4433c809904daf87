//! The command line, in one place: every subcommand and flag kaipo accepts.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::format::{parse_duration, parse_interval};

mod values;

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
    // Only the daemon and the commands around it (not on Windows) read the file.
    #[cfg(unix)]
    /// Configuration file [default: /etc/kaipo/kaipo.toml for root and the daemon, else
    /// $XDG_CONFIG_HOME/kaipo/kaipo.toml or ~/.config/kaipo/kaipo.toml].
    #[arg(long, global = true, value_name = "FILE", env = "KAIPO_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print, each interval, the top processes, connections and interfaces.
    Watch(WatchArgs),
    #[cfg_attr(
        unix,
        doc = "The real-time dashboard: from the daemon when one runs, else (as root) from a \
               collector of its own."
    )]
    #[cfg_attr(
        not(unix),
        doc = "The real-time dashboard, from a collector of its own (as administrator, or \
               where Npcap lets any user capture)."
    )]
    Live(LiveArgs),
    /// Check what this machine lets kaipo do, trying each kernel program for real.
    Doctor(DoctorArgs),
    #[cfg(unix)]
    /// Traffic history over a time range: totals per app, process, interface, remote, service,
    /// user or container, as a table, JSON, CSV or a self-contained HTML page.
    Report(ReportArgs),
    #[cfg(unix)]
    /// Run the collector in the background: record history, and serve live figures and
    /// history to any local user over a Unix socket. Needs root; drops what it can after start.
    Daemon(DaemonArgs),
    #[cfg(unix)]
    /// What the running daemon sees now: rates and totals per interface, app and process, and
    /// what it could not count. Needs no privileges.
    Status(StatusArgs),
    #[cfg(unix)]
    /// Show, check or change the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Encrypt or decrypt the history database (stop the daemon first); every row is kept.
    #[cfg(target_os = "linux")]
    #[command(subcommand)]
    Store(StoreCommand),
    /// Install the hardened systemd unit for the daemon (and user and group kaipo); on macOS,
    /// a launchd job in /Library/LaunchDaemons.
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    InstallService(InstallArgs),
    /// Remove the systemd unit, or the launchd job on macOS (the group and the history stay).
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    UninstallService(UninstallArgs),
}

/// `kaipo store ...`.
#[cfg(target_os = "linux")]
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Rewrite the database encrypted with the key (SQLCipher, AES-256).
    Encrypt(StoreArgs),
    /// Rewrite the database unencrypted.
    Decrypt(StoreArgs),
}

/// Which database, with which key.
#[cfg(target_os = "linux")]
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// The history database [default: daemon.db from the configuration].
    #[arg(long, value_name = "PATH")]
    pub db: Option<std::path::PathBuf>,
    /// The key: 64 hex digits or a passphrase on the first line [default:
    /// storage.encryption_key_file from the configuration].
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<std::path::PathBuf>,
}

#[cfg(target_os = "linux")]
impl StoreCommand {
    /// The plain options, with the configuration's database and key where no flag is given.
    pub fn options(self, config: &crate::config::Config) -> crate::store_cmd::StoreOptions {
        let (direction, args) = match self {
            Self::Encrypt(a) => (crate::store::convert::Direction::Encrypt, a),
            Self::Decrypt(a) => (crate::store::convert::Direction::Decrypt, a),
        };
        crate::store_cmd::StoreOptions {
            direction,
            db: args.db.unwrap_or_else(|| config.daemon.db.clone()),
            key_file: args
                .key_file
                .or_else(|| config.storage.encryption_key_file.clone()),
        }
    }
}

/// `kaipo config ...`.
#[cfg(unix)]
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (the file over the defaults) as TOML.
    Show,
    /// Print one key's effective value (`metrics.listen`).
    Get { key: String },
    /// Set one key in the file, keeping its comments; refused when the result is invalid.
    Set { key: String, value: String },
    /// Write a file with every key at its default, commented.
    Init {
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the file's path.
    Path,
    /// Validate the file; exits 1 with the line and key of the first problem.
    Check,
}

#[cfg(unix)]
impl ConfigCommand {
    pub fn action(self) -> crate::config::cmd::ConfigAction {
        use crate::config::cmd::ConfigAction as A;
        match self {
            Self::Show => A::Show,
            Self::Get { key } => A::Get { key },
            Self::Set { key, value } => A::Set { key, value },
            Self::Init { force } => A::Init { force },
            Self::Path => A::Path,
            Self::Check => A::Check,
        }
    }
}

/// `kaipo install-service`.
#[cfg(any(target_os = "linux", target_os = "macos"))]
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Install under this directory instead of / (nothing is run there).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
    /// The kaipo binary the unit runs [default: this one].
    #[arg(long, value_name = "PATH")]
    pub binary: Option<std::path::PathBuf>,
    /// Also start the service now and at every boot (systemctl enable --now).
    #[arg(long)]
    pub enable: bool,
}

#[cfg(target_os = "linux")]
impl InstallArgs {
    pub fn options(self) -> crate::service::InstallOptions {
        crate::service::InstallOptions {
            root: self.root,
            binary: self.binary,
            enable: self.enable,
        }
    }
}

/// `kaipo uninstall-service`.
#[cfg(any(target_os = "linux", target_os = "macos"))]
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Remove from under this directory instead of /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
}

/// How traffic is collected, for every command that collects.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct BackendArgs {
    /// eBPF (Linux), libpcap, or auto: eBPF where it loads, libpcap otherwise.
    #[arg(long, value_enum, default_value_t = crate::collect::backend::BackendChoice::Auto)]
    pub backend: crate::collect::backend::BackendChoice,
    /// pcap backend: a capture filter (pcap-filter syntax), applied in the kernel.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// pcap backend: hand each frame to kaipo as it arrives (libpcap's immediate mode) rather
    /// than a ring block at a time within 250 ms; on Linux this costs far more CPU under load.
    #[arg(long)]
    pub pcap_immediate: bool,
    /// eBPF backend: the hook that counts incoming frames. `tc` (TCX ingress) changes nothing
    /// in how an interface receives; `xdp` uses driver-mode XDP where the driver has it.
    #[arg(long, value_enum, default_value_t = crate::collect::backend::IngressHook::Tc)]
    pub ingress_hook: crate::collect::backend::IngressHook,
    /// eBPF backend: count every flow on the interfaces even with none named (--iface names
    /// some: flows are counted there). Gives the attributed share of the interfaces' bytes,
    /// at the cost of a program on each interface for every frame.
    #[arg(long, conflicts_with = "no_flows")]
    pub flows: bool,
    /// eBPF backend: run no program on the interfaces, only on sockets (the cheapest path per
    /// packet; the default when no interface is named). Interface totals are then the
    /// kernel's own counters; there is no attributed share and no --iface.
    #[arg(long)]
    pub no_flows: bool,
}

impl BackendArgs {
    /// Flows as the flags ask: on, off, or (neither) as the interfaces decide.
    pub fn flows(&self) -> Option<bool> {
        if self.flows {
            Some(true)
        } else if self.no_flows {
            Some(false)
        } else {
            None
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Length of one interval (500ms, 1s, 2m, ...).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
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
    /// Rows per table section, 0 for all (JSON always has every row).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Totals since start instead of each interval's figures (table and JSON).
    #[arg(long)]
    pub cumulative: bool,
    #[command(flatten)]
    pub collect: BackendArgs,
}

/// `kaipo daemon`. The socket protocol is in the README. Flags override the configuration
/// file's `[daemon]` section. Default paths differ on macOS, whose `/` is read-only.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    #[cfg_attr(
        not(target_os = "macos"),
        doc = "History database (SQLite) [default: /var/lib/kaipo/kaipo.db]."
    )]
    #[cfg_attr(
        target_os = "macos",
        doc = "History database (SQLite) [default: /var/db/kaipo/kaipo.db]."
    )]
    #[arg(long, value_name = "PATH")]
    pub db: Option<std::path::PathBuf>,
    #[cfg_attr(
        not(target_os = "macos"),
        doc = "Unix socket for `kaipo status`, `kaipo report` and other clients [default: /run/kaipo/kaipo.sock]."
    )]
    #[cfg_attr(
        target_os = "macos",
        doc = "Unix socket for `kaipo status`, `kaipo report` and other clients [default: /var/run/kaipo/kaipo.sock]."
    )]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,
    /// Interface to monitor; repeat for more. Default: every interface that is up, except lo.
    #[arg(long = "iface", value_name = "NAME")]
    pub ifaces: Vec<String>,
    /// Length of one stored interval, the finest resolution of history (kept 24 h). Batches
    /// close on wall-clock multiples of it [default: 60s].
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// How often live figures (status, subscribers' snapshots) are refreshed; at most
    /// --interval [default: 1s].
    #[arg(long, value_name = "D", value_parser = parse_interval)]
    pub live_interval: Option<Duration>,
    /// Count loopback traffic in process totals and history.
    #[arg(long)]
    pub include_loopback: bool,
    /// The user to become once the kernel programs are attached (Linux); root stays root
    /// [default: kaipo, where that user exists].
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Limit the daemon's files with Landlock after start; processes are then named by their
    /// command name, not their executable (Linux).
    #[arg(long)]
    pub landlock: bool,
    /// The `host` label of every metrics sample [default: metrics.host, else the host name].
    /// A Kubernetes DaemonSet sets KAIPO_METRICS_HOST to the node's name.
    #[arg(long, value_name = "NAME", env = "KAIPO_METRICS_HOST")]
    pub metrics_host: Option<String>,
    #[command(flatten)]
    pub collect: BackendArgs,
}

/// `kaipo status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the daemon's answer as JSON (schema in the README).
    #[arg(long)]
    pub json: bool,
    /// The daemon's socket.
    #[arg(long, value_name = "PATH", default_value = crate::api::protocol::DEFAULT_SOCKET)]
    pub socket: std::path::PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct LiveArgs {
    /// The daemon's socket.
    #[cfg(unix)]
    #[arg(long, default_value = crate::api::protocol::DEFAULT_SOCKET)]
    pub socket: std::path::PathBuf,
    /// Without a daemon: the interface to monitor; repeat for more. Default: every interface
    /// that is up, except lo.
    #[arg(long = "iface", value_name = "NAME")]
    pub ifaces: Vec<String>,
    /// Without a daemon: how often figures refresh.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Without a daemon: count loopback traffic in process and connection figures.
    #[arg(long)]
    pub include_loopback: bool,
    /// Do not name remotes by reverse DNS (names from the DNS answers processes received
    /// are shown all the same).
    #[arg(long)]
    pub no_reverse_dns: bool,
    #[command(flatten)]
    pub collect: BackendArgs,
    /// The whole fleet instead: every host a Prometheus server scrapes (http://HOST:PORT),
    /// refreshed every --interval (at least 1s).
    #[arg(long, value_name = "URL", conflicts_with_all = ["ifaces", "include_loopback"])]
    pub prometheus: Option<String>,
    /// With --prometheus: app rows (host and app), largest rate first; 0 for all.
    #[arg(long, default_value_t = 50, requires = "prometheus")]
    pub top: usize,
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `kaipo report`. The JSON and CSV schemas are in the README.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Report on this much history up to now (30m, 24h, 7d, ...).
    #[arg(long, default_value = "24h", value_parser = parse_duration, conflicts_with_all = ["from", "to"])]
    pub since: Duration,
    /// Start of the range instead: RFC 3339 (2026-11-25T10:00:00Z) or Unix seconds.
    #[arg(long, value_name = "TIME", value_parser = crate::report::time::parse_instant)]
    pub from: Option<i64>,
    /// End of the range, exclusive (RFC 3339 or Unix seconds); default: now.
    #[arg(long, value_name = "TIME", requires = "from", value_parser = crate::report::time::parse_instant)]
    pub to: Option<i64>,
    /// What to group the traffic by [default: app]. With --per, only app, which splits each
    /// period by app.
    #[arg(long, value_enum)]
    pub by: Option<crate::model::Dimension>,
    /// Totals per UTC hour, day or month instead: one row per period with received, sent,
    /// total and average rate.
    #[arg(long, value_enum, value_name = "PERIOD")]
    pub per: Option<crate::model::Period>,
    /// Rows in the report, largest first (with --per --by app: apps per period); 0 for all.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Output format [default: from --output's extension (.json, .csv, .html), else table].
    #[arg(long, value_enum)]
    pub format: Option<crate::report::ExportFormat>,
    /// Write the report to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    #[cfg_attr(
        not(target_os = "macos"),
        doc = "Read this history database directly [default: ask the daemon if its socket exists, else read /var/lib/kaipo/kaipo.db]."
    )]
    #[cfg_attr(
        target_os = "macos",
        doc = "Read this history database directly [default: ask the daemon if its socket exists, else read /var/db/kaipo/kaipo.db]."
    )]
    #[arg(long, value_name = "PATH", conflicts_with = "socket")]
    pub db: Option<std::path::PathBuf>,
    #[cfg_attr(
        not(target_os = "macos"),
        doc = "Ask the daemon listening on this socket [default: /run/kaipo/kaipo.sock]."
    )]
    #[cfg_attr(
        target_os = "macos",
        doc = "Ask the daemon listening on this socket [default: /var/run/kaipo/kaipo.sock]."
    )]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,
    /// Report over every host a Prometheus server scrapes (http://HOST:PORT) instead of this
    /// host's history; --by host groups by the daemons' host label.
    #[arg(long, value_name = "URL", conflicts_with_all = ["db", "socket", "per"])]
    pub prometheus: Option<String>,
}

impl ReportArgs {
    /// The plain options `kaipo report` runs with: the one place its flags are read.
    pub fn into_options(self) -> crate::report::ReportOptions {
        crate::report::ReportOptions {
            since: self.since,
            from_ms: self.from,
            to_ms: self.to,
            by: self.by,
            per: self.per,
            top: self.top,
            format: self.format,
            output: self.output,
            db: self.db,
            socket: self.socket,
            key_file: None,
            names: Default::default(),
            prometheus: self.prometheus,
        }
    }
}

/// The daemon's options: the configuration file's `[daemon]` section with the command line's
/// flags over it.
#[cfg(unix)]
impl DaemonArgs {
    pub fn options(
        &self,
        config: crate::config::Config,
        config_path: std::path::PathBuf,
    ) -> crate::daemon::DaemonOptions {
        let args = self;
        let d = &config.daemon;
        crate::daemon::DaemonOptions {
            db: args.db.clone().unwrap_or_else(|| d.db.clone()),
            socket: args.socket.clone().unwrap_or_else(|| d.socket.clone()),
            ifaces: if args.ifaces.is_empty() {
                d.interfaces.clone()
            } else {
                args.ifaces.clone()
            },
            interval: args.interval.unwrap_or(d.interval),
            live_interval: args.live_interval.unwrap_or(d.live_interval),
            // A flag can only turn it on; the file's `false` is also the default.
            include_loopback: args.include_loopback || d.include_loopback,
            metrics_host: args.metrics_host.clone().filter(|h| !h.is_empty()),
            backend: args.collect.backend,
            pcap_filter: args.collect.filter.clone(),
            pcap_immediate: args.collect.pcap_immediate,
            ingress_hook: args.collect.ingress_hook,
            // A flag wins over the file; neither: as the interfaces decide.
            flows: args.collect.flows().or(d.flows),
            // The file's default names the user install-service creates; without that
            // user the daemon stays root (a user named explicitly must exist).
            user: args
                .user
                .clone()
                .or_else(|| (d.user != crate::config::DEFAULT_DAEMON_USER).then(|| d.user.clone())),
            landlock: args.landlock || d.landlock,
            key_file: config.storage.encryption_key_file.clone(),
            config_path,
            config,
        }
    }
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

    fn report(args: &[&str]) -> Result<crate::report::ReportOptions, clap::Error> {
        let cli = Cli::try_parse_from(["kaipo", "report"].iter().chain(args))?;
        match cli.command {
            Command::Report(args) => Ok(args.into_options()),
            other => panic!("not report: {other:?}"),
        }
    }

    #[test]
    fn report_flags_become_options() {
        use std::path::PathBuf;

        use crate::{
            model::{Dimension, Period},
            report::ExportFormat,
        };

        let opts = report(&[]).unwrap();
        assert_eq!(opts.since, Duration::from_secs(86_400));
        assert_eq!((opts.from_ms, opts.to_ms), (None, None));
        assert_eq!(
            (opts.by, opts.per, opts.top, opts.format),
            (None, None, 20, None)
        );
        assert_eq!((opts.output, opts.db, opts.socket), (None, None, None));

        let opts = report(&[
            "--from",
            "2026-11-25T10:00:00Z",
            "--to",
            "1795604400",
            "--by",
            "remote",
            "--top",
            "0",
            "--format",
            "csv",
            "-o",
            "out.csv",
            "--db",
            "/tmp/k.db",
        ])
        .unwrap();
        assert_eq!(
            (opts.from_ms, opts.to_ms),
            (Some(1_795_600_800_000), Some(1_795_604_400_000))
        );
        assert_eq!((opts.by, opts.top), (Some(Dimension::Remote), 0));
        assert_eq!(opts.format, Some(ExportFormat::Csv));
        assert_eq!(opts.output, Some(PathBuf::from("out.csv")));
        assert_eq!(opts.db, Some(PathBuf::from("/tmp/k.db")));
        assert_eq!(
            report(&["--since", "90m"]).unwrap().since,
            Duration::from_secs(5400)
        );
        let opts = report(&["--per", "month", "--by", "app"]).unwrap();
        assert_eq!(
            (opts.per, opts.by),
            (Some(Period::Month), Some(Dimension::App))
        );

        for bad in [
            &["--since", "1h", "--from", "1795600800"][..],
            &["--to", "1795600800"],
            &["--db", "a", "--socket", "b"],
            &["--from", "yesterday"],
            &["--by", "planet"],
            &["--per", "week"],
            &["--format", "pdf"],
            // Past what a Duration holds: an error, not a panic.
            &["--since", "999999999999999999999d"],
        ] {
            assert!(report(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[cfg(unix)]
    #[test]
    fn daemon_defaults_come_from_the_configuration() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from(["kaipo", "daemon"]).unwrap();
        let Command::Daemon(args) = cli.command else {
            panic!("not daemon")
        };
        let opts = args.options(crate::config::Config::default(), std::path::PathBuf::new());
        assert_eq!(
            opts.db,
            std::path::Path::new(crate::api::protocol::DEFAULT_DB)
        );
        assert_eq!(
            opts.socket,
            std::path::Path::new(crate::api::protocol::DEFAULT_SOCKET)
        );
        assert_eq!(opts.interval, crate::store::DEFAULT_WRITE_INTERVAL);
        assert_eq!(opts.live_interval, Duration::from_secs(1));
        assert!(opts.ifaces.is_empty() && !opts.include_loopback && opts.flows.is_none());
        // Flows from the file, and a flag over the file.
        let flows = |argv: &[&str], file: Option<bool>| {
            let mut config = crate::config::Config::default();
            config.daemon.flows = file;
            let cli = Cli::try_parse_from(argv).unwrap();
            let Command::Daemon(args) = cli.command else {
                panic!("not daemon")
            };
            args.options(config, std::path::PathBuf::new()).flows
        };
        assert_eq!(flows(&["kaipo", "daemon"], Some(false)), Some(false));
        assert_eq!(flows(&["kaipo", "daemon"], Some(true)), Some(true));
        assert_eq!(
            flows(&["kaipo", "daemon", "--no-flows"], Some(true)),
            Some(false)
        );
        assert_eq!(
            flows(&["kaipo", "daemon", "--flows"], Some(false)),
            Some(true)
        );
        assert_eq!(flows(&["kaipo", "daemon", "--no-flows"], None), Some(false));
        assert!(Cli::try_parse_from(["kaipo", "watch", "--flows", "--no-flows"]).is_err());
        let cli =
            Cli::try_parse_from(["kaipo", "status", "--json", "--socket", "/tmp/k.sock"]).unwrap();
        let Command::Status(args) = cli.command else {
            panic!("not status")
        };
        assert!(args.json);
        assert_eq!(args.socket, std::path::Path::new("/tmp/k.sock"));
    }
}
