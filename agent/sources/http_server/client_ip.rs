//! The client's address behind reverse proxies: `trusted_proxies`, `X-Forwarded-For` and
//! `Forwarded`.
//!
//! A proxy in front of sluice (nginx, a load balancer, a CDN) makes every connection come from
//! the proxy; the browser's address travels in `X-Forwarded-For: client, proxy1, proxy2` or in
//! RFC 7239's `Forwarded: for=client, for=proxy1`. Those headers are written by whoever sends the
//! request, so they are believed only as far as the chain runs through proxies the operator
//! named in `trusted_proxies` (addresses or CIDR networks):
//!
//! - a connection from an address that is not trusted: the client is the peer, and the headers
//!   are ignored (a spoofed header from a browser changes nothing);
//! - from a trusted peer: the chain (`Forwarded` when present, else `X-Forwarded-For`, every
//!   instance of the header in order) is walked from the right, skipping trusted addresses; the
//!   first address that is not trusted is the client. When every address is trusted, the
//!   leftmost is. An entry that is not an address (`unknown`, an obfuscated `_hidden`, garbage)
//!   stops the walk: the client is then the last address believed, the nearest trusted proxy.
//!
//! Nothing is trusted by default. IPv4 addresses written as IPv6 (`::ffff:10.0.0.1`) match IPv4
//! networks.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName};
use ipnetwork::IpNetwork;
use sluice_pipelines::BuildError;

/// `X-Forwarded-For`.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// RFC 7239 `Forwarded`.
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNetwork>,
}

impl TrustedProxies {
    /// Parses `trusted_proxies`: addresses (`127.0.0.1`, `::1`) or networks (`10.0.0.0/8`).
    ///
    /// # Errors
    /// A [`BuildError`] at `trusted_proxies[<i>]` for an entry that is neither.
    pub fn parse(entries: &[String]) -> Result<Self, BuildError> {
        let mut networks = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let text = entry.trim();
            let network = match text.parse::<IpAddr>() {
                Ok(address) => IpNetwork::from(address),
                Err(_) => text.parse::<IpNetwork>().map_err(|_| {
                    BuildError::at(
                        format!("trusted_proxies[{index}]"),
                        format!(
                            "`{entry}` is not an IP address or network (expected forms like \
                             \"127.0.0.1\", \"10.0.0.0/8\", \"fd00::/8\")"
                        ),
                    )
                })?,
            };
            networks.push(network);
        }
        Ok(TrustedProxies { networks })
    }

    /// Whether any proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.networks
            .iter()
            .any(|network| network.contains(address))
    }

    /// The client's address for a request that came from `peer` with `headers` (see the
    /// module doc).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .get_all(&FORWARDED)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let chain: Vec<Option<IpAddr>> = if forwarded.is_empty() {
            headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .flat_map(|value| {
                    // A header that is not text is one entry that is not an address.
                    let text = value.to_str().unwrap_or("\u{0}");
                    text.split(',').map(parse_forwarded_address)
                })
                .collect()
        } else {
            forwarded
                .iter()
                .flat_map(|value| value.split(','))
                .map(|element| {
                    element
                        .split(';')
                        .filter_map(|pair| pair.split_once('='))
                        .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                        .and_then(|(_, value)| parse_forwarded_address(value))
                })
                .collect()
        };
        let mut believed = peer;
        for entry in chain.iter().rev() {
            let Some(address) = entry else {
                return believed;
            };
            let address = address.to_canonical();
            if !self.trusts(address) {
                return address;
            }
            believed = address;
        }
        believed
    }
}

/// One address of a forwarding chain: `192.0.2.1`, `192.0.2.1:4711`, `"[2001:db8::1]:4711"`,
/// `2001:db8::1`. `None` for anything else.
fn parse_forwarded_address(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"').trim();
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse().ok();
    }
    // `IPv4:port` (an IPv6 address without brackets was handled above).
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn trusted(entries: &[&str]) -> TrustedProxies {
        let entries: Vec<String> = entries.iter().map(|entry| (*entry).to_owned()).collect();
        TrustedProxies::parse(&entries).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn nothing_is_trusted_by_default() {
        let none = TrustedProxies::default();
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(none.client(ip("10.0.0.1"), &spoofed), ip("10.0.0.1"));
    }

    #[test]
    fn spoofed_headers_from_untrusted_peers_are_ignored() {
        let proxies = trusted(&["10.0.0.0/8", "127.0.0.1"]);
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            proxies.client(ip("203.0.113.9"), &spoofed),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_chain_is_walked_from_the_right_past_trusted_proxies() {
        let proxies = trusted(&["10.0.0.0/8", "127.0.0.1"]);
        // The browser put a fake address first; the proxies appended what they saw.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &chain), ip("198.51.100.7"));
        // Several header instances form one chain, in order.
        let split = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &split), ip("198.51.100.7"));
        // Every hop trusted: the leftmost.
        let internal = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &internal), ip("10.9.9.9"));
        // No header: the trusted peer itself.
        assert_eq!(
            proxies.client(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_takes_ports_and_brackets() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let both = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            (
                "forwarded",
                "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=192.0.2.60:8080;by=10.0.0.2",
            ),
        ]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &both), ip("192.0.2.60"));
        let v6 = headers(&[("forwarded", "For=\"[2001:db8:cafe::17]:4711\"")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &v6), ip("2001:db8:cafe::17"));
    }

    #[test]
    fn an_entry_that_is_not_an_address_stops_the_walk_at_the_last_believed_hop() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let hidden = headers(&[("forwarded", "for=198.51.100.7, for=_hidden, for=10.0.0.5")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &hidden), ip("10.0.0.5"));
        let junk = headers(&[("x-forwarded-for", "198.51.100.7, unknown")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &junk), ip("10.0.0.2"));
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_networks() {
        let proxies = trusted(&["127.0.0.1"]);
        let chain = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            proxies.client(ip("::ffff:127.0.0.1"), &chain),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn bad_entries_name_their_index() {
        let entries = vec!["10.0.0.0/8".to_owned(), "ten.0.0.0".to_owned()];
        let error = TrustedProxies::parse(&entries).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("trusted_proxies[1]"));
        assert!(error.message.contains("ten.0.0.0"), "{}", error.message);
        let entries = vec!["10.0.0.0/33".to_owned()];
        assert!(TrustedProxies::parse(&entries).is_err());
    }

    proptest::proptest! {
        /// Whatever the headers say, an untrusted peer is its own client, and a trusted peer's
        /// answer is an address from the chain or the peer (never a panic).
        #[test]
        fn arbitrary_headers_never_panic(xff in "\\PC{0,80}", fwd in "\\PC{0,80}") {
            let proxies = trusted(&["10.0.0.0/8"]);
            let mut map = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&xff) {
                map.append(X_FORWARDED_FOR.clone(), value);
            }
            if let Ok(value) = HeaderValue::from_str(&fwd) {
                map.append(FORWARDED.clone(), value);
            }
            proptest::prop_assert_eq!(proxies.client(ip("192.0.2.1"), &map), ip("192.0.2.1"));
            let _ = proxies.client(ip("10.0.0.1"), &map);
        }
    }
}
