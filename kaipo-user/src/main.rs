//! The `kaipo` binary: parse the command line, run, and turn failures into a message and an
//! exit code.

use std::{io, process::ExitCode};

use clap::Parser as _;
use kaipo::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .parse_filters(&cli.log_level)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kaipo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The user's own names, for the commands that collect by themselves.
    #[cfg(unix)]
    let config_path = cli.config.clone();
    #[cfg(not(unix))]
    let config_path: Option<std::path::PathBuf> = None;
    let client_names = || -> anyhow::Result<kaipo::config::names::SharedNames> {
        let path = config_path
            .clone()
            .unwrap_or_else(|| kaipo::config::default_path(false));
        // The default file of a HOME this user may not read (`sudo -u`, setpriv) holds no names
        // for it; a file named with --config must be readable.
        if config_path.is_none() {
            if let Err(e) = std::fs::File::open(&path) {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    eprintln!(
                        "kaipo: cannot read {} ({e}); going on without its [names]",
                        path.display()
                    );
                    return Ok(Default::default());
                }
            }
        }
        Ok(kaipo::config::Config::load(&path)?.user_names())
    };
    match cli.command {
        Command::Watch(args) => {
            let flows = args.collect.flows();
            let opts = kaipo::watch::WatchOptions {
                names: client_names()?,
                interval: args.interval,
                duration: args.duration,
                ifaces: args.ifaces,
                json: args.json,
                include_loopback: args.include_loopback,
                top: args.top,
                cumulative: args.cumulative,
                backend: args.collect.backend,
                pcap_filter: args.collect.filter,
                pcap_immediate: args.collect.pcap_immediate,
                ingress_hook: args.collect.ingress_hook,
                flows,
            };
            let mut stdout = io::stdout().lock();
            runtime.block_on(kaipo::watch::run(&opts, &mut stdout))
        }
        Command::Live(args) if args.prometheus.is_some() => {
            runtime.block_on(kaipo::fleet::live::run(
                args.prometheus.as_deref().unwrap_or_default(),
                args.interval.max(std::time::Duration::from_secs(1)),
                args.top,
            ))
        }
        Command::Live(args) => runtime.block_on(kaipo::live::run(&kaipo::live::LiveOptions {
            names: client_names()?,
            reverse_dns: !args.no_reverse_dns,
            #[cfg(unix)]
            socket: args.socket,
            interval: args.interval,
            include_loopback: args.include_loopback,
            collect: kaipo::collect::backend::StartOptions {
                ifaces: args.ifaces,
                backend: args.collect.backend,
                flows: args.collect.flows(),
                pcap_filter: args.collect.filter,
                pcap_immediate: args.collect.pcap_immediate,
                ingress_hook: args.collect.ingress_hook,
                ..Default::default()
            },
        })),
        Command::Doctor(args) => {
            let mut stdout = io::stdout().lock();
            runtime.block_on(kaipo::doctor::run(args.json, &mut stdout))
        }
        #[cfg(unix)]
        Command::Report(args) => {
            let mut opts = args.into_options();
            let path = cli
                .config
                .unwrap_or_else(|| kaipo::config::default_path(false));
            let config = kaipo::config::Config::load(&path)?;
            if opts.format.is_none() && opts.output.is_none() {
                opts.format = Some(config.client.report_format.into());
            }
            // The database's key, as the daemon reads it.
            opts.names = config.user_names();
            opts.key_file = config.storage.encryption_key_file;
            let mut stdout = io::stdout().lock();
            runtime.block_on(kaipo::report::run(&opts, &mut stdout))
        }
        // The daemon relies on this runtime having one thread: capabilities are per thread,
        // and it drops them once, on this one.
        #[cfg(unix)]
        Command::Daemon(args) => {
            let path = cli
                .config
                .unwrap_or_else(|| kaipo::config::default_path(true));
            let config = kaipo::config::Config::load(&path)?;
            let opts = args.options(config, path);
            // Before any thread or task starts: a panic in any of them ends the daemon with a
            // failure, for the service manager to restart it.
            kaipo::daemon::fatal::install_panic_hook();
            runtime.block_on(kaipo::daemon::run(&opts))
        }
        #[cfg(target_os = "linux")]
        Command::InstallService(args) => {
            kaipo::service::install(&args.options(), &mut io::stdout().lock())
        }
        #[cfg(target_os = "linux")]
        Command::UninstallService(args) => {
            let opts = kaipo::service::UninstallOptions { root: args.root };
            kaipo::service::uninstall(&opts, &mut io::stdout().lock())
        }
        #[cfg(target_os = "macos")]
        Command::InstallService(args) => kaipo::service::launchd::install(
            &args.root,
            args.binary,
            args.enable,
            &mut io::stdout().lock(),
        ),
        #[cfg(target_os = "macos")]
        Command::UninstallService(args) => {
            kaipo::service::launchd::uninstall(&args.root, &mut io::stdout().lock())
        }
        #[cfg(unix)]
        Command::Config(command) => {
            let path = cli
                .config
                .unwrap_or_else(|| kaipo::config::default_path(false));
            kaipo::config::cmd::run(&command.action(), &path, &mut io::stdout().lock())
        }
        #[cfg(target_os = "linux")]
        Command::Store(command) => {
            let path = cli
                .config
                .unwrap_or_else(|| kaipo::config::default_path(true));
            let config = kaipo::config::Config::load(&path)?;
            kaipo::store_cmd::run(&command.options(&config), &mut io::stdout().lock())
        }
        #[cfg(unix)]
        Command::Status(args) => {
            let mut stdout = io::stdout().lock();
            runtime.block_on(kaipo::status::run(&args.socket, args.json, &mut stdout))
        }
    }
}

/// Output cut off by a closed pipe (`kaipo watch | head`) is a normal way to stop.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
