//! Turning a checked configuration into running parts: the data directory, issuers (created
//! on first start when configured so), the store and the authority.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use certgate_acme::AcmeServer;
use certgate_authority::{Authority, AuthorityConfig, EndpointPolicy, KeyPolicy, NamePolicy};
use certgate_core::{Clock, Name, Protocol, SystemClock};
use certgate_est::{EstServer, EstStores};
use certgate_lifecycle::{
    DeploymentSettings, DeploymentTarget, DeploymentVerifier, ExpiryMonitor, LifecycleDeps, MonitorSettings,
    NotificationEvent, Notifier, NotifierSettings, WebhookConfig, WebhookSecret,
};
use certgate_metrics::{Metrics, MetricsConfig};
use certgate_revocation::{RevocationDeps, RevocationService, RevocationSettings};
use certgate_scep::{ScepServer, ScepStores};
use certgate_signer::{CaInitOptions, Issuer, IssuerFiles, Passphrase};
use certgate_store::SledStore;
use certgate_store::audit::{AuditLog, SledAuditLog};

use crate::config::{CheckedConfig, IssuerConfig, MetricsAccess};
use crate::server::MetricsGate;

/// The endpoint the daemon issues its own HTTPS certificate through.
pub const DAEMON_TLS_ENDPOINT: &str = "daemon-tls";

/// Everything `serve` runs on.
pub struct Parts {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The configuration.
    pub config: CheckedConfig,
    /// The store.
    pub store: SledStore,
    /// The authority.
    pub authority: Arc<Authority>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The ACME endpoints, if any are configured.
    pub acme: Option<Arc<AcmeServer>>,
    /// The EST endpoints, if any are configured.
    pub est: Option<Arc<EstServer>>,
    /// The SCEP endpoints, if any are configured.
    pub scep: Option<Arc<ScepServer>>,
    /// CRLs and OCSP.
    pub revocation: Arc<RevocationService>,
    /// The audit log.
    pub audit: Arc<SledAuditLog>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Expiry monitoring, webhooks and deployment verification.
    pub lifecycle: Lifecycle,
}

/// The lifecycle parts, built from `[lifecycle]`.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// The webhook sender.
    pub notifier: Notifier,
    /// The expiry scanner.
    pub monitor: Arc<ExpiryMonitor>,
    /// The deployment checker (alerts through the notifier).
    pub verifier: DeploymentVerifier,
}

/// The monitor's rules from the configuration.
pub fn monitor_settings(config: &crate::config::LifecycleConfig) -> MonitorSettings {
    MonitorSettings {
        renewal_fraction: config.renewal_fraction(),
        expiring_within_hours: config.expiring_within_days.saturating_mul(24),
        ..MonitorSettings::default()
    }
}

/// Deployment targets and settings from the configuration; `only` replaces the configured
/// targets (and the inventory's) when not empty.
pub fn deployment_settings(
    config: &crate::config::DeploymentConfig,
    only: &[String],
) -> anyhow::Result<DeploymentSettings> {
    let parse = |address: &str| -> anyhow::Result<DeploymentTarget> {
        let (host, port) = address
            .rsplit_once(':')
            .with_context(|| format!("deployment target {address:?}: expected host:port"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("deployment target {address:?}: bad port"))?;
        Ok(DeploymentTarget::new(
            host.trim_start_matches('[').trim_end_matches(']'),
            port,
        ))
    };
    let targets = if only.is_empty() {
        config
            .targets
            .iter()
            .map(|t| {
                let mut target = parse(&t.address)?;
                target.sni = t.server_name.clone();
                if let Some(owner) = &t.owner {
                    target.owner_labels.insert("owner".into(), owner.clone());
                }
                Ok(target)
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        only.iter().map(|a| parse(a)).collect::<anyhow::Result<_>>()?
    };
    Ok(DeploymentSettings {
        targets,
        from_inventory: config.from_inventory && only.is_empty(),
        connect_timeout_ms: config.timeout_seconds.max(1).saturating_mul(1000),
        ..DeploymentSettings::default()
    })
}

/// Builds the notifier, monitor and verifier.
pub fn lifecycle(config: &CheckedConfig, store: &SledStore, clock: &Arc<dyn Clock>) -> anyhow::Result<Lifecycle> {
    let lifecycle = &config.config.lifecycle;
    let mut webhooks = Vec::new();
    for hook in &lifecycle.webhooks {
        let secret = match (&hook.secret_file, &hook.secret_env) {
            (Some(file), _) => std::fs::read_to_string(file)
                .with_context(|| format!("webhook {}: reading {}", hook.name, file.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            (None, Some(var)) => std::env::var(var).with_context(|| format!("webhook {}: ${var}", hook.name))?,
            (None, None) => bail!("webhook {}: no secret", hook.name),
        };
        let events = if hook.events.is_empty() {
            None
        } else {
            Some(
                hook.events
                    .iter()
                    .filter_map(|e| NotificationEvent::ALL.into_iter().find(|k| k.as_str() == e))
                    .collect(),
            )
        };
        webhooks.push(WebhookConfig {
            name: hook.name.clone(),
            url: hook.url.clone(),
            secret: WebhookSecret::new(secret.into_bytes()),
            events,
            ca_file: hook.ca_file.clone(),
        });
    }
    let deps = || LifecycleDeps {
        certificates: Arc::new(store.clone()),
        notifications: Arc::new(store.clone()),
        clock: Arc::clone(clock),
    };
    let notifier = Notifier::new(
        NotifierSettings {
            webhooks,
            ..NotifierSettings::default()
        },
        Arc::new(store.clone()),
        Arc::clone(clock),
    )?;
    let mut rules = monitor_settings(lifecycle);
    rules.retention_days = config.config.retention.delivery_days.max(1);
    let monitor = Arc::new(ExpiryMonitor::new(deps(), rules.clone(), notifier.clone())?);
    let verifier = DeploymentVerifier::new(
        deps(),
        deployment_settings(&lifecycle.deployment, &[])?,
        rules,
        Some(notifier.clone()),
    )?;
    Ok(Lifecycle {
        notifier,
        monitor,
        verifier,
    })
}

/// SCEP GetCRL answers with the revocation service's current CRL of the endpoint's issuer.
#[derive(Debug)]
struct ScepCrls(Arc<RevocationService>);

#[async_trait::async_trait]
impl certgate_scep::CrlSource for ScepCrls {
    async fn crl(&self, _endpoint: &Name, issuer: &Issuer) -> Result<Option<Vec<u8>>, certgate_scep::ScepError> {
        match self.0.crl_der(issuer.name()).await {
            Ok(crl) => Ok(crl.map(|der| der.as_ref().clone())),
            Err(e) => {
                tracing::error!(issuer = %issuer.name(), error = %e, "no CRL for SCEP GetCRL");
                Ok(None)
            }
        }
    }
}

/// Creates the data directory with mode 0700 if needed.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
    }
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {} to mode 0700", dir.display()))?;
    }
    Ok(())
}

/// The passphrase an issuer's key needs, if any.
pub fn issuer_passphrase(issuer: &IssuerConfig) -> anyhow::Result<Option<Passphrase>> {
    Ok(match (&issuer.key_passphrase_file, &issuer.key_passphrase_env) {
        (Some(file), _) => Some(Passphrase::from_file(file)?),
        (None, Some(var)) => Some(Passphrase::from_env(var)?),
        (None, None) => None,
    })
}

/// Loads every configured issuer, creating those that are missing and allowed to be created.
pub fn load_issuers(config: &CheckedConfig, data_dir: &Path, clock: &dyn Clock) -> anyhow::Result<Vec<Arc<Issuer>>> {
    let mut issuers = Vec::new();
    for issuer in &config.config.issuers {
        let name = Name::new(issuer.name.as_str())?;
        let files = IssuerFiles::in_dir(&issuer.dir_in(data_dir));
        let passphrase = issuer_passphrase(issuer)?;
        if !files.exists() {
            if !issuer.create_if_missing {
                bail!(
                    "issuer {name}: no CA in {} (run `certgate ca init` or `certgate ca import`)",
                    files.dir.display()
                );
            }
            let options = CaInitOptions {
                key_type: issuer.key_type,
                common_name: issuer.common_name.clone(),
                passphrase: passphrase.clone(),
                ..CaInitOptions::default()
            };
            certgate_signer::init_ca(&files.dir, &options, clock.now())
                .with_context(|| format!("creating issuer {name}"))?;
            tracing::info!(issuer = %name, key_type = %issuer.key_type, dir = %files.dir.display(), "created a new CA");
        }
        let loaded = Issuer::load(name.clone(), &files, passphrase.as_ref())
            .with_context(|| format!("loading issuer {name} from {}", files.dir.display()))?;
        if loaded.not_after() <= clock.now() {
            tracing::warn!(issuer = %name, not_after = %loaded.not_after(), "issuer certificate has expired");
        }
        issuers.push(Arc::new(loaded));
    }
    Ok(issuers)
}

/// Opens the store in `<data_dir>/db` with the default page cache, explaining the
/// usual reason it cannot be opened.
pub fn open_store(data_dir: &Path) -> anyhow::Result<SledStore> {
    open_store_with_cache(data_dir, certgate_store::DEFAULT_CACHE_BYTES)
}

/// [`open_store`] with the page cache the configuration asks for.
pub fn open_store_with_cache(data_dir: &Path, cache_bytes: u64) -> anyhow::Result<SledStore> {
    let path = data_dir.join("db");
    SledStore::open_with_cache(&path, cache_bytes).map_err(|e| {
        let text = e.to_string();
        if text.contains("lock") || text.contains("WouldBlock") || text.contains("Resource temporarily unavailable") {
            anyhow::anyhow!(
                "the store {} is in use by another process (is certgate already running?)",
                path.display()
            )
        } else {
            anyhow::anyhow!("opening the store {}: {text}", path.display())
        }
    })
}

/// Opens the audit log of `store`, with its archive segments in `<data_dir>/audit`.
pub fn open_audit_log(store: &SledStore, data_dir: &Path) -> anyhow::Result<SledAuditLog> {
    let dir = data_dir.join("audit");
    SledAuditLog::open_with_archive(store, &dir)
        .map_err(|e| anyhow::anyhow!("opening the audit log (archive {}): {e}", dir.display()))
}

/// The internal endpoint for the daemon's own certificate: names as the operator configured.
pub fn daemon_tls_endpoint(issuer: &str) -> anyhow::Result<EndpointPolicy> {
    Ok(EndpointPolicy {
        protocol: Protocol::Admin,
        name: Name::new(DAEMON_TLS_ENDPOINT)?,
        issuer: Name::new(issuer)?,
        profiles: vec![Name::new("tls-server")?],
        keys: KeyPolicy::default(),
        names: NamePolicy::default(),
        owner_labels: BTreeMap::from([("owner".to_owned(), "certgate".to_owned())]),
    })
}

/// Builds all parts for `serve`.
pub fn assemble(config: CheckedConfig, data_dir: PathBuf) -> anyhow::Result<Parts> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    prepare_data_dir(&data_dir)?;
    let issuers = load_issuers(&config, &data_dir, clock.as_ref())?;
    let store = open_store_with_cache(&data_dir, config.config.store.cache_mib * 1024 * 1024)?;
    let mut endpoints = config.endpoints.clone();
    endpoints.push(daemon_tls_endpoint(&config.config.tls.issuer)?);
    let metrics = Arc::new(Metrics::new(MetricsConfig {
        endpoints: endpoints.iter().map(|e| e.name.to_string()).collect(),
        webhooks: config
            .config
            .lifecycle
            .webhooks
            .iter()
            .map(|w| w.name.clone())
            .collect(),
    }));
    let audit = Arc::new(open_audit_log(&store, &data_dir)?);
    let authority = Authority::new(
        AuthorityConfig {
            issuers,
            profiles: config.profiles.clone(),
            endpoints,
            public_base_url: config.config.public_base_url.clone(),
        },
        Arc::new(store.clone()),
        Arc::clone(&clock),
    )?
    .with_audit(Arc::clone(&audit) as Arc<dyn AuditLog>)
    .with_metrics(Arc::clone(&metrics));
    let authority = Arc::new(authority);
    let revocation_config = &config.config.revocation;
    let revocation = Arc::new(
        RevocationService::new(
            RevocationDeps {
                issuers: authority.issuers().cloned().collect(),
                store: Arc::new(store.clone()),
                clock: Arc::clone(&clock),
                ocsp_signer_dir: data_dir.join("ocsp"),
                revocations: authority.revocation_updates(),
            },
            RevocationSettings {
                crl_validity: time::Duration::hours(revocation_config.crl_validity_hours.into()),
                ocsp_validity: time::Duration::minutes(revocation_config.ocsp_validity_minutes.into()),
                ocsp_signer_lifetime: time::Duration::days(revocation_config.ocsp_signer_validity_days.into()),
                ..RevocationSettings::default()
            },
        )
        .context("starting the CRL and OCSP service")?,
    );
    let acme_endpoints: Vec<_> = config
        .config
        .endpoints
        .iter()
        .filter(|e| e.protocol == Protocol::Acme)
        .map(|e| {
            Ok(e.acme
                .clone()
                .unwrap_or_default()
                .to_endpoint_config(Name::new(e.name.as_str())?))
        })
        .collect::<anyhow::Result<_>>()?;
    let acme = if acme_endpoints.is_empty() {
        None
    } else {
        Some(Arc::new(
            AcmeServer::new(
                acme_endpoints,
                Arc::new(store.clone()),
                Arc::new(store.clone()),
                Arc::clone(&authority),
                Arc::clone(&clock),
            )?
            .with_metrics(Arc::clone(&metrics)),
        ))
    };
    let est = if config.est.is_empty() {
        None
    } else {
        Some(Arc::new(EstServer::new(
            config.est.clone(),
            EstStores {
                users: Arc::new(store.clone()),
                approvals: Arc::new(store.clone()),
            },
            Arc::clone(&authority),
            Arc::clone(&clock),
        )?))
    };
    let scep = if config.scep.is_empty() {
        None
    } else {
        let mut endpoints = Vec::new();
        for checked in &config.scep {
            let (ra, next_ca) = scep_ra_keys(checked, &authority, &data_dir, clock.now())?;
            endpoints.push(checked.to_endpoint_config(ra, next_ca, Arc::clone(&clock)));
        }
        Some(Arc::new(
            ScepServer::new(
                endpoints,
                ScepStores {
                    approvals: Arc::new(store.clone()),
                    challenges: Arc::new(store.clone()),
                },
                Arc::clone(&authority),
                Arc::clone(&clock),
            )?
            .with_crl_source(Arc::new(ScepCrls(Arc::clone(&revocation)))),
        ))
    };
    let lifecycle = lifecycle(&config, &store, &clock)?;
    Ok(Parts {
        data_dir,
        config,
        store,
        authority,
        clock,
        acme,
        est,
        scep,
        lifecycle,
        revocation,
        audit,
        metrics,
    })
}

/// The SCEP endpoint's RA key and certificate (RSA, issued by the endpoint's issuer) from
/// `<data-dir>/scep/<endpoint>/ra/`, created on first start and replaced when it nears expiry
/// or the issuer changed; and, while a rollover issuer is configured, the certificates
/// GetNextCACert announces: that issuer, its chain, and an RA it issued (`next-ra/`).
#[allow(clippy::type_complexity)]
fn scep_ra_keys(
    checked: &crate::config::CheckedScep,
    authority: &Authority,
    data_dir: &Path,
    now: time::OffsetDateTime,
) -> anyhow::Result<(Arc<certgate_authority::RaKey>, Option<Vec<Vec<u8>>>)> {
    let dir = data_dir.join("scep").join(checked.name.as_str());
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    let options = certgate_authority::RaOptions {
        common_name: format!("certgate SCEP RA {}", checked.name),
        key_type: checked.ra_key_type,
        ..certgate_authority::RaOptions::default()
    };
    let issuer = authority.issuer(&checked.issuer).with_context(|| {
        format!(
            "SCEP endpoint {}: issuer {} is not loaded",
            checked.name, checked.issuer
        )
    })?;
    let ra = certgate_authority::RaKey::load_or_create(&dir.join("ra"), issuer, &options, now)
        .with_context(|| format!("SCEP endpoint {}: RA key", checked.name))?;
    let next_ca = match &checked.settings.next_ca_issuer {
        Some(next) => {
            let next = authority
                .issuer(&Name::new(next.as_str())?)
                .with_context(|| format!("SCEP endpoint {}: next CA {next} is not loaded", checked.name))?;
            let next_ra = certgate_authority::RaKey::load_or_create(&dir.join("next-ra"), next, &options, now)
                .with_context(|| format!("SCEP endpoint {}: next RA key", checked.name))?;
            let mut certificates = vec![next_ra.certificate_der().to_vec(), next.certificate_der().to_vec()];
            certificates.extend(next.chain_der().iter().cloned());
            if next.root_der() != next.certificate_der() {
                certificates.push(next.root_der().to_vec());
            }
            Some(certificates)
        }
        None => None,
    };
    Ok((Arc::new(ra), next_ca))
}

/// Who may read `/metrics`: the configured networks, and the token's digest if one is set.
pub fn metrics_gate(access: &MetricsAccess) -> anyhow::Result<MetricsGate> {
    let token = match (&access.token_file, &access.token_env) {
        (Some(file), _) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("metrics token: reading {}", file.display()))?
                .trim()
                .to_owned(),
        ),
        (None, Some(var)) => Some(std::env::var(var).with_context(|| format!("metrics token: ${var}"))?),
        (None, None) => None,
    };
    if token.as_ref().is_some_and(|t| t.len() < 16) {
        bail!("metrics token: at least 16 characters");
    }
    Ok(MetricsGate {
        networks: access.allow_networks.clone(),
        token_sha256: token.map(|t| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.trim().as_bytes());
            let mut out = [0u8; 32];
            out.copy_from_slice(digest.as_ref());
            out
        }),
    })
}
