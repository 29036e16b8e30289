//! `certgate serve`: start everything, print where it is, run until SIGTERM or SIGINT, then
//! drain and flush.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use certgate_store::CertificateStore;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use certgate_revocation::RevocationServer;
use certgate_store::audit::{AuditEvent, AuditKind, AuditLog};

use crate::admin::{self, AdminService};
use crate::config::CheckedConfig;
use crate::connections::{ConnectionTracker, connection_capacity};
use crate::jobs;
use crate::listener::{ListenerSettings, serve_tcp};
use crate::server::Router;
use crate::tls::ServerCert;
use crate::wiring;

/// Runs the daemon until a termination signal.
#[allow(clippy::print_stdout)] // the start-up banner is the command's own output
pub async fn run(config: CheckedConfig, data_dir: PathBuf) -> anyhow::Result<()> {
    let parts = wiring::assemble(config, data_dir)?;
    let listeners = parts.config.config.listeners.clone();
    let grace = Duration::from_secs(listeners.shutdown_grace_seconds);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let admin_service = Arc::new(AdminService {
        authority: Arc::clone(&parts.authority),
        store: parts.store.clone(),
        clock: Arc::clone(&parts.clock),
        acme: parts.acme.clone(),
        est_endpoints: parts.config.est.iter().map(|e| e.name.clone()).collect(),
        scep_endpoints: parts.config.scep.iter().map(|e| e.name.clone()).collect(),
        renewal_fraction: parts.config.config.lifecycle.renewal_fraction(),
        audit: Some(Arc::clone(&parts.audit) as Arc<dyn AuditLog>),
        admin_certificates: parts.config.config.admin.client_certificate_sha256.clone(),
        deployment: Some(parts.lifecycle.verifier.clone()),
    });
    let router = Arc::new(Router {
        authority: Arc::clone(&parts.authority),
        store: parts.store.clone(),
        acme: parts.acme.clone(),
        est: parts.est.clone(),
        scep: parts.scep.clone(),
        revocation: Some(Arc::new(RevocationServer::new(Arc::clone(&parts.revocation)))),
        admin: Some(Arc::clone(&admin_service)),
        metrics: Arc::clone(&parts.metrics),
        metrics_gate: wiring::metrics_gate(&parts.config.config.metrics)?,
        body_read_timeout: listeners.body_read_timeout(),
    });
    let capacity = connection_capacity();
    if capacity < listeners.max_connections {
        tracing::warn!(
            configured = listeners.max_connections,
            capacity,
            "the open-file limit allows fewer connections than max_connections; raise LimitNOFILE"
        );
    }
    let tracker = ConnectionTracker::new(
        listeners.max_connections.min(capacity),
        listeners.max_connections_per_ip,
    );
    let listener_settings = |name| ListenerSettings {
        name,
        limits: listeners.clone(),
        tracker: Arc::clone(&tracker),
        grace,
    };
    // The configuration in force, in the audit log: which file, and a digest of what it said.
    let config_digest = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{:?}", parts.config.config).as_bytes(),
    ));
    parts
        .audit
        .append_durable(
            &AuditEvent::new(AuditKind::Config, "system", "config-loaded")
                .detail("digest", config_digest)
                .detail("version", env!("CARGO_PKG_VERSION")),
            parts.clock.now(),
        )
        .await
        .context("recording the configuration in the audit log")?;
    let mut tasks = Vec::new();

    let tls_issuer_root = parts
        .config
        .config
        .issuers
        .iter()
        .find(|i| i.name == parts.config.config.tls.issuer)
        .map(|i| certgate_signer::IssuerFiles::in_dir(&i.dir_in(&parts.data_dir)).root)
        .context("the TLS issuer is not configured")?;

    println!("certgate {} starting", env!("CARGO_PKG_VERSION"));
    println!("data directory: {}", parts.data_dir.display());
    for issuer in parts.authority.issuers() {
        println!(
            "issuer {}: {} (valid until {})",
            issuer.name(),
            issuer.subject(),
            issuer.not_after()
        );
    }
    println!("root certificate: {}", tls_issuer_root.display());

    if let Some(address) = listeners.https {
        let cert = ServerCert::prepare(
            &parts.config.config.tls,
            &parts.data_dir,
            &parts.authority,
            &parts.clock,
        )
        .await?;
        let builder = rustls::ServerConfig::builder();
        let mut tls = match client_verifier(&parts)? {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        }
        .with_cert_resolver(cert.resolver.clone());
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // RFC 9266 3: a TLS 1.2 exporter binds the channel only with the extended master
        // secret. rustls does not say per connection whether it was negotiated, so an EST
        // endpoint that requires channel binding makes the listener require it of TLS 1.2
        // clients (TLS 1.3 is unaffected; EMS is universal in TLS 1.2 stacks since ~2016).
        tls.require_ems = parts.config.est.iter().any(|e| e.channel_binding);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding HTTPS on {address}"))?;
        let bound = listener.local_addr()?;
        println!("server certificate: {}", cert.chain_path.display());
        println!("https: https://{bound}/ (health: https://{bound}/healthz)");
        for endpoint in parts
            .config
            .endpoints
            .iter()
            .filter(|e| e.protocol == certgate_core::Protocol::Acme)
        {
            println!("acme: https://{bound}/acme/{}/directory", endpoint.name);
        }
        for endpoint in &parts.config.est {
            if endpoint.name.as_str() == certgate_est::DEFAULT_ENDPOINT {
                println!("est: https://{bound}/.well-known/est/ (endpoint {})", endpoint.name);
            } else {
                println!("est: https://{bound}/.well-known/est/{}/", endpoint.name);
            }
        }
        tasks.push(tokio::spawn(serve_tcp(
            listener,
            Some(acceptor),
            Arc::clone(&router),
            listener_settings("https"),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(
            cert.renew_loop(shutdown_rx.clone(), Duration::from_secs(60)),
        ));
    }
    if let Some(address) = listeners.http {
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding HTTP on {address}"))?;
        let bound = listener.local_addr()?;
        println!(
            "http: http://{bound}/ (health: http://{bound}/healthz, CA certificates: http://{bound}/ca/<issuer>.crt)"
        );
        for endpoint in &parts.config.scep {
            println!("scep: http://{bound}/scep/{}", endpoint.name);
        }
        tasks.push(tokio::spawn(serve_tcp(
            listener,
            None,
            Arc::clone(&router),
            listener_settings("http"),
            shutdown_rx.clone(),
        )));
    }
    let admin_listener = admin::bind(&parts.data_dir)?;
    println!("admin socket: {}", admin::socket_path(&parts.data_dir).display());
    tasks.push(tokio::spawn(admin::serve(
        admin_listener,
        admin_service,
        shutdown_rx.clone(),
        grace,
    )));
    {
        let (revocation, clock) = (Arc::clone(&parts.revocation), Arc::clone(&parts.clock));
        tasks.push(tokio::spawn(jobs::every(
            Duration::from_secs(60),
            shutdown_rx.clone(),
            move || {
                let (revocation, clock) = (Arc::clone(&revocation), Arc::clone(&clock));
                async move { jobs::refresh_revocation(&revocation, clock.as_ref()).await }
            },
        )));
    }
    if let Some(policy) = parts.config.config.store.shed_policy() {
        let shedder = Arc::new(crate::shedding::SpaceShedder::new(
            parts.store.clone(),
            parts.authority.admission().clone(),
            Arc::clone(&parts.metrics),
            policy,
        ));
        tasks.push(tokio::spawn(jobs::every(
            crate::shedding::SAMPLE_EVERY,
            shutdown_rx.clone(),
            move || {
                let shedder = Arc::clone(&shedder);
                async move { shedder.run_once().await }
            },
        )));
    }
    {
        let sweeper = Arc::new(jobs::Sweeper {
            store: parts.store.clone(),
            acme: parts.acme.clone(),
            monitor: Some(Arc::clone(&parts.lifecycle.monitor)),
            audit: Arc::clone(&parts.audit),
            retention: parts.config.config.retention.clone(),
            clock: Arc::clone(&parts.clock),
        });
        let period = Duration::from_secs(parts.config.config.retention.sweep_interval_seconds);
        tasks.push(tokio::spawn(jobs::every(period, shutdown_rx.clone(), move || {
            let sweeper = Arc::clone(&sweeper);
            async move { sweeper.run_once().await }
        })));
    }
    {
        let lifecycle = parts.lifecycle.clone();
        let (store, metrics, clock) = (
            parts.store.clone(),
            Arc::clone(&parts.metrics),
            Arc::clone(&parts.clock),
        );
        let fraction = parts.config.config.lifecycle.renewal_fraction();
        let period = Duration::from_secs(parts.config.config.lifecycle.scan_interval_seconds);
        let seen_failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        tasks.push(tokio::spawn(jobs::every(period, shutdown_rx.clone(), move || {
            let (lifecycle, store, metrics, clock) = (
                lifecycle.clone(),
                store.clone(),
                Arc::clone(&metrics),
                Arc::clone(&clock),
            );
            let seen_failures = Arc::clone(&seen_failures);
            async move {
                jobs::scan_expiries(&lifecycle.monitor).await;
                jobs::inventory_gauges(&store, Some(&lifecycle.monitor), &metrics, clock.as_ref(), fraction).await;
                if let Ok(mut seen) = seen_failures.lock() {
                    jobs::webhook_failures(&lifecycle.notifier, &metrics, &mut seen);
                }
            }
        })));
    }
    let deployment_interval = parts.config.config.lifecycle.deployment.interval_seconds;
    if deployment_interval > 0 {
        let verifier = parts.lifecycle.verifier.clone();
        tasks.push(tokio::spawn(jobs::every(
            Duration::from_secs(deployment_interval),
            shutdown_rx.clone(),
            move || {
                let verifier = verifier.clone();
                async move { jobs::verify_deployments(&verifier).await }
            },
        )));
    }
    println!("ready");
    tracing::info!("certgate ready");

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
        _ = interrupt.recv() => tracing::info!("SIGINT: draining"),
    }
    let _ = shutdown_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    parts.store.flush().await.context("flushing the store")?;
    let _ = std::fs::remove_file(admin::socket_path(&parts.data_dir));
    tracing::info!("certgate stopped");
    println!("stopped");
    Ok(())
}

/// The HTTPS listener's client-certificate verifier when EST endpoints exist: client
/// certificates are optional (ACME clients and browsers send none) and must chain to an EST
/// endpoint's trust anchor or to one of certgate's own issuers (re-enrollment). The issuing
/// certificates are anchors too, so a device that sends only its leaf still verifies. Which
/// anchor an endpoint accepts is the EST server's check; this one proves key possession.
fn client_verifier(
    parts: &wiring::Parts,
) -> anyhow::Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>> {
    if parts.est.is_none() && parts.config.config.admin.client_certificate_sha256.is_empty() {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    let anchors = parts
        .config
        .est
        .iter()
        .flat_map(|e| e.trust_anchors.iter().map(Vec::as_slice))
        .chain(
            parts
                .authority
                .issuers()
                .flat_map(|i| [i.root_der(), i.certificate_der()]),
        );
    for der in anchors {
        roots
            .add(rustls_pki_types::CertificateDer::from(der.to_vec()))
            .context("an EST trust anchor is not a usable CA certificate")?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")?;
    Ok(Some(verifier))
}
