//! CIDR blocks as the `source-ip` condition takes them (`10.0.0.0/8`,
//! `2001:db8::/32`).

use std::net::IpAddr;

/// A CIDR block: the network address (host bits cleared) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `address/prefix`. AWS requires the prefix; a bare address is
    /// refused here, as the ELBv2 API refuses it.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a CIDR block (address/prefix)"))?;
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("`{text}`: `{address}` is not an IP address"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`{text}`: the prefix must be 0 to {max}"))?;
        Ok(Cidr {
            network: mask(address, prefix),
            prefix,
        })
    }

    /// Whether every address of `inner` is in this block.
    pub fn contains(&self, inner: &Cidr) -> bool {
        self.network.is_ipv4() == inner.network.is_ipv4()
            && inner.prefix >= self.prefix
            && mask(inner.network, self.prefix) == self.network
    }

    /// Whether `address` is in this block. IPv4-mapped IPv6 addresses
    /// (`::ffff:10.0.0.1`) are taken as the IPv4 address they carry.
    pub fn contains_address(&self, address: IpAddr) -> bool {
        let address = canonical_ip(address);
        self.network.is_ipv4() == address.is_ipv4() && mask(address, self.prefix) == self.network
    }

    /// Whether the two blocks share an address (one contains the other).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }
}

/// The address a client is known by: an IPv4-mapped IPv6 peer (a
/// dual-stack socket's `::ffff:10.0.0.1`) is the IPv4 address it carries.
/// `source-ip` conditions and `X-Forwarded-For` both use this form.
pub fn canonical_ip(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let masked = if prefix == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - u32::from(prefix)))
            };
            IpAddr::V4(masked.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let masked = if prefix == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(prefix)))
            };
            IpAddr::V6(masked.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_and_overlap() {
        let c = |t: &str| Cidr::parse(t).unwrap();
        assert!(c("10.0.0.0/8").contains(&c("10.1.2.0/24")));
        assert!(!c("10.1.2.0/24").contains(&c("10.0.0.0/8")));
        assert!(c("10.1.2.0/24").overlaps(&c("10.0.0.0/8")));
        assert!(!c("10.0.0.0/8").overlaps(&c("192.168.0.0/16")));
        assert!(c("0.0.0.0/0").contains(&c("203.0.113.7/32")));
        assert!(!c("0.0.0.0/0").contains(&c("2001:db8::/32")));
        assert!(c("2001:db8::/32").contains(&c("2001:db8:1::/48")));
        assert_eq!(c("10.1.2.3/8"), c("10.0.0.0/8"));
        assert!(Cidr::parse("10.0.0.1").is_err());
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope/8").is_err());
    }

    #[test]
    fn blocks_contain_addresses() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.200.3.4", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.0/24", "192.168.1.255", true),
            ("192.168.1.0/24", "192.168.2.0", false),
            ("192.168.1.128/25", "192.168.1.127", false),
            ("192.168.1.128/25", "192.168.1.200", true),
            ("127.0.0.1/32", "127.0.0.1", true),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("2001:db8::/32", "10.0.0.1", false),
            ("::/0", "10.0.0.1", false),
        ];
        for (block, address, expected) in cases {
            let cidr = Cidr::parse(block).unwrap_or_else(|e| panic!("{block} should parse: {e}"));
            let address: IpAddr = address.parse().expect("test address");
            assert_eq!(
                cidr.contains_address(address),
                *expected,
                "{block} contains {address}"
            );
        }
        // The ELBv2 API takes CIDR notation only: a bare address is refused.
        for invalid in [
            "10.0.0.0/33",
            "::/129",
            "nonsense",
            "10.0.0/8",
            "",
            "127.0.0.1",
        ] {
            assert!(
                Cidr::parse(invalid).is_err(),
                "{invalid:?} should not parse"
            );
        }
    }

    #[test]
    fn mapped_peers_are_known_by_their_ipv4_address() {
        let ip = |t: &str| t.parse::<IpAddr>().expect("test address");
        assert_eq!(canonical_ip(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(canonical_ip(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(canonical_ip(ip("10.1.2.3")), ip("10.1.2.3"));
    }
}
