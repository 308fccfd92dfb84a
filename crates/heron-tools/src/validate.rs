//! Checks of indicator values before they are sent to a third party. Each answers the
//! normalised value, or a message the model can act on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub(crate) fn ipv4(value: &str) -> Result<Ipv4Addr, String> {
    value
        .trim()
        .parse::<Ipv4Addr>()
        .map_err(|_| format!("{value:?} is not an IPv4 address (dotted quad, e.g. 203.0.113.9)"))
}

pub(crate) fn ipv6(value: &str) -> Result<Ipv6Addr, String> {
    let trimmed = value.trim().trim_start_matches('[').trim_end_matches(']');
    trimmed
        .parse::<Ipv6Addr>()
        .map_err(|_| format!("{value:?} is not an IPv6 address (e.g. 2001:db8::1)"))
}

/// A DNS name: ASCII (punycode for IDNs), 2+ labels of letters, digits and hyphens (and `_`,
/// seen in real hostnames), none empty or longer than 63, at most 253 in all, and a TLD that
/// is not a number (that would be an IP address). Lower-cased, without a trailing dot.
pub(crate) fn dns_name(value: &str) -> Result<String, String> {
    let name = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let bad = |why: &str| Err(format!("{value:?} is not a valid domain name: {why}"));
    if name.is_empty() || name.len() > 253 {
        return bad("it must be 1 to 253 characters");
    }
    if !name.is_ascii() {
        return bad("use the punycode (xn--) form of internationalised names");
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return bad("it needs at least two labels, like example.com");
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return bad("every label must be 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("only letters, digits, '-' and '_' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with '-'");
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("the last label is a number; use otx_ipv4 for addresses");
    }
    Ok(name)
}

/// An MD5, SHA-1 or SHA-256 hex digest, lower-cased.
pub(crate) fn file_hash(value: &str) -> Result<String, String> {
    let hash = value.trim().to_ascii_lowercase();
    if matches!(hash.len(), 32 | 40 | 64) && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hash)
    } else {
        Err(format!(
            "{value:?} is not an MD5, SHA-1 or SHA-256 hex digest (32, 40 or 64 hex characters)"
        ))
    }
}

/// An absolute http(s) URL with a host.
pub(crate) fn web_url(value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value.trim())
        .map_err(|e| format!("{value:?} is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{value:?} is not an http(s) URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{value:?} has no host"));
    }
    Ok(url)
}

/// A URL that may be handed to a third party for scanning: http(s), no credentials in it, and
/// a host that is a public DNS name or a public IP address. The third party fetches it, not
/// Heron, so the risk is not a request from inside the network but leaking internal names,
/// addresses and secrets to a public service — hence localhost, private, loopback,
/// link-local, shared, documentation and multicast addresses, single-label names and
/// internal-only suffixes are refused.
pub(crate) fn public_web_url(value: &str) -> Result<reqwest::Url, String> {
    let url = web_url(value)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL contains credentials; remove them before scanning".into());
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => public_ip(IpAddr::V4(ip)).map(|()| url.clone()),
        Some(url::Host::Ipv6(ip)) => public_ip(IpAddr::V6(ip)).map(|()| url.clone()),
        Some(url::Host::Domain(domain)) => {
            let name = domain.trim_end_matches('.').to_ascii_lowercase();
            let internal = [
                "localhost",
                "local",
                "internal",
                "intranet",
                "lan",
                "home.arpa",
            ];
            if internal
                .iter()
                .any(|s| name == *s || name.ends_with(&format!(".{s}")))
            {
                return Err(format!(
                    "{name} is an internal name; only public hosts may be scanned"
                ));
            }
            dns_name(&name).map_err(|why| format!("{why}; only public hosts may be scanned"))?;
            Ok(url.clone())
        }
        None => Err(format!("{value:?} has no host")),
    }
}

/// Whether an address is one a public service could meaningfully be asked about.
pub(crate) fn public_ip(ip: IpAddr) -> Result<(), String> {
    let refuse = |kind: &str| Err(format!("{ip} is a {kind} address, not a public one"));
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            if v4.is_loopback() {
                refuse("loopback")
            } else if v4.is_private() {
                refuse("private (RFC 1918)")
            } else if v4.is_link_local() {
                refuse("link-local")
            } else if a == 100 && (64..128).contains(&b) {
                refuse("shared (CGNAT)")
            } else if v4.is_unspecified() || a == 0 {
                refuse("unspecified")
            } else if v4.is_broadcast() || v4.is_multicast() || a >= 240 {
                refuse("multicast or reserved")
            } else if v4.is_documentation() || (a == 198 && (b & 0xfe) == 18) {
                refuse("documentation or benchmarking")
            } else if a == 192 && b == 0 && c == 0 {
                refuse("IETF protocol assignment")
            } else {
                Ok(())
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() || v6.is_unspecified() {
                refuse("loopback or unspecified")
            } else if (first & 0xfe00) == 0xfc00 {
                refuse("unique local (fc00::/7)")
            } else if (first & 0xffc0) == 0xfe80 {
                refuse("link-local")
            } else if v6.is_multicast() {
                refuse("multicast")
            } else if first == 0x2001 && v6.segments()[1] == 0x0db8 {
                refuse("documentation")
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_private_ones_are_not_public() {
        assert!(ipv4("203.0.113.9").is_ok());
        assert!(ipv4("203.0.113").is_err());
        assert!(ipv4("1.2.3.4.5").is_err());
        assert!(ipv6("[2001:db8::1]").is_ok());
        assert!(ipv6("2001:db8::zz").is_err());
        for private in [
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(public_ip(ip).is_err(), "{private}");
        }
        for public in ["8.8.8.8", "98.136.103.23", "2606:4700::1111"] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(public_ip(ip).is_ok(), "{public}");
        }
    }

    #[test]
    fn domain_names_are_checked_and_normalised() {
        assert_eq!(dns_name("Example.COM."), Ok("example.com".into()));
        assert_eq!(
            dns_name("xn--bcher-kva.example"),
            Ok("xn--bcher-kva.example".into())
        );
        for bad in [
            "localhost",
            "exa mple.com",
            "-bad.com",
            "a..b",
            "bücher.de",
            "1.2.3.4",
            "",
        ] {
            assert!(dns_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes_are_md5_sha1_or_sha256_hex() {
        assert!(file_hash("2eb14920c75d5e73264f77cfa273ad2c").is_ok());
        assert!(file_hash("6C5360D41BD2B14B1565F5B18E5C203CF512E493").is_ok());
        assert!(file_hash(&"a".repeat(64)).is_ok());
        assert!(file_hash("xyz").is_err());
        assert!(file_hash(&"g".repeat(32)).is_err());
    }

    #[test]
    fn only_public_http_urls_may_be_scanned() {
        assert!(public_web_url("https://example.com/login?next=/").is_ok());
        assert!(public_web_url("http://98.136.103.23/x").is_ok());
        for refused in [
            "ftp://example.com/",
            "http://localhost:8080/",
            "http://app.localhost/",
            "http://127.0.0.1/",
            "http://10.0.0.8/admin",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://intranet/",
            "http://wiki.corp.internal/",
            "https://user:secret@example.com/",
            "not a url",
        ] {
            assert!(public_web_url(refused).is_err(), "{refused}");
        }
    }
}
