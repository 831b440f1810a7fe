//! Where the layer finds a request's client address, for the failed-attempt limiter.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::{HeaderMap, HeaderName};

/// Where [`PatLayer`](super::PatLayer) finds a request's client address, for the
/// failed-attempt limiter ([`AttemptLimiter`](crate::AttemptLimiter)).
///
/// By default, from the connection: axum's `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`) or a plain [`SocketAddr`]
/// request extension. Behind reverse proxies every connection comes from a proxy, so
/// every client would share one count: [`ClientAddress::x_forwarded_for`] and
/// [`ClientAddress::forwarded`] read the address the proxies recorded instead. They are
/// never on by default, since any client can send those headers.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::net::SocketAddr;
/// use std::sync::Arc;
/// use axum::{routing::get, Router};
/// use tower_pat::layer::ClientAddress;
/// use tower_pat::{Authenticator, MemoryStore, PatLayer};
///
/// let auth = Authenticator::new(Arc::new(MemoryStore::new()));
/// // One nginx in front (`proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`),
/// // and the application reachable only through it.
/// let app = Router::new()
///     .route("/whoami", get(|| async { "me" }))
///     .layer(PatLayer::new(auth).with_client_address(ClientAddress::x_forwarded_for(1)));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// // The connection's address is the fallback: keep it available.
/// let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>());
/// # drop(server);
/// # }
/// ```
///
/// # Trusted hops
///
/// Each proxy appends the address it received the request from, so the right-most
/// entries are the ones your own proxies wrote and everything to their left is what the
/// client sent, which it chooses freely. With `trusted_hops = n` the address is the entry
/// `n` places from the right (1 = the right-most, written by the proxy nearest to the
/// application); a client that sends its own `X-Forwarded-For: 203.0.113.9` behind one
/// proxy only adds an entry to the left of the one that counts. Several header lines
/// count as one list, in order.
///
/// The connection's address is used instead when the header is missing, has fewer than
/// `n` entries, or any of the `n` right-most entries is not an IP address (garbage,
/// `unknown`, an obfuscated `_node`, a non-ASCII value): an address that cannot be read
/// is never trusted. `trusted_hops = 0` means no proxy: the header is ignored.
///
/// Read only the header your proxies write (a client could send the other one past
/// them), and only when the application cannot be reached but through them: a client
/// that connects directly picks its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientAddress {
    source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Source {
    #[default]
    Connection,
    XForwardedFor(usize),
    Forwarded(usize),
}

impl ClientAddress {
    /// The connection's peer address: axum's `ConnectInfo<SocketAddr>`, or a
    /// [`SocketAddr`] request extension (the default).
    pub const fn connection() -> Self {
        Self {
            source: Source::Connection,
        }
    }

    /// The entry `trusted_hops` places from the right of `X-Forwarded-For`, where that
    /// many proxies of yours append to it (nginx's `$proxy_add_x_forwarded_for`,
    /// HAProxy's `option forwardfor`, most load balancers); else the connection's
    /// address. Entries are IP addresses, optionally with a port (`192.0.2.1:4711`,
    /// `[2001:db8::1]:4711`).
    pub const fn x_forwarded_for(trusted_hops: usize) -> Self {
        Self {
            source: match trusted_hops {
                0 => Source::Connection,
                n => Source::XForwardedFor(n),
            },
        }
    }

    /// The `for=` of the element `trusted_hops` places from the right of the RFC 7239
    /// `Forwarded` header, where that many proxies of yours append to it; else the
    /// connection's address. An element without a usable `for=` IP address (`unknown`,
    /// an obfuscated identifier) falls back too.
    pub const fn forwarded(trusted_hops: usize) -> Self {
        Self {
            source: match trusted_hops {
                0 => Source::Connection,
                n => Source::Forwarded(n),
            },
        }
    }

    /// The client's address for a request with these headers and extensions. No
    /// allocation.
    pub(crate) fn of(&self, headers: &HeaderMap, ext: &http::Extensions) -> Option<IpAddr> {
        let forwarded = match self.source {
            Source::Connection => None,
            Source::XForwardedFor(hops) => {
                static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
                nth_from_right(headers, &XFF, hops, parse_node)
            }
            Source::Forwarded(hops) => nth_from_right(
                headers,
                &http::header::FORWARDED,
                hops,
                parse_forwarded_element,
            ),
        };
        forwarded.or_else(|| connection(ext))
    }
}

/// The connection's peer address, if the server recorded it.
fn connection(ext: &http::Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = ext.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    ext.get::<SocketAddr>().map(SocketAddr::ip)
}

/// The address in the comma-separated entry `hops` places from the right of all `name`
/// lines together, if it and every entry to its right parse.
///
/// Split on every comma, even inside quotes: what a client sent is on the left, and an
/// unbalanced quote there must not swallow the entries the proxies appended after it.
fn nth_from_right(
    headers: &HeaderMap,
    name: &HeaderName,
    hops: usize,
    parse: impl Fn(&str) -> Option<IpAddr>,
) -> Option<IpAddr> {
    let mut seen = 0;
    for line in headers.get_all(name).iter().rev() {
        let text = line.to_str().ok()?;
        for entry in text.rsplit(',') {
            seen += 1;
            let ip = parse(entry.trim_matches([' ', '\t']))?;
            if seen == hops {
                return Some(ip);
            }
        }
    }
    None
}

/// One `X-Forwarded-For` entry, or a `for=` value without its quotes: an IP address,
/// optionally with a port, IPv6 optionally in brackets.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The `for=` address of one RFC 7239 element (`for=192.0.2.60;proto=http;by=…`). A
/// pair that is not `name=value`, or a second `for`, makes the element unusable.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let (name, value) = pair.trim_matches([' ', '\t']).split_once('=')?;
        if name.eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None;
            }
            let value = match value.strip_prefix('"') {
                Some(quoted) => quoted.strip_suffix('"')?,
                None => value,
            };
            found = Some(parse_node(value)?);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// What `source` finds for a request from 10.9.9.9 with these header lines.
    fn found(source: ClientAddress, lines: &[(&'static str, &str)]) -> Option<IpAddr> {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(*name, http::HeaderValue::from_str(value).unwrap());
        }
        let mut ext = http::Extensions::new();
        ext.insert(SocketAddr::from(([10, 9, 9, 9], 40_000)));
        source.of(&headers, &ext)
    }

    const PEER: &str = "10.9.9.9";
    const XFF: &str = "x-forwarded-for";
    const FWD: &str = "forwarded";

    #[test]
    fn the_connection_is_the_default_and_headers_are_ignored() {
        for source in [
            ClientAddress::default(),
            ClientAddress::connection(),
            ClientAddress::x_forwarded_for(0),
            ClientAddress::forwarded(0),
        ] {
            let lines = [(XFF, "203.0.113.9"), (FWD, "for=203.0.113.9")];
            assert_eq!(found(source, &lines), Some(ip(PEER)), "{source:?}");
        }
        let none = ClientAddress::x_forwarded_for(1).of(&HeaderMap::new(), &Default::default());
        assert_eq!(none, None, "no header and no connection address");
    }

    #[test]
    fn x_forwarded_for_counts_trusted_hops_from_the_right() {
        let one = ClientAddress::x_forwarded_for(1);
        let two = ClientAddress::x_forwarded_for(2);
        assert_eq!(found(one, &[(XFF, "192.0.2.1")]), Some(ip("192.0.2.1")));
        // A client's own header, appended to by our one proxy: the proxy's entry counts.
        let spoofed = [(XFF, "203.0.113.9, 198.51.100.7, 192.0.2.1")];
        assert_eq!(found(one, &spoofed), Some(ip("192.0.2.1")));
        assert_eq!(found(two, &spoofed), Some(ip("198.51.100.7")));
        // Two lines are one list, in order.
        let lines = [(XFF, "203.0.113.9"), (XFF, "192.0.2.1")];
        assert_eq!(found(one, &lines), Some(ip("192.0.2.1")));
        assert_eq!(found(two, &lines), Some(ip("203.0.113.9")));
        // Ports, brackets, IPv6, blanks.
        let v6 = [(XFF, "[2001:db8::1]:4711 ,\t192.0.2.1:80")];
        assert_eq!(found(one, &v6), Some(ip("192.0.2.1")));
        assert_eq!(found(two, &v6), Some(ip("2001:db8::1")));
        assert_eq!(
            found(one, &[(XFF, "[2001:db8::2]")]),
            Some(ip("2001:db8::2"))
        );
        assert_eq!(found(one, &[(XFF, "2001:db8::3")]), Some(ip("2001:db8::3")));
    }

    #[test]
    fn x_forwarded_for_garbage_falls_back_to_the_connection() {
        let one = ClientAddress::x_forwarded_for(1);
        let two = ClientAddress::x_forwarded_for(2);
        for bad in [
            "",
            " ",
            "unknown",
            "192.0.2.1,",
            "192.0.2.1, junk",
            "192.0.2.999",
            "192.0.2.1 192.0.2.2",
            "fe80::1%eth0",
            "[192.0.2.1]",
            "2001:db8::1:80:x",
            "\"192.0.2.1\"",
            "for=192.0.2.1",
        ] {
            assert_eq!(found(one, &[(XFF, bad)]), Some(ip(PEER)), "{bad:?}");
        }
        // Too few entries for the hops: not through all our proxies.
        assert_eq!(found(two, &[(XFF, "192.0.2.1")]), Some(ip(PEER)));
        // Garbage in a trusted entry, right of the chosen one.
        assert_eq!(found(two, &[(XFF, "192.0.2.1, junk")]), Some(ip(PEER)));
        // Garbage the client sent, left of the trusted entries, does not matter.
        assert_eq!(
            found(one, &[(XFF, "junk, \"x, 192.0.2.1")]),
            Some(ip("192.0.2.1"))
        );
        // Not visible ASCII.
        let mut headers = HeaderMap::new();
        headers.insert(
            XFF,
            http::HeaderValue::from_bytes(b"192.0.2.1\xff").unwrap(),
        );
        let mut ext = http::Extensions::new();
        ext.insert(SocketAddr::from(([10, 9, 9, 9], 1)));
        assert_eq!(one.of(&headers, &ext), Some(ip(PEER)));
    }

    #[test]
    fn forwarded_reads_rfc_7239_elements() {
        let one = ClientAddress::forwarded(1);
        let two = ClientAddress::forwarded(2);
        let chain = [(
            FWD,
            "for=203.0.113.9, for=\"[2001:db8:cafe::17]:4711\";proto=https, For=192.0.2.60;proto=http;by=203.0.113.43",
        )];
        assert_eq!(found(one, &chain), Some(ip("192.0.2.60")));
        assert_eq!(found(two, &chain), Some(ip("2001:db8:cafe::17")));
        assert_eq!(
            found(ClientAddress::forwarded(3), &chain),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            found(one, &[(FWD, "proto=https; for=\"192.0.2.61:80\"")]),
            Some(ip("192.0.2.61"))
        );
        // The other header is not read: a client could send it past a proxy that writes
        // only this one.
        assert_eq!(
            found(one, &[(XFF, "203.0.113.9"), (FWD, "for=192.0.2.60")]),
            Some(ip("192.0.2.60"))
        );
        assert_eq!(found(one, &[(XFF, "203.0.113.9")]), Some(ip(PEER)));
        assert_eq!(
            found(
                ClientAddress::x_forwarded_for(1),
                &[(FWD, "for=203.0.113.9")]
            ),
            Some(ip(PEER))
        );
        // An unbalanced quote from the client does not hide our proxy's element.
        let spoofed = [(FWD, "for=\"203.0.113.9, for=192.0.2.60")];
        assert_eq!(found(one, &spoofed), Some(ip("192.0.2.60")));
    }

    #[test]
    fn forwarded_garbage_falls_back_to_the_connection() {
        let one = ClientAddress::forwarded(1);
        for bad in [
            "",
            "for=unknown",
            "for=_hidden",
            "for=",
            "for=\"192.0.2.1",
            "proto=https",
            "for=192.0.2.1;for=192.0.2.2",
            "for=192.0.2.1;junk",
            "192.0.2.1",
            "for=192.0.2.1,",
            "for=\"[2001:db8::1]:x\"",
        ] {
            assert_eq!(found(one, &[(FWD, bad)]), Some(ip(PEER)), "{bad:?}");
        }
        assert_eq!(
            found(ClientAddress::forwarded(2), &[(FWD, "for=192.0.2.1")]),
            Some(ip(PEER))
        );
    }
}
