//! Strict parsing of the `http://` URLs the HTTP effector accepts, and of `host:port` allowlist entries.
//!
//! Deliberately narrower than the URL standard: ASCII only (percent-encode the rest), no userinfo (credentials
//! belong in headers, where they are redacted), an explicit or default port. What is refused here never reaches
//! the network, and the allowlist compares one normal form (`lowercase-host:port`).

use ice_core::ErrorCode;

use crate::EffectError;

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    /// Lowercase host; an IPv6 address keeps its brackets.
    pub host: String,
    /// Port (80 when not given).
    pub port: u16,
    /// Path and query as sent in the request line (`/` when empty); the fragment is dropped.
    pub target: String,
}

impl Url {
    /// The allowlist form, `host:port`.
    pub(crate) fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The `Host` header value: the port only when it is not the default.
    pub(crate) fn host_header(&self) -> String {
        if self.port == 80 { self.host.clone() } else { self.host_port() }
    }

    /// The host as the resolver wants it (an IPv6 address without brackets).
    pub(crate) fn connect_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// Parses an `http://` URL; `https://` is refused as not allowlisted (TLS is not built in yet).
pub(crate) fn parse_url(url: &str) -> Result<Url, EffectError> {
    let shown = || url.chars().take(200).collect::<String>().escape_debug().to_string();
    let bad = |why: &str| EffectError::new(ErrorCode::BadArgument, format!("url `{}` {why}", shown()));
    let lower_start = url.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    if lower_start.starts_with("https://") {
        return Err(EffectError::new(
            ErrorCode::NotAllowlisted,
            format!("url `{}`: https is not supported yet (TLS is not built in); only http:// URLs", shown()),
        ));
    }
    if !lower_start.starts_with("http://") {
        return Err(bad("must start with http://"));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("may contain only visible ASCII characters (percent-encode the rest)"));
    }
    let rest = &url[7..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(bad("must not carry credentials (user@host); send them in a header"));
    }
    let Some((host, port)) = parse_authority(authority, Some(80)) else {
        return Err(bad("has no valid host[:port]"));
    };
    let tail = tail.split('#').next().unwrap_or("");
    let target = match tail.chars().next() {
        None => "/".to_owned(),
        Some('?') => format!("/{tail}"),
        Some(_) => tail.to_owned(),
    };
    Ok(Url { host, port, target })
}

/// Normalises an allowlist entry: `host:port` with an explicit port, host lowercased.
pub(crate) fn parse_host_port(entry: &str) -> Option<String> {
    parse_authority(entry, None).map(|(host, port)| format!("{host}:{port}"))
}

/// `host[:port]` → (lowercase host, port). IPv6 hosts are bracketed; `default_port` `None` requires a port.
fn parse_authority(authority: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (addr, after) = inner.split_once(']')?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if host.is_empty() || host.len() > 253 || !host.bytes().all(valid) {
            return None;
        }
        (host.to_owned(), port)
    };
    let port = match port {
        Some(digits) => {
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse::<u16>().ok().filter(|p| *p != 0)?
        }
        None => default_port?,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Whether `s` is an RFC 9110 token (header names, methods).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_host_port_and_target() {
        let u = parse_url("http://127.0.0.1:8080/a/b?x=1#frag").unwrap();
        assert_eq!((u.host_port().as_str(), u.target.as_str()), ("127.0.0.1:8080", "/a/b?x=1"));
        assert_eq!(u.host_header(), "127.0.0.1:8080");
        let u = parse_url("http://Example.COM").unwrap();
        assert_eq!(
            (u.host_port().as_str(), u.target.as_str(), u.host_header().as_str()),
            ("example.com:80", "/", "example.com")
        );
        let u = parse_url("http://[::1]:9000?q").unwrap();
        assert_eq!((u.host_port().as_str(), u.target.as_str(), u.connect_host()), ("[::1]:9000", "/?q", "::1"));
    }

    #[test]
    fn bad_urls_are_refused() {
        assert_eq!(parse_url("https://example.com/").unwrap_err().code, ErrorCode::NotAllowlisted);
        for bad in [
            "ftp://x/",
            "http://",
            "http://user:pw@host/",
            "http://host:0/",
            "http://host:99999/",
            "http://host:/",
            "http://ho st/",
            "http://host/a b",
            "http://host/\r\nX: y",
            "http://hést/",
            "http://[zz]/",
        ] {
            assert_eq!(parse_url(bad).unwrap_err().code, ErrorCode::BadArgument, "{bad:?}");
        }
    }

    #[test]
    fn allowlist_entries_need_a_port() {
        assert_eq!(parse_host_port("LocalHost:8080").as_deref(), Some("localhost:8080"));
        assert_eq!(parse_host_port("[::1]:80").as_deref(), Some("[::1]:80"));
        assert_eq!(parse_host_port("localhost"), None);
        assert_eq!(parse_host_port("http://a:1"), None);
    }
}
