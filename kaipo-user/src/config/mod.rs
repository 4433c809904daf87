//! kaipo's configuration: one TOML file, every option with a default.
//!
//! The daemon reads `/etc/kaipo/kaipo.toml`; other commands run by a user read
//! `$XDG_CONFIG_HOME/kaipo/kaipo.toml` (or `~/.config/kaipo/kaipo.toml`); `--config FILE` picks
//! another one. A missing file means every default. Unknown keys are errors rather than
//! warnings: a misspelt key would otherwise silently leave its option at the default.

pub mod cmd;
pub mod edit;
mod error;
pub mod names;
pub mod value;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

pub use self::error::ConfigError;
use self::value::{duration, socket_addr};
use crate::platform::{Host, Platform as _};

pub const SYSTEM_PATH: &str = "/etc/kaipo/kaipo.toml";

/// The user `kaipo install-service` creates and the daemon becomes after start.
pub const DEFAULT_DAEMON_USER: &str = "kaipo";

/// The whole file. Sections left out take their defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub storage: StorageConfig,
    pub api: ApiConfig,
    pub metrics: MetricsConfig,
    pub client: ClientConfig,
    pub alerts: crate::alert::AlertsConfig,
    pub names: names::NamesConfig,
}

/// `[daemon]`: what `kaipo daemon` runs with when no flag says otherwise. Only reread
/// settings that need no restart take effect on SIGHUP (see `reloadable`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    pub db: PathBuf,
    pub socket: PathBuf,
    /// Empty: every interface that is up, except loopback.
    pub interfaces: Vec<String>,
    #[serde(with = "duration")]
    pub interval: Duration,
    #[serde(with = "duration")]
    pub live_interval: Duration,
    pub include_loopback: bool,
    /// The user the daemon becomes once its programs are attached; "root" keeps it root.
    pub user: String,
    /// Confine the daemon's files with Landlock after start. Off by default: a Landlock domain
    /// also keeps the daemon from reading /proc/PID/exe of every process outside it, so
    /// processes would be named by their command name instead of their executable.
    pub landlock: bool,
    /// Count per flow on the interfaces (the attributed share, `interfaces` scoping): true on
    /// every interface (`--flows`), false on none (`--no-flows`: only the socket programs run
    /// per packet); unset, only where `interfaces` names some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flows: Option<bool>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            db: crate::api::protocol::DEFAULT_DB.into(),
            socket: crate::api::protocol::DEFAULT_SOCKET.into(),
            interfaces: Vec::new(),
            interval: crate::store::DEFAULT_WRITE_INTERVAL,
            live_interval: Duration::from_secs(1),
            include_loopback: false,
            user: DEFAULT_DAEMON_USER.to_owned(),
            landlock: false,
            flows: None,
        }
    }
}

/// `[storage]`: how history is kept on disk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The key of the encrypted database: a file (64 hex digits or a passphrase) or
    /// `credential:NAME` (a systemd credential); unset, the database is not encrypted.
    #[serde(with = "value::optional_path")]
    pub encryption_key_file: Option<PathBuf>,
}

/// `[api]`: the remote API over HTTPS (Linux), off unless `listen` is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// `HOST:PORT` to serve HTTPS on; empty (the default) serves nothing.
    #[serde(with = "socket_addr")]
    pub listen: Option<SocketAddr>,
    /// The server's certificate chain and private key (PEM).
    #[serde(with = "value::optional_path")]
    pub cert_file: Option<PathBuf>,
    #[serde(with = "value::optional_path")]
    pub key_file: Option<PathBuf>,
    /// One `TOKEN full` or `TOKEN uid:N` a line.
    #[serde(with = "value::optional_path")]
    pub tokens_file: Option<PathBuf>,
    /// Connections served at once; more are closed as they come.
    pub max_connections: usize,
    /// Requests per token per minute.
    pub requests_per_minute: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: None,
            cert_file: None,
            key_file: None,
            tokens_file: None,
            max_connections: 16,
            requests_per_minute: 120,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `HOST:PORT` to serve `/metrics` on; empty (the default) serves nothing.
    #[serde(with = "socket_addr")]
    pub listen: Option<SocketAddr>,
    /// Apps with their own series; the rest are summed in `app="other"`.
    pub top_apps: usize,
    /// The labels of the per-app series; each combination of their values is one "app" of
    /// the top N.
    pub labels: Vec<crate::metrics::labels::LabelKind>,
    /// The `host` label on every sample; empty: this machine's host name. `kaipo daemon
    /// --metrics-host` (or `KAIPO_METRICS_HOST`, as a DaemonSet sets it to the node's name)
    /// overrides it.
    pub host: String,
    /// Hold BPF run-time statistics on while the endpoint is on (costs some nanoseconds per
    /// program run).
    pub bpf_stats: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            top_apps: 20,
            labels: vec![crate::metrics::labels::LabelKind::App],
            host: String::new(),
            bpf_stats: true,
        }
    }
}

/// Most apps with their own series: each costs a handful of series per scrape target.
pub const MAX_TOP_APPS: usize = 1000;

/// `[client]`: preferences of the commands a user runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// `kaipo report`'s format on standard output when `--format` is not given.
    pub report_format: ReportFormat,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            report_format: ReportFormat::Table,
        }
    }
}

/// `kaipo report`'s formats, as the file spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
    Html,
}

impl From<ReportFormat> for crate::report::ExportFormat {
    fn from(f: ReportFormat) -> Self {
        match f {
            ReportFormat::Table => Self::Table,
            ReportFormat::Json => Self::Json,
            ReportFormat::Csv => Self::Csv,
            ReportFormat::Html => Self::Html,
        }
    }
}

impl Config {
    /// The `[names]` section, checked (as `parse` already did).
    pub fn user_names(&self) -> names::SharedNames {
        std::sync::Arc::new(names::UserNames::from_config(&self.names).unwrap_or_default())
    }

    /// What the daemon's engine names things with (`[names]`, checked).
    pub fn naming_settings(&self) -> names::NamingSettings {
        names::NamingSettings {
            names: self.user_names(),
            reverse_dns: self.names.reverse_dns,
        }
    }

    /// Parses and checks `text`; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(origin, text, &e))?;
        config.validate(origin, text)?;
        Ok(config)
    }

    /// The file at `path`, or every default when it does not exist.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Checks what serde cannot: ranges and relations between values.
    fn validate(&self, origin: &Path, text: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| Err(ConfigError::at_key(origin, text, key, message));
        if self.metrics.top_apps > MAX_TOP_APPS {
            return bad(
                "metrics.top_apps",
                format!(
                    "{} is too many; allowed: 0 to {MAX_TOP_APPS}",
                    self.metrics.top_apps
                ),
            );
        }
        if !(1..=4096).contains(&self.api.max_connections) {
            return bad(
                "api.max_connections",
                format!(
                    "{} is out of range; allowed: 1 to 4096",
                    self.api.max_connections
                ),
            );
        }
        if !(1..=60_000).contains(&self.api.requests_per_minute) {
            return bad(
                "api.requests_per_minute",
                format!(
                    "{} is out of range; allowed: 1 to 60000",
                    self.api.requests_per_minute
                ),
            );
        }
        if let Err(e) = crate::metrics::labels::validate(&self.metrics.labels) {
            return bad("metrics.labels", e);
        }
        if self.metrics.host.chars().any(char::is_control) {
            return bad(
                "metrics.host",
                "holds a control character; allowed: a host name".to_owned(),
            );
        }
        if self.daemon.live_interval > self.daemon.interval {
            return bad(
                "daemon.live_interval",
                format!(
                    "{} is longer than daemon.interval ({}); allowed: at most daemon.interval",
                    value::format_duration(self.daemon.live_interval),
                    value::format_duration(self.daemon.interval)
                ),
            );
        }
        if self.daemon.interval < Duration::from_secs(1)
            || self.daemon.interval > crate::format::MAX_INTERVAL
        {
            return bad(
                "daemon.interval",
                format!(
                    "{} is out of range; allowed: 1s (the finest resolution of stored history) \
                     to 1d",
                    value::format_duration(self.daemon.interval)
                ),
            );
        }
        if self.daemon.live_interval < crate::format::MIN_INTERVAL {
            return bad(
                "daemon.live_interval",
                format!(
                    "{} is too short; allowed: 100ms to daemon.interval",
                    value::format_duration(self.daemon.live_interval)
                ),
            );
        }
        if let Err((at, message)) = names::UserNames::from_config(&self.names) {
            return bad(&at, message);
        }
        if let Err((at, message)) = self.alerts.validate() {
            return Err(
                match at
                    .strip_prefix("alerts.rule '")
                    .and_then(|r| r.strip_suffix('\''))
                {
                    Some(rule) => ConfigError::at_rule(origin, text, rule, message),
                    None => ConfigError::at_key(origin, text, &at, message),
                },
            );
        }
        Ok(())
    }

    /// Settings that changed between `self` and `new` but only take effect on restart.
    pub fn restart_needed(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.daemon, &new.daemon);
        let mut out = Vec::new();
        let mut check = |changed: bool, key| {
            if changed {
                out.push(key);
            }
        };
        check(a.db != b.db, "daemon.db");
        check(a.socket != b.socket, "daemon.socket");
        check(a.interfaces != b.interfaces, "daemon.interfaces");
        check(a.interval != b.interval, "daemon.interval");
        check(a.live_interval != b.live_interval, "daemon.live_interval");
        check(
            a.include_loopback != b.include_loopback,
            "daemon.include_loopback",
        );
        check(a.user != b.user, "daemon.user");
        check(a.landlock != b.landlock, "daemon.landlock");
        check(a.flows != b.flows, "daemon.flows");
        check(
            self.storage.encryption_key_file != new.storage.encryption_key_file,
            "storage.encryption_key_file",
        );
        check(self.metrics.listen != new.metrics.listen, "metrics.listen");
        check(self.api != new.api, "api");
        check(
            self.metrics.bpf_stats != new.metrics.bpf_stats,
            "metrics.bpf_stats",
        );
        check(self.metrics.labels != new.metrics.labels, "metrics.labels");
        check(self.metrics.host != new.metrics.host, "metrics.host");
        out
    }
}

/// The file a command reads when `--config` is not given: the system file for root (and for
/// the daemon), the user's own file for everyone else.
pub fn default_path(for_daemon: bool) -> PathBuf {
    if for_daemon || Host::is_superuser() {
        return SYSTEM_PATH.into();
    }
    user_path().unwrap_or_else(|| SYSTEM_PATH.into())
}

fn user_path() -> Option<PathBuf> {
    Some(Host::user_config_dir()?.join("kaipo").join("kaipo.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `daemon.flows` has no default value (unset: as the interfaces decide), yet `config get`
    /// and `config set` know it.
    #[test]
    fn a_key_unset_by_default_is_known_and_settable() {
        let dir = std::env::temp_dir().join(format!("kaipo-config-unset-{}", std::process::id()));
        let path = dir.join("kaipo.toml");
        let _ = std::fs::remove_dir_all(&dir);
        edit::init(&path, false).unwrap();
        assert!(edit::known_keys().contains(&"daemon.flows".to_owned()));
        let config = Config::load(&path).unwrap();
        assert_eq!(config.daemon.flows, None);
        assert_eq!(edit::get(&config, "daemon.flows").unwrap(), edit::UNSET);
        let config = edit::set(&path, "daemon.flows", "false").unwrap();
        assert_eq!(config.daemon.flows, Some(false));
        assert_eq!(edit::get(&config, "daemon.flows").unwrap(), "false");
        let before = std::fs::read_to_string(&path).unwrap();
        let err = edit::set(&path, "daemon.flows", "3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("flows"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            before,
            "the file is kept"
        );
        assert!(edit::set(&path, "daemon.flow", "true").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_init_template_is_the_defaults() {
        let parsed = Config::parse(&edit::template(), Path::new("t")).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_linux_template_names_the_linux_paths() {
        let text = edit::template();
        assert!(
            text.contains("\ndb = \"/var/lib/kaipo/kaipo.db\"\n"),
            "{text}"
        );
        assert!(
            text.contains("\nsocket = \"/run/kaipo/kaipo.sock\"\n"),
            "{text}"
        );
        assert!(!text.contains('@'), "{text}");
    }

    /// The template once listed only rate and new_destination rules; each kind now has an
    /// example, and each example, uncommented, is a valid rule of its kind.
    #[test]
    fn the_init_template_has_a_valid_example_of_every_rule_kind() {
        let text = edit::template();
        let (_, examples) = text
            .split_once("\n#\n# [[alerts.rule]]")
            .expect("examples after the [alerts] keys");
        let uncommented: String = format!("# [[alerts.rule]]{examples}")
            .lines()
            .map(|l| l.strip_prefix('#').unwrap_or(l).trim_start())
            .map(|l| format!("{l}\n"))
            .collect();
        let config = Config::parse(&uncommented, Path::new("t")).unwrap();
        let kinds: Vec<_> = config.alerts.rule.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, crate::alert::rules::RuleKind::ALL);
        for kind in crate::alert::rules::RuleKind::ALL {
            assert!(
                text.contains(&format!("\n# kind = \"{}\"", kind.name())),
                "{}",
                kind.name()
            );
        }
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(
            Config::parse("", Path::new("t")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn metrics_labels_are_checked() {
        let err = |text: &str| {
            format!(
                "{:#}",
                anyhow::Error::from(Config::parse(text, Path::new("t")).unwrap_err())
            )
        };
        assert_eq!(
            err("[metrics]\nlabels = []\n"),
            "t, line 2, key metrics.labels: no labels; allowed: one or more of app, user, container, service, remote"
        );
        assert_eq!(
            err("[metrics]\nlabels = [\"user\", \"user\"]\n"),
            "t, line 2, key metrics.labels: \"user\" is listed twice"
        );
        assert!(err("[metrics]\nlabels = [\"node\"]\n").contains("unknown variant `node`"));
        let ok = Config::parse(
            "[metrics]\nlabels = [\"container\", \"app\"]\nhost = \"n1\"\n",
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(ok.metrics.labels.len(), 2);
        assert_eq!(crate::metrics::host_label(&ok.metrics, None), "n1");
        assert_eq!(crate::metrics::host_label(&ok.metrics, Some("n2")), "n2");
    }
}
