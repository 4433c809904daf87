//! The configuration parser (`kaipo config check`, the daemon's start and SIGHUP) on any text.
#![no_main]

use std::path::Path;

use kaipo::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Path::new("/etc/kaipo/kaipo.toml");
    match Config::parse(text, origin) {
        Ok(config) => {
            // `kaipo config show` prints what `kaipo config check` accepts again, unchanged.
            let shown = toml::to_string_pretty(&config).expect("a parsed config serializes");
            let again = Config::parse(&shown, origin)
                .unwrap_or_else(|e| panic!("`config show` output refused: {e}\n{shown}"));
            assert_eq!(again, config);
        }
        // The message names the line and the key: finding them must not panic either.
        Err(error) => drop(error.to_string()),
    }
});
