//! `kaipo config`: errors that name the file, line, key and what is allowed; set and get
//! round trips that keep comments. Runs the real binary; needs no privileges.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("kaipo-config-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("a scratch dir");
        Scratch(dir)
    }

    fn file(&self, text: &str) -> PathBuf {
        let path = self.0.join("kaipo.toml");
        fs::write(&path, text).expect("writing the file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn kaipo(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("running kaipo")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What `config check` says about `text`, with the scratch path replaced by FILE.
fn check_error(text: &str) -> String {
    let s = Scratch::new("check");
    let path = s.file(text);
    let out = kaipo(&path, &["config", "check"]);
    assert!(!out.status.success(), "{text} was accepted");
    String::from_utf8_lossy(&out.stderr)
        .replace(&path.display().to_string(), "FILE")
        .trim_end()
        .to_owned()
}

#[test]
fn a_wrong_key_names_it_its_line_and_the_allowed_keys() {
    assert_eq!(
        check_error("[metrics]\nlisten = \"127.0.0.1:9\"\ntop_app = 5\n"),
        "kaipo: FILE, line 3, key metrics.top_app: unknown field `top_app`, expected one of \
         `listen`, `top_apps`, `labels`, `host`, `bpf_stats`"
    );
    assert_eq!(
        check_error("# c\n[metric]\n"),
        "kaipo: FILE, line 2, key metric: unknown field `metric`, expected one of `daemon`, \
         `storage`, `api`, `metrics`, `client`, `alerts`, `names`"
    );
    assert_eq!(
        check_error("[api]\nmax_connections = 0\n"),
        "kaipo: FILE, line 2, key api.max_connections: 0 is out of range; allowed: 1 to 4096"
    );
}

#[test]
fn a_wrong_type_names_the_key_and_line() {
    assert_eq!(
        check_error("[metrics]\n\ntop_apps = \"many\"\n"),
        "kaipo: FILE, line 3, key metrics.top_apps: invalid type: string \"many\", expected usize"
    );
}

#[test]
fn a_bad_value_says_what_is_allowed() {
    assert_eq!(
        check_error("[daemon]\ninterval = \"5x\"\n"),
        "kaipo: FILE, line 2, key daemon.interval: unknown unit 'x' in '5x'; use ms, s, m, h or d"
    );
    assert_eq!(
        check_error("[metrics]\nlisten = \"localhost:80\"\n"),
        "kaipo: FILE, line 2, key metrics.listen: 'localhost:80' is not an address; allowed: \
         IP:PORT (127.0.0.1:9542, [::1]:9542) or \"\" for off"
    );
    assert_eq!(
        check_error("[metrics]\nbpf_stats = true\ntop_apps = 5000\n"),
        "kaipo: FILE, line 3, key metrics.top_apps: 5000 is too many; allowed: 0 to 1000"
    );
    assert_eq!(
        check_error("[daemon]\ninterval = \"10s\"\nlive_interval = \"20s\"\n"),
        "kaipo: FILE, line 3, key daemon.live_interval: 20s is longer than daemon.interval \
         (10s); allowed: at most daemon.interval"
    );
    assert_eq!(
        check_error("[client]\nreport_format = \"xml\"\n"),
        "kaipo: FILE, line 2, key client.report_format: unknown variant `xml`, expected one of \
         `table`, `json`, `csv`, `html`"
    );
}

/// Durations out of range are refused with the key and the bounds, in the file and on the
/// command line alike; they used to panic (exit 101) or wrap around to a few hundred ms.
#[test]
fn durations_out_of_range_are_errors_that_name_the_bounds() {
    assert_eq!(
        check_error("[daemon]\ninterval = \"99999999999999999999s\"\n"),
        "kaipo: FILE, line 2, key daemon.interval: '99999999999999999999s' is out of range: a \
         duration is at most 3650d"
    );
    assert_eq!(
        check_error("[daemon]\ninterval = \"18446744073709551615ms\"\n"),
        "kaipo: FILE, line 2, key daemon.interval: '18446744073709551615ms' is out of range: a \
         duration is at most 3650d"
    );
    assert_eq!(
        check_error("[daemon]\nlive_interval = \"1ms\"\n"),
        "kaipo: FILE, line 2, key daemon.live_interval: 1ms is too short; allowed: 100ms to \
         daemon.interval"
    );
    let s = Scratch::new("flags");
    let path = s.file("");
    for (args, said) in [
        (
            &["watch", "--interval", "99999999999999999999s"][..],
            "'99999999999999999999s' is out of range: a duration is at most 3650d",
        ),
        (
            &["watch", "--interval", "1ms"][..],
            "'1ms' is out of range: from 100ms to 1d",
        ),
        (
            &["report", "--since", "99999999999999999999s"][..],
            "'99999999999999999999s' is out of range: a duration is at most 3650d",
        ),
    ] {
        let out = kaipo(&path, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
}

#[test]
fn set_then_get_round_trips_and_keeps_comments() {
    let s = Scratch::new("set");
    let path = s.file("# mine\n[metrics]\n# how many\ntop_apps = 3 # few\n");
    let out = kaipo(&path, &["config", "set", "metrics.top_apps", "7"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "metrics.top_apps = 7\n");
    let out = kaipo(
        &path,
        &["config", "set", "metrics.listen", "127.0.0.1:9542"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "# mine\n[metrics]\n# how many\ntop_apps = 7 # few\nlisten = \"127.0.0.1:9542\"\n"
    );
    assert_eq!(
        stdout(&kaipo(&path, &["config", "get", "metrics.listen"])),
        "127.0.0.1:9542\n"
    );
    assert_eq!(
        stdout(&kaipo(&path, &["config", "get", "metrics.top_apps"])),
        "7\n"
    );
    // Defaults show through for keys the file does not have.
    assert_eq!(
        stdout(&kaipo(&path, &["config", "get", "daemon.interval"])),
        "1m\n"
    );
    // An invalid value leaves the file alone.
    let before = fs::read_to_string(&path).unwrap();
    let out = kaipo(&path, &["config", "set", "metrics.listen", "nowhere"]);
    assert!(!out.status.success());
    let out = kaipo(&path, &["config", "set", "metrics.nope", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("kaipo: unknown key metrics.nope; allowed: "));
    assert_eq!(fs::read_to_string(&path).unwrap(), before);
}

#[test]
fn init_writes_the_defaults_and_check_accepts_them() {
    let s = Scratch::new("init");
    let path = s.0.join("sub/kaipo.toml");
    assert!(kaipo(&path, &["config", "init"]).status.success());
    assert!(
        !kaipo(&path, &["config", "init"]).status.success(),
        "replaced without --force"
    );
    let out = kaipo(&path, &["config", "check"]);
    assert_eq!(stdout(&out), format!("{}: ok\n", path.display()));
    assert_eq!(
        stdout(&kaipo(&path, &["config", "path"])),
        format!("{}\n", path.display())
    );
    let shown = stdout(&kaipo(&path, &["config", "show"]));
    assert!(
        shown.contains(
            "[metrics]\nlisten = \"\"\ntop_apps = 20\nlabels = [\"app\"]\nhost = \"\"\nbpf_stats = true\n"
        ),
        "{shown}"
    );
}
