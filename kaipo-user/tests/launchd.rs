//! The launchd job `kaipo install-service` writes on macOS, parsed as XML (a property list)
//! and checked against the options given: the binary (a path that needs escaping), whether
//! it is enabled, the restart policy and the log. The writer is plain file I/O, so it runs
//! here with `--root` pointing at a scratch directory.

use std::{collections::BTreeMap, os::unix::fs::PermissionsExt as _, path::Path};

use kaipo::service::launchd;

/// A property list's top-level dict: each key and the element that follows it.
fn top_dict(doc: &roxmltree::Document) -> BTreeMap<String, roxmltree::NodeId> {
    let plist = doc.root_element();
    assert_eq!(plist.tag_name().name(), "plist");
    assert_eq!(plist.attribute("version"), Some("1.0"));
    let dict = plist.children().find(|n| n.is_element()).expect("a dict");
    assert_eq!(dict.tag_name().name(), "dict");
    let elements: Vec<roxmltree::Node> = dict.children().filter(|n| n.is_element()).collect();
    assert_eq!(elements.len() % 2, 0, "keys and values pair up");
    elements
        .chunks(2)
        .map(|kv| {
            assert_eq!(kv[0].tag_name().name(), "key");
            (kv[0].text().unwrap_or_default().to_owned(), kv[1].id())
        })
        .collect()
}

fn check(text: &str, binary: &str, enabled: bool) {
    let doc = roxmltree::Document::parse_with_options(
        text,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .expect("the plist is well-formed XML");
    let keys = top_dict(&doc);
    let node = |k: &str| doc.get_node(keys[k]).expect("node");
    assert_eq!(
        keys.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "Disabled",
            "KeepAlive",
            "Label",
            "ProcessType",
            "ProgramArguments",
            "RunAtLoad",
            "StandardErrorPath",
            "ThrottleInterval"
        ]
    );
    assert_eq!(node("Label").text(), Some("org.kaipo.daemon"));
    let args: Vec<&str> = node("ProgramArguments")
        .children()
        .filter(|n| n.is_element())
        .map(|n| {
            assert_eq!(n.tag_name().name(), "string");
            n.text().unwrap_or_default()
        })
        .collect();
    assert_eq!(args, [binary, "daemon"]);
    assert_eq!(
        node("Disabled").tag_name().name(),
        if enabled { "false" } else { "true" }
    );
    assert_eq!(node("RunAtLoad").tag_name().name(), "true");
    let keep: Vec<(&str, &str)> = node("KeepAlive")
        .children()
        .filter(|n| n.is_element())
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|kv| (kv[0].text().unwrap_or_default(), kv[1].tag_name().name()))
        .collect();
    assert_eq!(keep, [("SuccessfulExit", "false")]);
    assert_eq!(node("StandardErrorPath").text(), Some("/var/log/kaipo.log"));
    assert_eq!(node("ThrottleInterval").text(), Some("5"));
}

#[test]
fn the_launchd_job_says_what_was_asked() {
    let dir = std::env::temp_dir().join(format!("kaipo-launchd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let binary = "/opt/kaipo & co/<bin>/kaipo";
    let mut out = Vec::new();
    launchd::install(&dir, Some(binary.into()), false, &mut out).unwrap();
    let path = dir.join(launchd::PLIST_PATH);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("wrote {} (runs {binary})\n", path.display())
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
    check(&std::fs::read_to_string(&path).unwrap(), binary, false);
    check(
        &launchd::plist(Path::new("/usr/local/bin/kaipo"), true),
        "/usr/local/bin/kaipo",
        true,
    );
    // --enable needs the live system; a relative binary is refused.
    let err = |root: &Path, bin: &str, enable: bool| {
        launchd::install(root, Some(bin.into()), enable, &mut Vec::new())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(&dir, binary, true),
        "--enable needs the live system, not --root"
    );
    assert_eq!(
        err(&dir, "kaipo", false),
        "--binary kaipo must be an absolute path"
    );
    let mut out = Vec::new();
    launchd::uninstall(&dir, &mut out).unwrap();
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
