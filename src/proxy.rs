//! Which address a request comes from when herald sits behind reverse
//! proxies: the TCP peer, unless the peer is a trusted proxy, in which case
//! what the proxies say in `X-Forwarded-For` (or, when no such header came,
//! `Forwarded: for=`). A client can write either header itself, so they are
//! believed only as far as they were written by proxies herald trusts.

use actix_web::http::header::{HeaderMap, FORWARDED};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// A `--trusted-proxies` entry: a CIDR block, or one address.
pub fn parse_trusted(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{value}` is neither a CIDR block nor an IP address"))
}

/// The address to account a request to. Walks the forwarded chain from the
/// right (the hop nearest herald) past trusted proxies: the first address
/// not trusted is the client. A hop herald cannot read there means a proxy
/// wrote something else than an address (`unknown`, an obfuscated name):
/// the peer is used. When every hop is trusted, the leftmost is the client.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let trusts = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !trusts(&peer) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) if trusts(ip) => continue,
            Some(ip) => return *ip,
            None => return peer,
        }
    }
    chain.first().copied().flatten().unwrap_or(peer)
}

/// The hops, leftmost first, from every `X-Forwarded-For` header in order,
/// or else from every `Forwarded` header; `None` for a hop that is not an
/// address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name| -> Vec<&str> {
        headers
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect()
    };
    let xff = values(X_FORWARDED_FOR);
    if !xff.is_empty() {
        return xff.into_iter().map(node_ip).collect();
    }
    values(FORWARDED.as_str())
        .into_iter()
        .map(|element| forwarded_for(element).and_then(node_ip))
        .collect()
}

/// The `for=` value of one `Forwarded` element (RFC 7239), unquoted.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`,
/// `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn node_ip(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let ip = node
        .parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| node.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn trusted(nets: &[&str]) -> Vec<IpNet> {
        nets.iter()
            .map(|n| parse_trusted(n).expect("net"))
            .collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("X-Forwarded-For", "198.51.100.1")]);
        let client = client_ip(ip("203.0.113.9"), &h, &trusted(&["10.0.0.0/8"]));
        assert_eq!(client, ip("203.0.113.9"));
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        // The client forged the first entry; the proxies appended the rest.
        let h = headers(&[("X-Forwarded-For", "1.1.1.1, 198.51.100.7, 10.0.0.5")]);
        let client = client_ip(ip("10.0.0.1"), &h, &trusted(&["10.0.0.0/8"]));
        assert_eq!(client, ip("198.51.100.7"));
    }

    #[test]
    fn several_x_forwarded_for_headers_form_one_list() {
        let h = headers(&[
            ("X-Forwarded-For", "198.51.100.7"),
            ("X-Forwarded-For", "10.0.0.5"),
        ]);
        let client = client_ip(ip("10.0.0.1"), &h, &trusted(&["10.0.0.0/8"]));
        assert_eq!(client, ip("198.51.100.7"));
    }

    #[test]
    fn when_every_hop_is_trusted_the_leftmost_is_the_client() {
        let h = headers(&[("X-Forwarded-For", "10.1.1.1, 10.0.0.5")]);
        let client = client_ip(ip("10.0.0.1"), &h, &trusted(&["10.0.0.0/8"]));
        assert_eq!(client, ip("10.1.1.1"));
        let none = client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted(&["10.0.0.0/8"]));
        assert_eq!(none, ip("10.0.0.1"), "no header: the peer");
    }

    #[test]
    fn an_unreadable_hop_falls_back_to_the_peer() {
        let h = headers(&[("X-Forwarded-For", "198.51.100.7, unknown")]);
        let client = client_ip(ip("127.0.0.1"), &h, &trusted(&["127.0.0.1"]));
        assert_eq!(client, ip("127.0.0.1"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_read() {
        let trust = trusted(&["127.0.0.0/8", "::1"]);
        for (value, expected) in [
            ("192.0.2.1:4711", "192.0.2.1"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
        ] {
            let h = headers(&[("X-Forwarded-For", value)]);
            assert_eq!(client_ip(ip("::1"), &h, &trust), ip(expected), "{value}");
        }
        let mapped_peer = client_ip(
            ip("::ffff:127.0.0.1"),
            &headers(&[("X-Forwarded-For", "192.0.2.9")]),
            &trust,
        );
        assert_eq!(
            mapped_peer,
            ip("192.0.2.9"),
            "a mapped peer matches an IPv4 block"
        );
    }

    #[test]
    fn forwarded_for_is_read_when_there_is_no_x_forwarded_for() {
        let h = headers(&[(
            "Forwarded",
            "for=198.51.100.3;proto=https, For=\"[2001:db8:cafe::17]:4711\";by=10.0.0.5",
        )]);
        let client = client_ip(ip("10.0.0.1"), &h, &trusted(&["10.0.0.0/8"]));
        assert_eq!(client, ip("2001:db8:cafe::17"));
        let hidden = headers(&[("Forwarded", "for=_hidden")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &hidden, &trusted(&["10.0.0.0/8"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn x_forwarded_for_wins_over_forwarded() {
        let h = headers(&[
            ("Forwarded", "for=198.51.100.3"),
            ("X-Forwarded-For", "198.51.100.4"),
        ]);
        let client = client_ip(ip("10.0.0.1"), &h, &trusted(&["10.0.0.0/8"]));
        assert_eq!(client, ip("198.51.100.4"));
    }

    #[test]
    fn trusted_entries_are_blocks_or_addresses() {
        assert_eq!(
            parse_trusted(" 10.0.0.0/8").map(|n| n.to_string()),
            Ok("10.0.0.0/8".into())
        );
        assert_eq!(
            parse_trusted("::1").map(|n| n.to_string()),
            Ok("::1/128".into())
        );
        assert!(parse_trusted("10.0.0.0/33").is_err());
        assert!(parse_trusted("proxy.local").is_err());
    }
}
