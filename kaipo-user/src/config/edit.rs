//! `kaipo config get|set|init`: reading one key of the effective configuration, and changing
//! one key of the file while keeping its comments and layout (toml_edit).

use std::{fs, io::Write as _, path::Path};

use super::{Config, ConfigError};

/// What `kaipo config init` writes ([`template`] fills in this platform's paths): every key at
/// its default, with what it does. A unit test checks that it parses to exactly
/// [`Config::default`].
const TEMPLATE: &str = r#"# kaipo configuration. Every key is optional; the values below are the defaults.
# Durations: 500ms, 30s, 5m, 2h, 1d. `kaipo config check` validates this file.

[daemon]
# History database (SQLite).
db = "@DB@"
# Unix socket for `kaipo status`, `kaipo report` and other clients.
socket = "@SOCKET@"
# Interfaces to monitor; empty: every interface that is up, except lo.
interfaces = []
# Length of one stored interval, the finest resolution of history (at least 1s).
interval = "1m"
# How often live figures are refreshed; at most `interval`.
live_interval = "1s"
# Count loopback traffic in process totals and history.
include_loopback = false
# The user the daemon becomes once its programs are attached (Linux; `kaipo install-service`
# creates it). "root" keeps it root. Without such a user the daemon stays root and says why.
user = "kaipo"
# Limit the daemon's files with Landlock after start (Linux 5.13+). A Landlock domain also
# keeps the daemon from reading other processes' /proc/PID/exe, so processes are then named by
# their command name (15 characters) instead of their executable.
landlock = false
# Count per flow on the interfaces: the attributed share of their bytes, and `interfaces`
# scoping process figures. Unset: only when `interfaces` names some; with none named only the
# socket programs run per packet (the cheapest path) and interface totals are the kernel's own
# counters. true: on every interface (as --flows). false: on none (as --no-flows; the daemon
# then refuses `interfaces`).
# flows = true

[storage]
# Encrypt the history database (SQLCipher, AES-256; Linux) with the key in this file: 64 hex
# digits (openssl rand -hex 32) or a passphrase, or "credential:NAME" for a systemd credential.
# "" keeps it unencrypted. `kaipo store encrypt|decrypt` converts an existing database.
encryption_key_file = ""

[api]
# Serve the daemon's status, queries and live snapshots over HTTPS on HOST:PORT (Linux); ""
# serves nothing. Needs the certificate and key (PEM) and a tokens file: one "TOKEN full" or
# "TOKEN uid:N" a line.
listen = ""
cert_file = ""
key_file = ""
tokens_file = ""
# Connections at once, and requests per token per minute.
max_connections = 16
requests_per_minute = 120

[metrics]
# Serve Prometheus metrics on http://HOST:PORT/metrics; "" serves nothing.
listen = ""
# Apps with their own series (0 to 1000); the others are summed as app="other".
top_apps = 20
# Labels of the per-app series: one or more of app, user, container, service, remote. Each
# combination of their values counts as one app of the top N.
labels = ["app"]
# The host label on every sample; "" is this machine's host name.
host = ""
# Turn on the kernel's BPF run-time statistics while metrics are served, for
# kaipo_bpf_program_run_seconds_total.
bpf_stats = true

[client]
# `kaipo report`'s format on standard output without --format: table, json, csv or html.
report_format = "table"

# Your own names. A service name replaces kaipo's for that protocol and port wherever services
# are shown and stored; a network names the remote addresses inside it (the longest prefix
# wins) and `kaipo report --by network` groups by it. None by default. A reload (SIGHUP)
# applies this section from the daemon's next interval.
[names]
# The daemon names remotes that no DNS answer named by reverse DNS (PTR lookups, at most 10 a
# second, on a thread of their own, cached). `kaipo live` does its own unless --no-reverse-dns.
reverse_dns = false

[names.services]
# "tcp/8443" = "admin-api"

[names.networks]
# "10.20.0.0/16" = "office"

[alerts]
# POST each alert as JSON to http://HOST[:PORT]/PATH (plain HTTP only); "" for none.
webhook = ""
webhook_timeout = "5s"
# Further attempts after a failed POST, 0.5s apart and doubling.
webhook_retries = 3
# Also log each alert to syslog (RFC 5424, facility daemon) through syslog_socket.
syslog = false
syslog_socket = "/dev/log"
# Rules, one [[alerts.rule]] each; none by default. One example of each kind (rate, quota,
# new_destination, anomaly): uncomment a block to use it.
#
# [[alerts.rule]]
# name = "upload-burst"
# kind = "rate"             # a rate above a threshold for a while
# scope = "app"             # app, process, user, container or interface
# target = "rsync"          # optional: only this one; without it, each one on its own
# direction = "tx"          # rx, tx or both (default both)
# above = 10000000          # bytes per second
# for = "30s"               # how long above before it fires (default 1m)
#
# [[alerts.rule]]
# name = "backup-quota"
# kind = "quota"            # this month's traffic (UTC) reached the quota, or will at its pace
# scope = "interface"       # app or interface; target is required
# target = "eth0"
# quota = 500000000000      # bytes per calendar month
#
# [[alerts.rule]]
# name = "new-peer"
# kind = "new_destination"  # an app talks to a remote or service it had not used
# learn = "1h"              # destinations learnt from start before alerting (default 1h)
#
# [[alerts.rule]]
# name = "unusual"
# kind = "anomaly"          # an app's rate far above its usual rate for this hour of the week
# score = 6                 # deviations above the app's baseline (default 4)
# for = "5m"                # how long above before it fires (default 1m)
"#;

/// Keys that have no value unless the file gives one (the default is a rule, not a value),
/// with the type a value must have.
const UNSET_BY_DEFAULT: [(&str, &str); 1] = [("daemon.flows", "boolean")];

/// What `get` prints for such a key the file leaves out.
pub const UNSET: &str = "(unset)";

fn unset_by_default(key: &str) -> Option<&'static str> {
    UNSET_BY_DEFAULT
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, kind)| *kind)
}

/// The value of `key` (dotted: `metrics.listen`) in `config`, as TOML; strings bare.
pub fn get(config: &Config, key: &str) -> Result<String, ConfigError> {
    let table = toml::Table::try_from(config).map_err(|e| ConfigError::Usage(e.to_string()))?;
    let value = match lookup(&table, key) {
        Err(_) if unset_by_default(key).is_some() => return Ok(UNSET.into()),
        found => found?,
    };
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn lookup<'a>(table: &'a toml::Table, key: &str) -> Result<&'a toml::Value, ConfigError> {
    let mut parts = key.split('.');
    let first = parts.next().unwrap_or_default();
    let mut value = table.get(first);
    for part in parts {
        value = value.and_then(|v| v.as_table()).and_then(|t| t.get(part));
    }
    value.ok_or_else(|| {
        ConfigError::Usage(format!(
            "unknown key {key}; allowed: {}",
            known_keys().join(", ")
        ))
    })
}

/// Every settable key, dotted.
pub fn known_keys() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(table) = toml::Table::try_from(Config::default()) {
        for (section, v) in &table {
            if let Some(t) = v.as_table() {
                out.extend(t.keys().map(|k| format!("{section}.{k}")));
            }
        }
    }
    out.extend(UNSET_BY_DEFAULT.iter().map(|(k, _)| (*k).to_owned()));
    out.sort();
    out
}

/// Sets `key` to `value` in the file at `path` (created when missing), keeping everything else
/// as written. `value` is TOML (`20`, `true`, `["eth0"]`) for keys that are not strings; for
/// string keys it is taken as it is. The file is only replaced when the result is valid.
pub fn set(path: &Path, key: &str, value: &str) -> Result<Config, ConfigError> {
    let default =
        toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Usage(e.to_string()))?;
    // A key unset by default has no default value to take the type from. Either way the
    // value's type is checked when the new file is parsed below.
    let expected = match (lookup(&default, key), unset_by_default(key)) {
        (Ok(v), _) => v.type_str(),
        (Err(_), Some(kind)) => kind,
        (Err(e), None) => return Err(e),
    };
    let new_value: toml_edit::Value = if expected == "string" {
        value.into()
    } else {
        value
            .parse()
            .map_err(|_| ConfigError::Usage(format!("{key}: '{value}' is not a TOML {expected}")))?
    };
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        ConfigError::Usage(format!("{}: {}", path.display(), e.message()))
    })?;
    let (section, name) = key.split_once('.').unwrap_or(("", key));
    let table = doc
        .entry(section)
        .or_insert(toml_edit::table())
        .as_table_mut()
        .ok_or_else(|| {
            ConfigError::Usage(format!("{section} is not a table in {}", path.display()))
        })?;
    match table.get_mut(name).and_then(|item| item.as_value_mut()) {
        // Keeps the comment and spacing around the old value.
        Some(old) => {
            let decor = old.decor().clone();
            *old = new_value;
            *old.decor_mut() = decor;
        }
        None => table[name] = toml_edit::value(new_value),
    }
    let new_text = doc.to_string();
    let config = Config::parse(&new_text, path)?;
    write_replacing(path, &new_text)?;
    Ok(config)
}

/// Writes `text` to `path` through a temporary file and a rename, so that a reader (a daemon
/// reloading on SIGHUP) never sees half a file.
pub fn write_replacing(path: &Path, text: &str) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("toml.tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// [`TEMPLATE`] with the daemon's default paths here.
pub fn template() -> String {
    TEMPLATE
        .replace("@DB@", crate::api::protocol::DEFAULT_DB)
        .replace("@SOCKET@", crate::api::protocol::DEFAULT_SOCKET)
}

/// Writes [`template`] to `path`; refuses to replace a file unless `force`.
pub fn init(path: &Path, force: bool) -> Result<(), ConfigError> {
    if path.exists() && !force {
        return Err(ConfigError::Usage(format!(
            "{} exists; use --force to replace it",
            path.display()
        )));
    }
    write_replacing(path, &template())
}
