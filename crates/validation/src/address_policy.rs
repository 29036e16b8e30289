//! Which addresses validation may connect to.
//!
//! An ACME client chooses where http-01 and tls-alpn-01 connect: the identifier's addresses,
//! and for http-01 every redirect target. Without a policy the validator would fetch from
//! anything it can reach, cloud metadata services included. The policy is applied to every
//! address right before the connection to it, to the very address resolved (never a second
//! lookup), so DNS rebinding between check and connect is impossible.
//!
//! Denied by default: addresses no validation target legitimately has (unspecified, "this
//! network", multicast, broadcast), link-local ranges (where cloud metadata services live), and
//! the metadata services that sit at other addresses. Private ranges and loopback stay allowed:
//! a private CA validates internal hosts. An IPv6 address that carries an IPv4 address
//! (IPv4-mapped, IPv4-compatible, NAT64, 6to4) is judged by that IPv4 address too.
//!
//! Operators add to the default: `deny` ranges are refused whatever else is configured; an
//! `allow` range lifts the default denial of the addresses inside it (say a link-local range a
//! lab really serves on). `allow` cannot lift a configured `deny`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use certgate_core::IpNet;

/// Ranges denied unless an allow entry covers the address, with why.
const DEFAULT_DENIED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified or \"this network\""),
    ("169.254.0.0/16", "link-local, where cloud metadata services answer"),
    ("100.100.100.200/32", "the Alibaba Cloud metadata service"),
    ("168.63.129.16/32", "the Azure WireServer"),
    ("192.0.0.192/32", "the Oracle Cloud metadata service"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("::/128", "unspecified"),
    ("fe80::/10", "link-local"),
    ("fd00:ec2::254/128", "the AWS metadata service"),
    ("ff00::/8", "multicast"),
];

/// The validation address policy: the built-in denials plus an operator's allow and deny
/// lists. The default is the built-in denials alone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

/// Why the policy refused an address; its `Display` completes "refused by the validation
/// address policy: ...".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRefusal {
    /// The address that was refused.
    pub address: IpAddr,
    /// The IPv4 address an IPv6 address carries, when that is what was refused.
    pub embedded: Option<Ipv4Addr>,
    /// The range that refused it.
    pub range: IpNet,
    /// Whether the range is a configured deny entry (else a built-in one).
    pub configured: bool,
    /// What the range is, for built-in ranges.
    pub what: &'static str,
}

impl fmt::Display for AddressRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)?;
        if let Some(v4) = self.embedded {
            write!(f, " (which carries {v4})")?;
        }
        if self.configured {
            write!(f, " is in the denied range {}", self.range)
        } else {
            write!(f, " is in {} ({}), denied by default", self.range, self.what)
        }
    }
}

impl AddressPolicy {
    /// The built-in denials, minus what `allow` covers, plus `deny`.
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Self {
        Self { allow, deny }
    }

    /// The configured allow entries.
    pub fn allow(&self) -> &[IpNet] {
        &self.allow
    }

    /// The configured deny entries.
    pub fn deny(&self) -> &[IpNet] {
        &self.deny
    }

    /// The built-in denied ranges and what each is, for documentation and `--help` texts.
    pub fn default_denied() -> impl Iterator<Item = (IpNet, &'static str)> {
        DEFAULT_DENIED.iter().filter_map(|(range, what)| {
            let parsed = IpNet::parse(range);
            debug_assert!(parsed.is_ok(), "built-in range {range} parses");
            parsed.ok().map(|net| (net, *what))
        })
    }

    /// `Ok` when validation may connect to `address`.
    pub fn check(&self, address: IpAddr) -> Result<(), AddressRefusal> {
        let embedded = embedded_ipv4(address).or(match address.to_canonical() {
            IpAddr::V4(v4) if address.is_ipv6() => Some(v4),
            _ => None,
        });
        let forms = std::iter::once(address).chain(embedded.map(IpAddr::V4));
        for form in forms {
            let refusal = |range: IpNet, configured: bool, what: &'static str| AddressRefusal {
                address,
                embedded: embedded.filter(|v4| range.contains(IpAddr::V4(*v4))),
                range,
                configured,
                what,
            };
            if let Some(range) = self.deny.iter().find(|n| n.contains(form)) {
                return Err(refusal(*range, true, ""));
            }
            if self.allow.iter().any(|n| n.contains(form)) {
                continue;
            }
            if let Some((range, what)) = Self::default_denied().find(|(n, _)| n.contains(form)) {
                return Err(refusal(range, false, what));
            }
        }
        Ok(())
    }
}

/// The IPv4 address an IPv6 address reaches or names: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`, deprecated), NAT64 (`64:ff9b::/96`, and the local-use
/// `64:ff9b:1::/48` with the /96 layout) and 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_ipv4(address: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = address else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let bits = u128::from(v6);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let prefix = |len: u32, net: Ipv6Addr| bits >> (128 - len) == u128::from(net) >> (128 - len);
    // IPv4-compatible: ::/96, except :: and ::1, which are IPv6's own unspecified and loopback.
    if prefix(96, Ipv6Addr::UNSPECIFIED) && bits > 1 {
        return Some(low32);
    }
    if prefix(96, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0))
        || prefix(48, Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0))
    {
        return Some(low32);
    }
    if prefix(16, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0)) {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_ranges_parse() {
        assert_eq!(AddressPolicy::default_denied().count(), DEFAULT_DENIED.len());
    }

    #[test]
    fn embedded_addresses() {
        let cases = [
            ("mapped", "::ffff:169.254.169.254", Some("169.254.169.254")),
            ("compatible", "::169.254.169.254", Some("169.254.169.254")),
            ("nat64", "64:ff9b::a9fe:a9fe", Some("169.254.169.254")),
            ("nat64_local_use", "64:ff9b:1::a9fe:a9fe", Some("169.254.169.254")),
            ("six_to_four", "2002:a9fe:a9fe::1", Some("169.254.169.254")),
            ("loopback_is_not_compatible", "::1", None),
            ("unspecified_is_not_compatible", "::", None),
            ("plain_v6", "2001:db8::1", None),
            ("plain_v4", "10.0.0.1", None),
        ];
        for (case, address, want) in cases {
            let got = embedded_ipv4(address.parse().unwrap());
            assert_eq!(got, want.map(|w| w.parse().unwrap()), "case {case}");
        }
    }
}
