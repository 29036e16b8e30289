//! The HTTPS listener's certificate: operator-provided files, or a certificate certgate
//! issues from its own CA (recorded in the inventory like any other) and renews itself
//! after two thirds of its lifetime.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration as StdDuration;

use anyhow::{Context, anyhow};
use certgate_authority::{Authority, IssueRequest};
use certgate_core::{Clock, Name, ParsedCsr, Protocol, RequesterId};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;

use crate::config::TlsConfig;
use crate::wiring::DAEMON_TLS_ENDPOINT;

/// Serves whichever certificate is current; renewal swaps it without a restart.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    fn new(key: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(key)),
        }
    }

    fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner())))
    }
}

/// The current server certificate and, when self-issued, when to renew it.
pub struct ServerCert {
    /// The resolver to put into the rustls config.
    pub resolver: Arc<CertResolver>,
    /// Where the chain is, for the start-up message.
    pub chain_path: PathBuf,
    renew: Option<SelfIssued>,
}

struct SelfIssued {
    dir: PathBuf,
    config: TlsConfig,
    authority: Arc<Authority>,
    clock: Arc<dyn Clock>,
    renew_at: OffsetDateTime,
}

fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .context("reading certificate chain")?;
    if chain.is_empty() {
        return Err(anyhow!("no certificate in the chain file"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("reading private key")?;
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).context("unsupported private key")?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .context("the private key does not belong to the certificate")?;
    Ok(certified)
}

/// The first certificate of a PEM chain (the leaf), parsed.
fn leaf_of(chain_pem: &[u8]) -> Option<x509_cert::Certificate> {
    use der::Decode;
    let first = CertificateDer::pem_slice_iter(chain_pem).next()?.ok()?;
    x509_cert::Certificate::from_der(&first).ok()
}

fn validity_of(chain_pem: &[u8]) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let leaf = leaf_of(chain_pem)?;
    let validity = leaf.tbs_certificate().validity();
    let to_time = |t: &x509_cert::time::Time| {
        OffsetDateTime::from_unix_timestamp(i64::try_from(t.to_unix_duration().as_secs()).ok()?).ok()
    };
    Some((to_time(&validity.not_before)?, to_time(&validity.not_after)?))
}

fn write_public(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(content)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

fn renew_point(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    not_before + (not_after - not_before) * 2 / 3
}

fn write_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(content)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

impl SelfIssued {
    fn paths(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("server.pem"), self.dir.join("server.key"))
    }

    /// Issues a fresh certificate through the authority and writes it.
    async fn issue(&self) -> anyhow::Result<(Vec<u8>, Vec<u8>, OffsetDateTime, OffsetDateTime)> {
        let key = certgate_signer::generate_key(certgate_signer::KeyType::P256)?;
        let mut params = rcgen::CertificateParams::new(self.config.names.clone())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr_der = params.serialize_request(&key)?.der().to_vec();
        let csr = ParsedCsr::from_der(&csr_der)?;
        let now = self.clock.now();
        let mut request = IssueRequest::new(
            Protocol::Admin,
            Name::new(DAEMON_TLS_ENDPOINT)?,
            csr,
            RequesterId::new("certgate-daemon:https-listener")?,
        );
        request.not_after = Some(now + Duration::days(self.config.validity_days.into()));
        let issued = self.authority.issue(request).await?;
        let chain_pem = issued.chain_pem().into_bytes();
        let key_pem = key.serialize_pem().into_bytes();
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        let (chain_path, key_path) = self.paths();
        // Both files are written whole before either is replaced; a crash between the two
        // renames is caught at load by the key/certificate match check.
        write_private(&key_path, &key_pem)?;
        write_public(&chain_path, &chain_pem)?;
        tracing::info!(serial = %issued.record.serial, not_after = %issued.record.not_after, "issued the HTTPS listener's certificate");
        Ok((chain_pem, key_pem, issued.record.not_before, issued.record.not_after))
    }
}

impl ServerCert {
    /// Loads the configured certificate, or the self-issued one (issuing it if missing,
    /// expired, due for renewal or issued for other names).
    pub async fn prepare(
        config: &TlsConfig,
        data_dir: &Path,
        authority: &Arc<Authority>,
        clock: &Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
            let chain = fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key_pem = fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            let resolver = Arc::new(CertResolver::new(certified_key(&chain, &key_pem)?));
            return Ok(Self {
                resolver,
                chain_path: cert.clone(),
                renew: None,
            });
        }
        let mut issued = SelfIssued {
            dir: data_dir.join("tls"),
            config: config.clone(),
            authority: Arc::clone(authority),
            clock: Arc::clone(clock),
            renew_at: clock.now(),
        };
        let (chain_path, key_path) = issued.paths();
        let existing = match (fs::read(&chain_path), fs::read(&key_path)) {
            (Ok(chain), Ok(key)) => validity_of(&chain)
                .filter(|(nb, na)| renew_point(*nb, *na) > clock.now())
                .filter(|_| names_match(&chain, &config.names))
                .map(|(nb, na)| (chain, key, nb, na)),
            _ => None,
        };
        // A certificate an operator revoked is replaced at the next start.
        let existing = match existing {
            Some(found) if is_revoked(authority, &found.0).await => None,
            other => other,
        };
        // A pair that does not load or does not match (a crash between writing the two files)
        // is replaced too.
        let existing = existing.and_then(|(chain, key, nb, na)| match certified_key(&chain, &key) {
            Ok(certified) => Some((certified, nb, na)),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "the stored HTTPS certificate is unusable; issuing a new one");
                None
            }
        });
        let (certified, not_before, not_after) = match existing {
            Some(found) => found,
            None => {
                let (chain, key, nb, na) = issued.issue().await?;
                (certified_key(&chain, &key)?, nb, na)
            }
        };
        issued.renew_at = renew_point(not_before, not_after);
        let resolver = Arc::new(CertResolver::new(certified));
        Ok(Self {
            resolver,
            chain_path,
            renew: Some(issued),
        })
    }

    /// Renews the self-issued certificate when due, until `shutdown` fires, looking at the
    /// clock at least every `recheck` (so a suspended machine or a moved clock is noticed).
    /// Failures are retried every minute.
    pub async fn renew_loop(self, mut shutdown: watch::Receiver<bool>, recheck: StdDuration) {
        let Some(mut issued) = self.renew else { return };
        loop {
            let due_in = issued.renew_at - issued.clock.now();
            let wait = StdDuration::try_from(due_in.max(Duration::ZERO))
                .unwrap_or(recheck)
                .min(recheck);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            if issued.clock.now() < issued.renew_at {
                continue;
            }
            match issued
                .issue()
                .await
                .and_then(|(chain, key, nb, na)| Ok((certified_key(&chain, &key)?, nb, na)))
            {
                Ok((key, nb, na)) => {
                    self.resolver.replace(key);
                    issued.renew_at = renew_point(nb, na);
                }
                Err(e) => {
                    tracing::error!(error = %e, "renewing the HTTPS listener's certificate failed; retrying in a minute");
                    issued.renew_at = issued.clock.now() + Duration::minutes(1);
                }
            }
        }
    }
}

async fn is_revoked(authority: &Authority, chain_pem: &[u8]) -> bool {
    let Some(leaf) = leaf_of(chain_pem) else { return false };
    let Ok(serial) = certgate_core::Serial::from_der_integer(leaf.tbs_certificate().serial_number().as_bytes()) else {
        return false;
    };
    authority
        .store()
        .certificate(&serial)
        .await
        .is_ok_and(|record| record.revocation.is_some())
}

fn names_match(chain_pem: &[u8], names: &[String]) -> bool {
    let Some(cert) = leaf_of(chain_pem) else { return false };
    let Ok(Some(san)) = cert
        .tbs_certificate()
        .get_extension::<x509_cert::ext::pkix::SubjectAltName>()
    else {
        return false;
    };
    let present: Vec<String> = san
        .1
        .0
        .iter()
        .filter_map(|n| match n {
            x509_cert::ext::pkix::name::GeneralName::DnsName(d) => Some(d.to_string()),
            x509_cert::ext::pkix::name::GeneralName::IpAddress(ip) => match ip.as_bytes().len() {
                4 => <[u8; 4]>::try_from(ip.as_bytes())
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(ip.as_bytes())
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    names.iter().all(|n| present.iter().any(|p| p.eq_ignore_ascii_case(n)))
}

#[cfg(test)]
mod tests {
    use certgate_core::ManualClock;
    use certgate_signer::KeyType;
    use certgate_test_support::TestAuthority;

    use super::*;
    use crate::wiring::daemon_tls_endpoint;

    fn current_serial(resolver: &CertResolver) -> Vec<u8> {
        use der::Decode;
        let key = resolver.current.read().unwrap().clone();
        let cert = x509_cert::Certificate::from_der(&key.cert[0]).unwrap();
        cert.tbs_certificate().serial_number().as_bytes().to_vec()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn self_issued_certificate_is_reused_then_renewed_after_two_thirds() {
        let manual = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let clock: Arc<dyn Clock> = manual.clone();
        let endpoint = daemon_tls_endpoint("default").unwrap();
        let t = TestAuthority::with_clock(KeyType::P256, vec![endpoint], Arc::clone(&clock));
        let dir = tempfile::tempdir().unwrap();
        let config = TlsConfig {
            validity_days: 30,
            ..TlsConfig::default()
        };

        let first = ServerCert::prepare(&config, dir.path(), &t.authority, &clock)
            .await
            .unwrap();
        let original = current_serial(&first.resolver);

        manual.advance(Duration::days(10));
        let restarted = ServerCert::prepare(&config, dir.path(), &t.authority, &clock)
            .await
            .unwrap();
        assert_eq!(
            current_serial(&restarted.resolver),
            original,
            "reused before two thirds of its life"
        );

        let resolver = Arc::clone(&restarted.resolver);
        let (stop, stopped) = watch::channel(false);
        let renewing = tokio::spawn(restarted.renew_loop(stopped, StdDuration::from_millis(20)));
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        assert_eq!(current_serial(&resolver), original, "not renewed early");
        manual.advance(Duration::days(11));
        let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
        while current_serial(&resolver) == original {
            assert!(std::time::Instant::now() < deadline, "renewed without a restart");
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
        let _ = stop.send(true);
        renewing.await.unwrap();
        let renewed = current_serial(&resolver);
        let restarted = ServerCert::prepare(&config, dir.path(), &t.authority, &clock)
            .await
            .unwrap();
        assert_eq!(
            current_serial(&restarted.resolver),
            renewed,
            "the renewed certificate was written"
        );

        // A key that does not belong to the chain (a crash between the two writes) is replaced.
        let stray = certgate_signer::generate_key(KeyType::P256).unwrap();
        write_private(&dir.path().join("tls/server.key"), stray.serialize_pem().as_bytes()).unwrap();
        let repaired = ServerCert::prepare(&config, dir.path(), &t.authority, &clock)
            .await
            .unwrap();
        assert_ne!(
            current_serial(&repaired.resolver),
            renewed,
            "a mismatched pair is reissued"
        );
    }
}
