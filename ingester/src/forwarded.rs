//! The client's address behind reverse proxies (`ingester.trusted_proxies`): what a source's
//! `allow_ips` is checked against.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use countersign::config::IpNet;

/// `X-Forwarded-For` entries looked at, at most: a chain of proxies is a handful long, and more
/// is someone's attempt to make each request expensive.
pub const MAX_HOPS: usize = 16;

/// Who sent the request, as far as it can be known. The TCP peer, unless the peer is one of
/// `trusted`; then `X-Forwarded-For` (all its headers, in order) is walked from its right end —
/// the entry the nearest proxy added — to the first address that is not one of `trusted`, which
/// is the client: everything left of it was written by the client and proves nothing. Every
/// entry trusted: the leftmost. No header: the peer itself.
///
/// `None`, the client unknown (a source with `allow_ips` refuses it), when a trusted proxy's
/// header holds an entry that is not an address, or more than [`MAX_HOPS`] entries.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut entries = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        for entry in value.to_str().ok()?.split(',') {
            entries.push(entry.trim());
            if entries.len() > MAX_HOPS {
                return None;
            }
        }
    }
    let mut client = peer;
    for entry in entries.iter().rev() {
        client = parse_entry(entry)?;
        if !is_trusted(client) {
            break;
        }
    }
    Some(client)
}

/// `203.0.113.7`, `2001:db8::1`, and with a port as some proxies write them: `203.0.113.7:4711`,
/// `[2001:db8::1]:4711`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        port.parse::<u16>().ok()?;
        return host.parse().ok();
    }
    let (host, port) = entry.split_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| IpNet::parse(n).unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = nets(&["10.0.0.0/8"]);
        let claimed = headers(&["52.71.63.1"]);
        assert_eq!(
            client_address(Some(ip("198.51.100.9")), &claimed, &trusted),
            Some(ip("198.51.100.9"))
        );
        // No trusted proxies at all: the header is never read.
        assert_eq!(
            client_address(Some(ip("10.1.2.3")), &claimed, &[]),
            Some(ip("10.1.2.3"))
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_entry_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        // The client forged the first entry; the ingress appended the real address.
        let forged = headers(&["52.71.63.1, 198.51.100.9"]);
        assert_eq!(
            client_address(Some(ip("10.1.2.3")), &forged, &trusted),
            Some(ip("198.51.100.9"))
        );
        // Two proxies (a load balancer, then the ingress), over two headers.
        let chain = headers(&["198.51.100.9", "10.9.9.9"]);
        assert_eq!(
            client_address(Some(ip("10.1.2.3")), &chain, &trusted),
            Some(ip("198.51.100.9"))
        );
        let v6 = headers(&["[2001:db8::7]:4711, 2001:db8:ffff::1"]);
        assert_eq!(
            client_address(Some(ip("::ffff:10.1.2.3")), &v6, &trusted),
            Some(ip("2001:db8::7"))
        );
        assert_eq!(
            client_address(
                Some(ip("10.1.2.3")),
                &headers(&["198.51.100.9:50000"]),
                &trusted
            ),
            Some(ip("198.51.100.9"))
        );
    }

    #[test]
    fn without_a_header_or_with_only_proxies_in_it() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(Some(ip("10.1.2.3")), &HeaderMap::new(), &trusted),
            Some(ip("10.1.2.3"))
        );
        assert_eq!(
            client_address(
                Some(ip("10.1.2.3")),
                &headers(&["10.7.7.7, 10.8.8.8"]),
                &trusted
            ),
            Some(ip("10.7.7.7"))
        );
    }

    #[test]
    fn a_malformed_or_overlong_header_from_a_proxy_leaves_the_client_unknown() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = Some(ip("10.1.2.3"));
        for bad in [
            "not-an-address",
            "198.51.100.9, ",
            "198.51.100.9:port",
            "[2001:db8::7]",
        ] {
            assert_eq!(
                client_address(peer, &headers(&[bad]), &trusted),
                None,
                "{bad}"
            );
        }
        let long = vec!["10.0.0.1"; MAX_HOPS + 1].join(",");
        assert_eq!(client_address(peer, &headers(&[&long]), &trusted), None);
        let just_enough = vec!["10.0.0.1"; MAX_HOPS].join(",");
        assert_eq!(
            client_address(peer, &headers(&[&just_enough]), &trusted),
            Some(ip("10.0.0.1"))
        );
        // A malformed entry left of the client is never read.
        assert_eq!(
            client_address(peer, &headers(&["junk, 198.51.100.9"]), &trusted),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(client_address(None, &HeaderMap::new(), &trusted), None);
    }
}
