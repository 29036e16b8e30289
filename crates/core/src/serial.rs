use std::fmt;

use serde::{Deserialize, Serialize};

/// The error for a serial number that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SerialError {
    /// Not hexadecimal.
    #[error("serial {0:?} is not hexadecimal")]
    NotHex(String),
    /// Zero, negative, longer than 20 bytes or not minimally encoded.
    #[error("serial must be a positive integer of 1 to 20 bytes")]
    OutOfRange,
}

/// A certificate serial number: the content octets of a positive DER INTEGER, minimally
/// encoded, at most 20 bytes (RFC 5280 4.1.2.2). Shown as upper-case hex, as `openssl x509
/// -serial` prints it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(Vec<u8>);

impl Serial {
    /// Makes a serial from 16 bytes of CSPRNG output: 126 random bits, always positive and
    /// always 16 bytes long (the top bit is cleared so the INTEGER is positive, the next one
    /// set so the encoding is minimal).
    pub fn from_random(mut random: [u8; 16]) -> Self {
        random[0] = (random[0] & 0x7f) | 0x40;
        Self(random.to_vec())
    }

    /// Takes the content octets of a DER INTEGER.
    pub fn from_der_integer(bytes: &[u8]) -> Result<Self, SerialError> {
        let positive = bytes.first().is_some_and(|b| b & 0x80 == 0);
        let minimal = match bytes {
            [0] => false, // zero is not a valid serial
            [0, next, ..] => next & 0x80 != 0,
            _ => true,
        };
        if !positive || !minimal || bytes.len() > 21 || (bytes.len() == 21 && bytes[0] != 0) {
            return Err(SerialError::OutOfRange);
        }
        Ok(Self(bytes.to_vec()))
    }

    /// Parses hex as `openssl x509 -serial` prints it; accepts lower case, colons and a
    /// `0x` prefix, and leading zero digits.
    pub fn parse_hex(text: &str) -> Result<Self, SerialError> {
        let trimmed = text.trim();
        let trimmed = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        let digits: String = trimmed.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SerialError::NotHex(text.to_owned()));
        }
        let digits = digits.trim_start_matches('0');
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits.to_owned()
        };
        let mut bytes = hex::decode(&padded).map_err(|_| SerialError::NotHex(text.to_owned()))?;
        if bytes.is_empty() {
            return Err(SerialError::OutOfRange);
        }
        if bytes[0] & 0x80 != 0 {
            bytes.insert(0, 0);
        }
        Self::from_der_integer(&bytes)
    }

    /// The content octets of the DER INTEGER.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Upper-case hex without leading zero bytes, as openssl prints it.
    pub fn to_hex(&self) -> String {
        let significant = match self.0.as_slice() {
            [0, rest @ ..] if !rest.is_empty() => rest,
            all => all,
        };
        hex::encode_upper(significant)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

impl TryFrom<String> for Serial {
    type Error = SerialError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse_hex(&value)
    }
}

impl From<Serial> for String {
    fn from(value: Serial) -> Self {
        value.to_hex()
    }
}

impl std::str::FromStr for Serial {
    type Err = SerialError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serials_are_positive_and_minimal() {
        for first in [0x00, 0x7f, 0x80, 0xff] {
            let serial = Serial::from_random([first; 16]);
            assert_eq!(serial.as_bytes().len(), 16);
            assert!(Serial::from_der_integer(serial.as_bytes()).is_ok());
        }
    }

    #[test]
    fn hex_forms() {
        let cases = [
            ("openssl_upper", "4A3F00", Some("4A3F00")),
            ("lower_with_colons", "4a:3f:00", Some("4A3F00")),
            ("prefixed", "0x4a3f00", Some("4A3F00")),
            ("leading_zeros", "004A3F00", Some("4A3F00")),
            ("high_bit_gets_sign_byte", "FF01", Some("FF01")),
            ("zero", "00", None),
            ("not_hex", "xyz", None),
            ("empty", "", None),
            ("too_long", &"7F".repeat(21), None),
        ];
        for (case, input, want) in cases {
            let got = Serial::parse_hex(input).ok().map(|s| s.to_hex());
            assert_eq!(got.as_deref(), want, "case {case}");
        }
        assert_eq!(
            Serial::parse_hex("FF01").map(|s| s.as_bytes().to_vec()),
            Ok(vec![0, 0xff, 1])
        );
    }

    #[test]
    fn der_integer_rules() {
        assert!(Serial::from_der_integer(&[0x80]).is_err(), "negative");
        assert!(Serial::from_der_integer(&[0x00, 0x01]).is_err(), "not minimal");
        assert!(Serial::from_der_integer(&[0x00]).is_err(), "zero");
        assert!(Serial::from_der_integer(&[]).is_err(), "empty");
        assert!(Serial::from_der_integer(&[0x00, 0x80]).is_ok());
    }
}
