use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::NameError;

/// RFC 5280 5.3.1 CRLReason, minus certificateHold and removeFromCRL (certgate has no holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    /// 0
    Unspecified,
    /// 1
    KeyCompromise,
    /// 2
    CaCompromise,
    /// 3
    AffiliationChanged,
    /// 4
    Superseded,
    /// 5
    CessationOfOperation,
    /// 9
    PrivilegeWithdrawn,
    /// 10
    AaCompromise,
}

impl RevocationReason {
    const ALL: [(Self, &'static str, u8); 8] = [
        (Self::Unspecified, "unspecified", 0),
        (Self::KeyCompromise, "keyCompromise", 1),
        (Self::CaCompromise, "cACompromise", 2),
        (Self::AffiliationChanged, "affiliationChanged", 3),
        (Self::Superseded, "superseded", 4),
        (Self::CessationOfOperation, "cessationOfOperation", 5),
        (Self::PrivilegeWithdrawn, "privilegeWithdrawn", 9),
        (Self::AaCompromise, "aACompromise", 10),
    ];

    /// The CRLReason code.
    pub fn code(self) -> u8 {
        Self::ALL.iter().find(|(r, _, _)| *r == self).map_or(0, |(_, _, c)| *c)
    }

    /// From a CRLReason code (ACME revokeCert `reason`); None for codes certgate refuses.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.iter().find(|(_, _, c)| *c == code).map(|(r, _, _)| *r)
    }

    /// The RFC 5280 name.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(r, _, _)| *r == self)
            .map_or("unspecified", |(_, n, _)| n)
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RevocationReason {
    type Err = NameError;
    /// Accepts the RFC 5280 name in any case, with or without dashes (`key-compromise`), or the code.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(code) = s.parse::<u8>() {
            return Self::from_code(code).ok_or_else(|| NameError(s.to_owned()));
        }
        let folded: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Self::ALL
            .iter()
            .find(|(_, n, _)| n.to_ascii_lowercase() == folded)
            .map(|(r, _, _)| *r)
            .ok_or_else(|| NameError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reasons() {
        let cases = [
            ("camel", "keyCompromise", Some(RevocationReason::KeyCompromise)),
            ("lower", "superseded", Some(RevocationReason::Superseded)),
            (
                "dashed",
                "cessation-of-operation",
                Some(RevocationReason::CessationOfOperation),
            ),
            ("code", "4", Some(RevocationReason::Superseded)),
            ("hold_refused", "6", None),
            ("unknown", "because", None),
        ];
        for (case, input, want) in cases {
            assert_eq!(input.parse::<RevocationReason>().ok(), want, "case {case}");
        }
        for (reason, _, code) in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_code(code), Some(reason));
        }
    }
}
