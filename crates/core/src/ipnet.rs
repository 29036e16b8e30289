use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The error for a CIDR that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP network {0:?}: expected ADDRESS/PREFIX, e.g. 10.0.0.0/8 or fd00::/8")]
pub struct IpNetError(pub String);

/// An IP network in CIDR notation, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDRESS/PREFIX`; a bare address is a host network (/32 or /128).
    pub fn parse(text: &str) -> Result<Self, IpNetError> {
        let err = || IpNetError(text.to_owned());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let parsed: IpAddr = address.trim().parse().map_err(|_| err())?;
        // A mapped prefix (::ffff:10.0.0.0/104) is the IPv4 network it maps.
        let (network, mapped_bits) = match (parsed, parsed.to_canonical()) {
            (IpAddr::V6(_), canonical @ IpAddr::V4(_)) => (canonical, 96u8),
            _ => (parsed, 0),
        };
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .map_err(|_| err())?
                .checked_sub(mapped_bits)
                .ok_or_else(err)?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        let net = Self { network, prefix };
        if net.mask(network) != network {
            return Err(err());
        }
        Ok(net)
    }

    fn mask(&self, address: IpAddr) -> IpAddr {
        match address {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// Whether `address` lies in this network. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`)
    /// count as the IPv4 address they carry, since clients treat them as the same.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        address.is_ipv4() == self.network.is_ipv4() && self.mask(address) == self.network
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl TryFrom<String> for IpNet {
    type Error = IpNetError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<IpNet> for String {
    fn from(value: IpNet) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains() {
        let cases = [
            ("v4_inside", "10.0.0.0/8", "10.1.2.3", true),
            ("v4_outside", "10.0.0.0/8", "11.0.0.1", false),
            ("v4_host", "127.0.0.1", "127.0.0.1", true),
            ("v4_all", "0.0.0.0/0", "8.8.8.8", true),
            ("v6_inside", "fd00::/8", "fd12::1", true),
            ("family_mismatch", "0.0.0.0/0", "::1", false),
            ("mapped_v6_in_v4_range", "10.9.0.0/16", "::ffff:10.9.1.1", true),
            ("mapped_v6_outside", "10.9.0.0/16", "::ffff:10.8.1.1", false),
            ("mapped_prefix_is_v4", "::ffff:10.9.0.0/112", "10.9.3.4", true),
        ];
        for (case, net, ip, want) in cases {
            let net = IpNet::parse(net).unwrap();
            assert_eq!(net.contains(ip.parse().unwrap()), want, "case {case}");
        }
    }

    #[test]
    fn bad_networks() {
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "nope", "::/129", "1.2.3.4/x"] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }
}
