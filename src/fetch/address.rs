//! Which hosts and resolved addresses an outbound request may connect to.
//!
//! Clerk and Svix live on the public internet. A host that is, or resolves to, anything but a public
//! unicast address is refused, so a hostile `frontend_api_url` or DNS answer cannot make the worker reach
//! inside the platform's network:
//!
//! - IPv4: private, loopback, link-local (169.254.0.0/16: cloud metadata services), CGNAT, "this network",
//!   IETF protocol assignments, documentation, benchmarking, the 6to4 relay anycast, multicast, reserved.
//! - IPv6: only global unicast (`2000::/3`) is allowed, minus its documentation (`2001:db8::/32`,
//!   `3fff::/20`), benchmarking (`2001:2::/48`) and ORCHID ranges. Forms that carry an IPv4 address are
//!   judged by that address: IPv4-mapped `::ffff:0:0/96` and NAT64 `64:ff9b::/96` (both reach public IPv4
//!   legitimately), 6to4 `2002::/16` and Teredo `2001::/32` (client address, stored inverted). Every other
//!   form outside `2000::/3` is refused whatever it embeds: IPv4-compatible `::/96`, IPv4-translated
//!   `::ffff:0:0:0/96`, local-use NAT64 `64:ff9b:1::/48`, discard-only `100::/64`, unique-local,
//!   link-local, site-local, multicast.
//! - Names: `localhost` and the special-use suffixes that never name a public host (`.localhost`,
//!   `.internal`, `.local`, `.localdomain`, `.home.arpa`, `.arpa`, `.invalid`, `.onion`) are refused before
//!   any lookup; a trailing dot does not change a name.
//!
//! Tests may allow loopback (`127.0.0.0/8`, `::1`), and only plain loopback: an embedded or translated
//! loopback stays refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The reason given for any refused address. Never the address itself: a customer controls their DNS
/// and must not learn the worker's internal network from a reason.
pub const REFUSED_ADDRESS: &str = "resolves to a non-public address";

/// True when connecting to `ip` is refused.
pub fn is_refused(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_refused(v4, allow_loopback),
        IpAddr::V6(v6) => v6_refused(v6, allow_loopback),
    }
}

fn v4_refused(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return !allow_loopback;
    }
    let [a, b, c, _] = ip.octets();
    ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network" 0.0.0.0/8
        || (a == 100 && (64..=127).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0.0/24
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast 192.88.99.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18.0.0/15
        || a >= 240 // reserved 240.0.0.0/4
}

/// The IPv4 address an IPv6 address carries, for the forms judged by it.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // NAT64 well-known prefix 64:ff9b::a.b.c.d
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 6to4 2002:AABB:CCDD::/48
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        // Teredo 2001:0::/32: the client's address is the last 32 bits, inverted.
        [0x2001, 0, ..] => Some(Ipv4Addr::from(!u32::from(low))),
        _ => None,
    }
}

fn v6_refused(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return !allow_loopback;
    }
    if let Some(v4) = embedded_v4(ip) {
        // Embedded loopback is never plain loopback: refused even when tests allow loopback.
        return v4.is_loopback() || v4_refused(v4, false);
    }
    let s = ip.segments();
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    !global_unicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
        || (s[0] & 0xfff0) == 0x3ff0 // documentation 3fff::/20
        || (s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0) // benchmarking 2001:2::/48
        || (s[0] == 0x2001 && (s[1] & 0xffe0) == 0x0020) // ORCHIDv2 2001:20::/28
        || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0010) // ORCHID 2001:10::/28 (deprecated)
}

/// Special-use names that never name a public host.
const REFUSED_SUFFIXES: &[&str] =
    &[".localhost", ".internal", ".local", ".localdomain", ".home.arpa", ".arpa", ".invalid", ".onion"];

/// True when the host name (not an IP literal) is refused before any lookup.
pub fn is_refused_name(host: &str) -> bool {
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || name == "localhost" {
        return true;
    }
    let dotted = format!(".{name}");
    REFUSED_SUFFIXES.iter().any(|suffix| dotted.ends_with(suffix))
}

/// The IP literal of a URL host (`[::1]` or `127.0.0.1`), if it is one.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str, allow_loopback: bool) -> bool {
        is_refused(ip.parse().unwrap(), allow_loopback)
    }

    #[test]
    fn refuses_internal_ranges() {
        for ip in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "192.88.99.1",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "::8.8.8.8",
            "::ffff:0:8.8.8.8",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::8.8.8.8",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:5601:5601", // Teredo, client 169.254.169.254 (inverted)
            "2001:db8::1",
            "3fff::1",
            "2001:2::1",
            "2001:20::1",
            "100::1",
            "4000::1",
        ] {
            assert!(refused(ip, false), "{ip} must be refused");
        }
    }

    #[test]
    fn allows_public_addresses() {
        for ip in [
            "104.18.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "2606:4700::1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7", // Teredo, client 8.8.8.8
        ] {
            assert!(!refused(ip, false), "{ip} must be allowed");
        }
    }

    #[test]
    fn test_mode_allows_plain_loopback_only() {
        assert!(!refused("127.0.0.1", true));
        assert!(!refused("::1", true));
        assert!(refused("10.0.0.1", true));
        assert!(refused("169.254.169.254", true));
        assert!(refused("::ffff:127.0.0.1", true));
        assert!(refused("::127.0.0.1", true));
        assert!(refused("64:ff9b::7f00:1", true));
    }

    #[test]
    fn refuses_special_use_names() {
        for name in [
            "localhost",
            "LOCALHOST.",
            "api.localhost",
            "metadata.google.internal",
            "metadata.google.internal.",
            "printer.local",
            "box.localdomain",
            "nas.home.arpa",
            "1.0.0.127.in-addr.arpa",
            "x.invalid",
            "abc.onion",
            "",
            ".",
        ] {
            assert!(is_refused_name(name), "{name:?} must be refused");
        }
        for name in ["api.clerk.com", "clerk.acme.com.", "localhost.acme.com", "internal.acme.com"] {
            assert!(!is_refused_name(name), "{name} must be allowed");
        }
    }

    #[test]
    fn reads_url_host_literals() {
        assert_eq!(literal_ip("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(literal_ip("127.0.0.1"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(literal_ip("clerk.acme.com"), None);
    }
}
