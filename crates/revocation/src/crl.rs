//! CRLs: one cached CRL per issuer, regenerated after a revocation and once half its
//! validity has passed.
//!
//! cRLNumber is thisUpdate in nanoseconds since the epoch (as Boulder does), raised to one
//! more than the previous number if the clock did not move: strictly increasing across
//! regenerations and restarts without storing anything, as long as the clock does not jump
//! back across a restart.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::RevocationError;
use crate::service::{IssuerState, RevocationService, read, write};
use certgate_core::Name;
use certgate_signer::{CrlSpec, RevokedEntry};

/// A signed CRL and what the service needs to know about it.
#[derive(Debug, Clone)]
pub(crate) struct CurrentCrl {
    pub der: Arc<Vec<u8>>,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    /// The revocation generation its store read saw.
    pub generation: u64,
}

impl RevocationService {
    /// The current CRL of `issuer`, DER; `None` for an issuer this service does not serve.
    /// Regenerates it first when it is stale; while another task regenerates, the last good
    /// CRL is returned. This is also the SCEP GetCRL source.
    pub async fn crl_der(&self, issuer: &Name) -> Result<Option<Arc<Vec<u8>>>, RevocationError> {
        Ok(self.crl(issuer).await?.map(|crl| crl.der))
    }

    pub(crate) async fn crl(&self, issuer: &Name) -> Result<Option<CurrentCrl>, RevocationError> {
        let Some(state) = self.state(issuer) else {
            return Ok(None);
        };
        let now = self.clock.now();
        self.current_crl(state, now).await.map(Some)
    }

    pub(crate) fn crl_fresh(&self, state: &IssuerState, now: OffsetDateTime, generation: u64) -> bool {
        read(&state.crl)
            .is_some_and(|crl| crl.generation == generation && now < crl.this_update + self.settings.crl_validity / 2)
    }

    pub(crate) async fn refresh_crl(&self, state: &IssuerState, now: OffsetDateTime) -> Result<(), RevocationError> {
        if !self.crl_fresh(state, now, self.generation()) {
            self.current_crl(state, now).await?;
        }
        Ok(())
    }

    async fn current_crl(&self, state: &IssuerState, now: OffsetDateTime) -> Result<CurrentCrl, RevocationError> {
        let last = read(&state.crl);
        if let Some(crl) = &last
            && self.crl_fresh(state, now, self.generation())
        {
            return Ok((**crl).clone());
        }
        // One regeneration at a time per issuer. A reader that finds one running takes the last
        // CRL while it is still within its validity, rather than waiting.
        let mut guard = match (&last, state.crl_regeneration.try_lock()) {
            (_, Ok(guard)) => guard,
            (Some(crl), Err(_)) if now < crl.next_update => return Ok((**crl).clone()),
            (_, Err(_)) => state.crl_regeneration.lock().await,
        };
        if let Some(crl) = read(&state.crl)
            && self.crl_fresh(state, now, self.generation())
        {
            return Ok((*crl).clone());
        }
        match self.generate_crl(state, &mut guard, now).await {
            Ok(crl) => {
                write(&state.crl, Some(Arc::new(crl.clone())));
                Ok(crl)
            }
            Err(error) => match read(&state.crl) {
                Some(crl) if now < crl.next_update => {
                    tracing::error!(issuer = %state.issuer.name(), %error, "CRL regeneration failed; serving the last one");
                    Ok((*crl).clone())
                }
                _ => Err(error),
            },
        }
    }

    async fn generate_crl(
        &self,
        state: &IssuerState,
        last_number: &mut u128,
        now: OffsetDateTime,
    ) -> Result<CurrentCrl, RevocationError> {
        // The generation is read before the store: a revocation after this read bumps it
        // again, so this CRL is never taken for one that includes it.
        let generation = self.generation();
        let records = self.store.revoked(state.issuer.name()).await?;
        let validity = self.settings.crl_validity;
        let this_update = now.replace_nanosecond(0).unwrap_or(now);
        let next_update = this_update + validity;
        // RFC 5280 3.3: an entry stays until it has been on one regularly scheduled CRL issued
        // after the certificate expired. CRLs come at least every half validity, so keeping
        // those expired less than one validity ago is enough.
        let horizon = this_update - validity;
        let revoked: Vec<RevokedEntry> = records
            .into_iter()
            .filter(|record| record.not_after > horizon)
            .filter_map(|record| {
                let revocation = record.revocation?;
                Some(RevokedEntry {
                    serial: record.serial,
                    revoked_at: revocation.revoked_at,
                    reason: revocation.reason,
                })
            })
            .collect();
        let nanos = u128::try_from(now.unix_timestamp_nanos()).unwrap_or(0);
        let crl_number = nanos.max(last_number.saturating_add(1));
        let idp = self
            .settings
            .crl_idp_base_url
            .as_deref()
            .map(|base| format!("{}/crl/{}.crl", base.trim_end_matches('/'), state.issuer.name()));
        let entries = revoked.len();
        let issuer = Arc::clone(&state.issuer);
        let sign = move || {
            issuer.sign_crl(&CrlSpec {
                crl_number,
                this_update,
                next_update,
                revoked: &revoked,
                issuing_distribution_point: idp.as_deref(),
            })
        };
        let der = if state.issuer.signs_slowly() {
            tokio::task::spawn_blocking(sign)
                .await
                .map_err(|e| RevocationError::Task(e.to_string()))??
        } else {
            sign()?
        };
        *last_number = crl_number;
        Self::count(&self.counters.crl_generations);
        tracing::info!(
            target: "certgate::revocation",
            issuer = %state.issuer.name(),
            crl_number = %crl_number,
            entries,
            %next_update,
            "CRL generated"
        );
        Ok(CurrentCrl {
            der: Arc::new(der),
            this_update,
            next_update,
            generation,
        })
    }
}
