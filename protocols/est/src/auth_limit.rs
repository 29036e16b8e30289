//! Per-client limits on HTTP Basic password checks, so that a stranger sending
//! `Authorization: Basic …` cannot make the server evaluate Argon2 at will, nor hold the few
//! server-wide password-check permits that real devices need.
//!
//! Like fail2ban or Vault's user lockout, but keyed by the client's address (an IPv4 address,
//! or the /64 of an IPv6 address, since one host is handed a whole /64):
//!
//! - at most [`AuthLimitConfig::concurrent_per_client`] checks of one address run at once;
//! - each check takes a token from the address's bucket of [`AuthLimitConfig::failure_burst`]
//!   tokens, refilled at [`AuthLimitConfig::failures_per_minute`]. A check whose password
//!   matched a known user gives its token back, so only failures (a wrong password, an unknown
//!   user) spend the budget. Taking the token before the check, rather than counting after it,
//!   keeps concurrent checks from racing past the budget;
//! - an address over either limit is refused ([`Refused`], answered 429 with `Retry-After`)
//!   before the user is looked up or any password hashed;
//! - the table holds at most [`AuthLimitConfig::max_clients`] addresses: an address whose
//!   bucket is full and that has no check running carries no state and is dropped first, then
//!   the least penalised.
//!
//! What it does not do: stop an attacker with many addresses (each gets its own burst; the
//! server-wide permit count bounds the total work), tell apart the devices behind one NAT
//! address (they share a budget: a misconfigured device there can get the others refused for
//! a while), or remember anything across a restart.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use certgate_core::Clock;
use time::{Duration, OffsetDateTime};

use crate::EstError;

/// An endpoint's per-client limits on HTTP Basic password checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLimitConfig {
    /// Password checks of one client address running at once (at least 1; default 2).
    pub concurrent_per_client: u32,
    /// Failed checks per minute one client address is allowed on average once its burst is
    /// spent (at least 1; default 10).
    pub failures_per_minute: u32,
    /// Failed checks one client address may make in a row before it is refused (at least 1;
    /// default 20).
    pub failure_burst: u32,
    /// Client addresses tracked at once (at least 1; default 10,000, under a megabyte).
    pub max_clients: usize,
}

impl Default for AuthLimitConfig {
    fn default() -> Self {
        Self {
            concurrent_per_client: 2,
            failures_per_minute: 10,
            failure_burst: 20,
            max_clients: 10_000,
        }
    }
}

/// Why a client may not have its password checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    /// Seconds until it may try again, for `Retry-After` (at least 1).
    pub retry_after: u32,
}

impl From<Refused> for EstError {
    fn from(refused: Refused) -> Self {
        Self::TooManyAuthAttempts {
            retry_after: refused.retry_after,
        }
    }
}

/// The state of one client address.
#[derive(Debug, Clone, Copy)]
struct Client {
    /// When its bucket is full again (GCRA's theoretical arrival time): each failure moves it
    /// one interval later, and at or before now the bucket is full.
    full_at: OffsetDateTime,
    /// Its checks running now.
    running: u32,
}

/// Per-client limits of one endpoint; see the module documentation.
pub(crate) struct AuthLimiter {
    /// Refill interval of one token.
    interval: Duration,
    /// How far `full_at` may be ahead of now while a token is left: `(burst - 1) * interval`.
    tolerance: Duration,
    concurrent: u32,
    max_clients: usize,
    clock: Arc<dyn Clock>,
    clients: Mutex<HashMap<IpAddr, Client>>,
}

impl std::fmt::Debug for AuthLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The settings and the table's size, not its addresses.
        f.debug_struct("AuthLimiter")
            .field("interval", &self.interval)
            .field("tolerance", &self.tolerance)
            .field("concurrent", &self.concurrent)
            .field("max_clients", &self.max_clients)
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

impl AuthLimiter {
    /// A limiter with `config`'s limits (zeros taken as 1), reading time from `clock`.
    pub(crate) fn new(config: &AuthLimitConfig, clock: Arc<dyn Clock>) -> Self {
        let interval = Duration::MINUTE / config.failures_per_minute.max(1);
        Self {
            interval,
            tolerance: interval * (config.failure_burst.max(1) - 1),
            concurrent: config.concurrent_per_client.max(1),
            max_clients: config.max_clients.max(1),
            clock,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one password check from `peer`, taking one failure token and one of its
    /// concurrent places until the returned [`Attempt`] is settled or dropped; `Refused`, and
    /// nothing taken, when `peer` has no token left or all its places are taken.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Attempt, Refused> {
        let key = client_key(peer);
        let now = self.clock.now();
        let mut clients = self.lock();
        if !clients.contains_key(&key) && clients.len() >= self.max_clients {
            self.evict(&mut clients, now);
        }
        let client = clients.entry(key).or_insert(Client {
            full_at: now,
            running: 0,
        });
        // A wall clock set back leaves `full_at` far ahead: at most an empty bucket's worth.
        let start = client
            .full_at
            .clamp(now, now.saturating_add(self.tolerance + self.interval));
        client.full_at = start;
        if start - now > self.tolerance {
            return Err(Refused {
                retry_after: whole_seconds(start - now - self.tolerance),
            });
        }
        if client.running >= self.concurrent {
            return Err(Refused { retry_after: 1 });
        }
        client.full_at = start.saturating_add(self.interval);
        client.running += 1;
        Ok(Attempt {
            limiter: Arc::clone(self),
            key,
            settled: false,
        })
    }

    /// Client addresses tracked now.
    fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Client>> {
        // A panic while holding the lock leaves a consistent table (every update is one
        // assignment), so a poisoned lock is used as it is.
        self.clients.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Makes room for one more address: drops those that carry no state (full bucket, nothing
    /// running), and if that is not enough, the eighth of the rest that is least penalised
    /// (so an attacker cycling through addresses evicts its own first, and the sweep runs
    /// once per eighth of the table rather than on every new address). Addresses with checks
    /// running stay, so the table exceeds its cap by at most the checks running at once.
    fn evict(&self, clients: &mut HashMap<IpAddr, Client>, now: OffsetDateTime) {
        clients.retain(|_, c| c.running > 0 || c.full_at > now);
        if clients.len() < self.max_clients {
            return;
        }
        let mut idle: Vec<(OffsetDateTime, IpAddr)> = clients
            .iter()
            .filter(|(_, c)| c.running == 0)
            .map(|(key, c)| (c.full_at, *key))
            .collect();
        let count = (self.max_clients / 8).clamp(1, idle.len().max(1));
        if idle.len() > count {
            idle.select_nth_unstable(count);
            idle.truncate(count);
        }
        for (_, key) in idle {
            clients.remove(&key);
        }
    }

    /// Ends a check of `key`: frees its place, and gives its token back if `refund`.
    fn settle(&self, key: IpAddr, refund: bool) {
        let mut clients = self.lock();
        if let Some(client) = clients.get_mut(&key) {
            client.running = client.running.saturating_sub(1);
            if refund {
                client.full_at = client.full_at.saturating_sub(self.interval);
            }
        }
    }
}

/// One admitted password check. [`Attempt::finish`] settles it with the outcome; dropped
/// unsettled (the check never ran: the store failed, the server was busy, the client went
/// away), it gives its token back.
#[derive(Debug)]
#[must_use = "dropping it unsettled counts the check as never made"]
pub(crate) struct Attempt {
    limiter: Arc<AuthLimiter>,
    key: IpAddr,
    settled: bool,
}

impl Attempt {
    /// Settles the check: a `matched` password (of a known user) gives the failure token
    /// back, any other outcome spends it.
    pub(crate) fn finish(mut self, matched: bool) {
        self.settled = true;
        self.limiter.settle(self.key, matched);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            self.limiter.settle(self.key, true);
        }
    }
}

/// The address a client's limits are kept under: IPv4 (also when mapped into IPv6), or the
/// /64 prefix of an IPv6 address.
fn client_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// `d` in whole seconds, rounded up, at least 1.
fn whole_seconds(d: Duration) -> u32 {
    let seconds = d.whole_seconds() + i64::from(d.subsec_nanoseconds() > 0);
    u32::try_from(seconds.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use certgate_core::ManualClock;

    use super::*;

    fn start() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
    }

    fn limiter(config: AuthLimitConfig) -> (Arc<AuthLimiter>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(start()));
        let limiter = Arc::new(AuthLimiter::new(&config, Arc::clone(&clock) as Arc<dyn Clock>));
        (limiter, clock)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Each case: `failures` failed checks from one address at the start, then one more
    /// check `after` later. Defaults: 10 per minute (one token per 6 s), burst 20.
    #[test]
    fn failures_spend_a_refilling_budget() {
        let cases = [
            ("good_first_check", 0, Duration::ZERO, Ok(())),
            ("good_last_token_of_the_burst", 19, Duration::ZERO, Ok(())),
            ("bad_burst_spent", 20, Duration::ZERO, Err(6)),
            ("bad_burst_spent_partly_refilled", 20, Duration::seconds(4), Err(2)),
            ("good_one_token_refilled", 20, Duration::seconds(6), Ok(())),
            ("bad_far_over_budget_rounds_up", 20, Duration::milliseconds(500), Err(6)),
            ("good_all_refilled", 20, Duration::minutes(2), Ok(())),
        ];
        for (case, failures, after, want) in cases {
            let (limiter, clock) = limiter(AuthLimitConfig::default());
            for i in 0..failures {
                let attempt = limiter.admit(ip("192.0.2.1"));
                let Ok(attempt) = attempt else {
                    panic!("case {case}: failure {i} refused: {attempt:?}");
                };
                attempt.finish(false);
            }
            clock.advance(after);
            let got = limiter.admit(ip("192.0.2.1")).map(|a| a.finish(false));
            assert_eq!(got, want.map_err(|retry_after| Refused { retry_after }), "case {case}");
        }
    }

    #[test]
    fn successes_and_unsettled_checks_spend_no_budget() {
        let cases = [("good_matched", Some(true)), ("good_never_ran", None)];
        for (case, outcome) in cases {
            let (limiter, _clock) = limiter(AuthLimitConfig::default());
            for _ in 0..100 {
                let attempt = limiter.admit(ip("192.0.2.1")).unwrap();
                match outcome {
                    Some(matched) => attempt.finish(matched),
                    None => drop(attempt),
                }
            }
            // The whole burst of failures is still there.
            for i in 0..20 {
                let attempt = limiter.admit(ip("192.0.2.1"));
                let Ok(attempt) = attempt else {
                    panic!("case {case}: failure {i} refused: {attempt:?}");
                };
                attempt.finish(false);
            }
            assert!(limiter.admit(ip("192.0.2.1")).is_err(), "case {case}");
        }
    }

    #[test]
    fn one_address_over_its_limits_leaves_others_alone() {
        let (limiter, _clock) = limiter(AuthLimitConfig::default());
        for _ in 0..20 {
            limiter.admit(ip("192.0.2.1")).unwrap().finish(false);
        }
        let cases = [
            ("bad_same_address", "192.0.2.1", false),
            ("bad_same_address_mapped_into_ipv6", "::ffff:192.0.2.1", false),
            ("good_neighbour", "192.0.2.2", true),
            ("good_ipv6", "2001:db8::1", true),
        ];
        for (case, peer, ok) in cases {
            let got = limiter.admit(ip(peer)).map(|a| a.finish(false));
            assert_eq!(got.is_ok(), ok, "case {case}: {got:?}");
        }
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let (limiter, _clock) = limiter(AuthLimitConfig {
            failure_burst: 2,
            ..AuthLimitConfig::default()
        });
        limiter.admit(ip("2001:db8:0:1::a")).unwrap().finish(false);
        limiter.admit(ip("2001:db8:0:1:ffff::b")).unwrap().finish(false);
        let cases = [
            ("bad_same_64", "2001:db8:0:1::c", false),
            ("good_next_64", "2001:db8:0:2::a", true),
        ];
        for (case, peer, ok) in cases {
            assert_eq!(limiter.admit(ip(peer)).is_ok(), ok, "case {case}");
        }
    }

    #[test]
    fn concurrent_checks_per_address_are_capped() {
        let (limiter, _clock) = limiter(AuthLimitConfig::default());
        let first = limiter.admit(ip("192.0.2.1")).unwrap();
        let second = limiter.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(limiter.admit(ip("192.0.2.1")).unwrap_err(), Refused { retry_after: 1 });
        let other = limiter.admit(ip("192.0.2.2"));
        assert!(other.is_ok(), "another address has its own places");
        first.finish(true);
        let third = limiter.admit(ip("192.0.2.1"));
        assert!(third.is_ok(), "a settled check frees its place");
        drop(second);
        drop(third);
        drop(other);
    }

    #[test]
    fn a_clock_set_back_blocks_no_longer_than_an_empty_bucket() {
        let (limiter, clock) = limiter(AuthLimitConfig::default());
        for _ in 0..20 {
            limiter.admit(ip("192.0.2.1")).unwrap().finish(false);
        }
        clock.advance(-Duration::hours(1));
        assert_eq!(limiter.admit(ip("192.0.2.1")).unwrap_err(), Refused { retry_after: 6 });
        clock.advance(Duration::minutes(2));
        assert!(limiter.admit(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn the_table_is_bounded_and_keeps_the_most_penalised() {
        let (limiter, _clock) = limiter(AuthLimitConfig {
            max_clients: 16,
            concurrent_per_client: 1,
            ..AuthLimitConfig::default()
        });
        // One address spends its whole burst; then many fail once each.
        for _ in 0..20 {
            limiter.admit(ip("198.51.100.1")).unwrap().finish(false);
        }
        let running = limiter.admit(ip("198.51.100.2")).unwrap();
        for i in 0..1000u32 {
            let peer = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            limiter.admit(peer).unwrap().finish(false);
            assert!(limiter.tracked() <= 16, "after {i}: {}", limiter.tracked());
        }
        assert!(
            limiter.admit(ip("198.51.100.1")).is_err(),
            "the most penalised address is remembered"
        );
        assert_eq!(
            limiter.admit(ip("198.51.100.2")).unwrap_err(),
            Refused { retry_after: 1 },
            "an address with a check running is kept"
        );
        drop(running);
    }

    #[test]
    fn addresses_without_state_are_dropped_first() {
        let (limiter, clock) = limiter(AuthLimitConfig {
            max_clients: 4,
            ..AuthLimitConfig::default()
        });
        for i in 1..=4 {
            limiter.admit(ip(&format!("192.0.2.{i}"))).unwrap().finish(false);
        }
        assert_eq!(limiter.tracked(), 4);
        // Every bucket has refilled: the next new address sweeps them all out.
        clock.advance(Duration::minutes(1));
        limiter.admit(ip("203.0.113.1")).unwrap().finish(true);
        assert_eq!(limiter.tracked(), 1);
    }
}
