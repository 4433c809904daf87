//! Bearer tokens and what each may see, from the tokens file; and each token's request budget.
//!
//! One token a line: `TOKEN full` (everything, as root or group kaipo on the socket) or
//! `TOKEN uid:N` (only uid N's processes, as that user on the socket). `#` starts a comment.
//! Tokens are at least 16 characters of ASCII letters, digits, `-`, `_` or `.`.

use std::{
    collections::HashMap,
    fs,
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

/// What a token's holder sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Full,
    Uid(u32),
}

impl Scope {
    /// The socket API's view: None for everything, Some(uid) for one user's.
    pub fn only_uid(self) -> Option<u32> {
        match self {
            Self::Full => None,
            Self::Uid(uid) => Some(uid),
        }
    }
}

const MIN_TOKEN: usize = 16;

/// The tokens of the file, in order.
#[derive(Debug, Default)]
pub struct Tokens(Vec<(String, Scope)>);

impl Tokens {
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut tokens = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |why: &str| format!("line {}: {why}", n + 1);
            let mut words = line.split_whitespace();
            let (Some(token), Some(scope), None) = (words.next(), words.next(), words.next())
            else {
                return Err(at("expected TOKEN full or TOKEN uid:N"));
            };
            if token.len() < MIN_TOKEN
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(at(&format!(
                    "a token is at least {MIN_TOKEN} letters, digits, '-', '_' or '.' \
                     (openssl rand -hex 32 makes one)"
                )));
            }
            let scope = match scope {
                "full" => Scope::Full,
                s => match s.strip_prefix("uid:").and_then(|u| u.parse().ok()) {
                    Some(uid) => Scope::Uid(uid),
                    None => return Err(at(&format!("scope {s:?} is neither full nor uid:N"))),
                },
            };
            if tokens.iter().any(|(t, _)| t == token) {
                return Err(at("this token is listed twice"));
            }
            tokens.push((token.to_owned(), scope));
        }
        if tokens.is_empty() {
            return Err("no token in the file: nobody could use the API".into());
        }
        Ok(Tokens(tokens))
    }

    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The scope of `presented`, comparing every token in full whatever matches, so that the
    /// time taken says nothing about how much of a token was right.
    pub fn scope(&self, presented: &str) -> Option<(usize, Scope)> {
        let mut found = None;
        for (i, (token, scope)) in self.0.iter().enumerate() {
            let same = token.len() == presented.len()
                && token
                    .bytes()
                    .zip(presented.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            if same {
                found = Some((i, *scope));
            }
        }
        found
    }
}

/// Requests per token per minute, refilled continuously (a token bucket).
pub struct RateLimit {
    per_minute: u32,
    buckets: Mutex<HashMap<usize, (f64, Instant)>>,
}

impl RateLimit {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `token`'s budget, or says how long until the next one.
    pub fn take(&self, token: usize, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.per_minute) / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (level, last) = buckets
            .entry(token)
            .or_insert((f64::from(self.per_minute), now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *level = (*level + elapsed * rate).min(f64::from(self.per_minute));
        *last = now;
        if *level >= 1.0 {
            *level -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *level) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_scopes_and_says_what_is_wrong() {
        let t = Tokens::parse(
            "# remote readers\n0123456789abcdef full\nuser1000-token-xyz uid:1000 # alice\n",
        )
        .unwrap();
        assert_eq!(t.scope("0123456789abcdef"), Some((0, Scope::Full)));
        assert_eq!(t.scope("user1000-token-xyz"), Some((1, Scope::Uid(1000))));
        assert_eq!(t.scope("0123456789abcdeF"), None);
        assert_eq!(t.scope(""), None);
        assert_eq!(
            Tokens::parse("short full").unwrap_err(),
            "line 1: a token is at least 16 letters, digits, '-', '_' or '.' (openssl rand -hex \
             32 makes one)"
        );
        assert_eq!(
            Tokens::parse("0123456789abcdef uid:x").unwrap_err(),
            "line 1: scope \"uid:x\" is neither full nor uid:N"
        );
        assert!(Tokens::parse("# nothing\n")
            .unwrap_err()
            .starts_with("no token"));
    }

    #[test]
    fn a_token_gets_its_budget_per_minute_and_no_more() {
        let limit = RateLimit::new(3);
        let t0 = Instant::now();
        assert_eq!(limit.take(0, t0), Ok(()));
        assert_eq!(limit.take(0, t0), Ok(()));
        assert_eq!(limit.take(0, t0), Ok(()));
        let wait = limit.take(0, t0).unwrap_err();
        assert_eq!(wait.as_secs(), 20, "one request every 20 s at 3 a minute");
        // Another token has its own budget.
        assert_eq!(limit.take(1, t0), Ok(()));
        assert_eq!(limit.take(0, t0 + Duration::from_secs(20)), Ok(()));
        assert!(limit.take(0, t0 + Duration::from_secs(20)).is_err());
    }
}
