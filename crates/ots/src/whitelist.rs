//! Which calendars `upgrade` may contact. A pending attestation names a URL
//! chosen by whoever made the proof; fetching arbitrary URLs from a file we
//! were handed would let it make us contact any host, so only calendars
//! matching the whitelist are asked. Patterns glob the host (`*`, `?`); the
//! scheme and path must match exactly. A pattern without a scheme allows
//! both http and https.

/// The calendars the reference client trusts by default.
pub const DEFAULT_WHITELIST: &[&str] = &[
    "https://*.calendar.opentimestamps.org",
    "https://*.calendar.eternitywall.com",
    "https://*.calendar.catallaxy.com",
];

/// The calendars `stamp` submits to by default (they aggregate and forward
/// to the whitelisted calendars).
pub const DEFAULT_AGGREGATORS: &[&str] = &[
    "https://a.pool.opentimestamps.org",
    "https://b.pool.opentimestamps.org",
    "https://a.pool.eternitywall.com",
    "https://ots.btc.catallaxy.com",
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    scheme: String,
    host: String,
    path: String,
}

/// A set of calendar URL patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Whitelist {
    patterns: Vec<Pattern>,
}

impl Whitelist {
    /// An empty whitelist.
    pub fn new() -> Self {
        Whitelist::default()
    }

    /// The default whitelist.
    pub fn default_calendars() -> Self {
        let mut w = Whitelist::new();
        for url in DEFAULT_WHITELIST {
            w.add(url);
        }
        w
    }

    /// Adds a pattern; false if it is not a usable URL pattern (it has a
    /// query or fragment, or no host).
    pub fn add(&mut self, url: &str) -> bool {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            let a = self.add(&format!("http://{url}"));
            let b = self.add(&format!("https://{url}"));
            return a && b;
        }
        match split(url) {
            Some(p) => {
                self.patterns.push(p);
                true
            }
            None => false,
        }
    }

    /// Whether `url` matches a pattern.
    pub fn contains(&self, url: &str) -> bool {
        let Some(u) = split(url) else { return false };
        self.patterns
            .iter()
            .any(|p| p.scheme == u.scheme && p.path == u.path && glob(&p.host, &u.host))
    }
}

/// scheme, host[:port] and path of an http(s) URL; `None` with a query,
/// fragment, user info or no host. An empty path and `/` are the same.
fn split(url: &str) -> Option<Pattern> {
    let (scheme, rest) = url.split_once("://")?;
    if rest.contains(['?', '#', '@']) {
        return None;
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() {
        return None;
    }
    let path = if path.is_empty() { "/" } else { path };
    Some(Pattern {
        scheme: scheme.to_ascii_lowercase(),
        host: host.to_ascii_lowercase(),
        path: path.to_string(),
    })
}

/// Shell-style glob: `*` any run, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_whitelist_matches_the_public_calendars() {
        let w = Whitelist::default_calendars();
        assert!(w.contains("https://alice.btc.calendar.opentimestamps.org"));
        assert!(w.contains("https://finney.calendar.eternitywall.com"));
        assert!(!w.contains("http://alice.btc.calendar.opentimestamps.org"));
        assert!(!w.contains("https://evil.example/alice.btc.calendar.opentimestamps.org"));
        assert!(!w.contains("https://alice.btc.calendar.opentimestamps.org.evil.example"));
        assert!(!w.contains("https://alice.btc.calendar.opentimestamps.org/?x"));
    }

    #[test]
    fn schemeless_patterns_allow_both() {
        let mut w = Whitelist::new();
        assert!(w.add("127.0.0.1:14788"));
        assert!(w.contains("http://127.0.0.1:14788"));
        assert!(w.contains("https://127.0.0.1:14788/"));
        assert!(!w.contains("http://127.0.0.1:14789"));
        assert!(!w.add("http://x/?q"));
    }

    #[test]
    fn globbing() {
        assert!(glob("*.a.org", "x.y.a.org"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("*.a.org", "a.org"));
        assert!(glob("*", ""));
    }
}
