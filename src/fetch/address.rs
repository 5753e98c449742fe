//! Which resolved addresses an outbound request may connect to.
//!
//! Clerk and Svix live on the public internet. A host that resolves to a private, loopback, link-local
//! (169.254.0.0/16: cloud metadata services), CGNAT or unique-local address is refused, so a hostile
//! `frontend_api_url` or DNS answer cannot make the worker reach inside the platform's network. Tests may
//! allow loopback, and only loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True when connecting to `ip` is refused.
pub fn is_refused(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_refused(v4, allow_loopback),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_refused(v4, allow_loopback),
            None => v6_refused(v6, allow_loopback),
        },
    }
}

fn v4_refused(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return !allow_loopback;
    }
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..=127).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments 192.0.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18.0.0/15
        || a >= 240 // reserved
}

fn v6_refused(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return !allow_loopback;
    }
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique-local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b // NAT64 well-known prefix (embeds v4)
        || first == 0x2002 // 6to4 (embeds v4)
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
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "224.0.0.1",
        ] {
            assert!(refused(ip, false), "{ip} must be refused");
        }
    }

    #[test]
    fn allows_public_addresses() {
        for ip in ["104.18.1.1", "8.8.8.8", "100.128.0.1", "2606:4700::1"] {
            assert!(!refused(ip, false), "{ip} must be allowed");
        }
    }

    #[test]
    fn test_mode_allows_loopback_only() {
        assert!(!refused("127.0.0.1", true));
        assert!(!refused("::1", true));
        assert!(refused("10.0.0.1", true));
        assert!(refused("169.254.169.254", true));
    }
}
