//! Text parsers fed by clients and operators: DNS names, email, URI, CIDR, serials, reasons.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(name) = certgate_core::DnsName::new(text) {
            let _ = (name.is_within(text), name.base(), name.is_wildcard());
        }
        let _ = certgate_core::Identifier::email(text);
        let _ = certgate_core::Identifier::uri(text);
        if let Ok(net) = certgate_core::IpNet::parse(text) {
            let _ = net.contains("10.0.0.1".parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])));
        }
        if let Ok(serial) = certgate_core::Serial::parse_hex(text) {
            assert_eq!(certgate_core::Serial::parse_hex(&serial.to_hex()), Ok(serial));
        }
        let _ = text.parse::<certgate_core::RevocationReason>();
        let _ = certgate_core::Name::new(text);
    }
    let _ = certgate_core::Serial::from_der_integer(data);
});
