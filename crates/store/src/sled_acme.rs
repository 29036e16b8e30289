//! [`AcmeStore`] on sled. Protocol state is not flushed per request (design: short-lived
//! protocol state rides along with the next group commit), except accounts and EAB bindings,
//! which a client cannot recreate by itself once it has been told they exist.

use async_trait::async_trait;
use certgate_core::{Identifier, Name};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::StoreError;
use crate::acme::{
    AccountRecord, AcmeStore, AcmeSweep, AuthzRecord, AuthzStatus, EabKeyRecord, OrderPage, OrderRecord,
};
use crate::sled_backend::{AcmeTrees, SWEEP_BATCH, SledStore, drain_below, expiry_prefix};

const MAX_ORDER_PAGE: usize = 1000;
/// Orders and authorizations by expiry (expires || id), for sweeping. An authorization's
/// expiry changes when it becomes valid: it then gets a second entry, and the sweep checks the
/// record's own expiry before deleting, dropping stale entries as it goes.
const ORDERS_BY_EXPIRY: &str = "acme_orders_by_expiry";
const AUTHZS_BY_EXPIRY: &str = "acme_authzs_by_expiry";
fn expiry_index(expires: OffsetDateTime, id: &str) -> Vec<u8> {
    let mut key = expiry_prefix(expires).to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<T, StoreError> {
    match tree.get(key)? {
        Some(bytes) => Ok(serde_json::from_slice(&bytes)?),
        None => Err(StoreError::NotFound),
    }
}

/// Replaces the record at `key` if its stored `version` is `version - 1`.
fn swap_versioned<T: Serialize>(tree: &sled::Tree, key: &[u8], record: &T, version: u64) -> Result<(), StoreError> {
    let Some(old) = tree.get(key)? else {
        return Err(StoreError::NotFound);
    };
    #[derive(serde::Deserialize)]
    struct Versioned {
        version: u64,
    }
    let stored: Versioned = serde_json::from_slice(&old)?;
    if version == 0 || stored.version != version - 1 {
        return Err(StoreError::Conflict("the record changed meanwhile"));
    }
    match tree.compare_and_swap(key, Some(old), Some(serde_json::to_vec(record)?))? {
        Ok(()) => Ok(()),
        Err(_) => Err(StoreError::Conflict("the record changed meanwhile")),
    }
}

fn account_key_index(endpoint: &Name, thumbprint: &str) -> Vec<u8> {
    let mut key = endpoint.as_str().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(thumbprint.as_bytes());
    key
}

/// Removes key-index entries that a crash left pointing at no account (the key was claimed and
/// the account never written) or at an account that has another key now (a key change stopped
/// between claiming the new key and updating the account). Either would refuse that key for
/// good. Runs at open, when no request is between those steps; returns how many went.
pub(crate) fn repair_account_keys(trees: &AcmeTrees) -> Result<u64, StoreError> {
    /// The fields the check needs: serde skips the rest of the record unparsed.
    #[derive(serde::Deserialize)]
    struct KeyHolder {
        endpoint: Name,
        thumbprint: String,
    }
    let mut removed = 0;
    for entry in trees.account_keys.iter() {
        let (index, id) = entry?;
        let points_home = match trees.accounts.get(&id)? {
            None => false,
            Some(bytes) => match serde_json::from_slice::<KeyHolder>(&bytes) {
                Ok(holder) => account_key_index(&holder.endpoint, &holder.thumbprint) == index.as_ref(),
                // Not this repair's business: a record it cannot read is left as it is.
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable ACME account record; its key index entry is kept");
                    true
                }
            },
        };
        if !points_home {
            trees.account_keys.remove(&index)?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::warn!(
            entries = removed,
            "removed ACME account-key index entries left by a crash"
        );
    }
    Ok(removed)
}

fn order_index(order: &OrderRecord) -> Vec<u8> {
    let mut key = order.account_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&expiry_prefix(order.created_at));
    key.extend_from_slice(order.id.as_bytes());
    key
}

fn authz_prefix(account_id: &str, identifier: &Identifier, wildcard: bool) -> Vec<u8> {
    let mut key = account_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(
        format!(
            "{}:{}{}",
            identifier.kind(),
            identifier.to_string().to_ascii_lowercase(),
            if wildcard { "*" } else { "" }
        )
        .as_bytes(),
    );
    key.push(0);
    key
}

#[async_trait]
impl AcmeStore for SledStore {
    async fn insert_account(&self, account: &AccountRecord) -> Result<(), StoreError> {
        let trees = self.acme();
        let index = account_key_index(&account.endpoint, &account.thumbprint);
        // Claim the key first: of two newAccount requests racing with one key, one wins.
        if trees
            .account_keys
            .compare_and_swap(&index, None::<&[u8]>, Some(account.id.as_bytes()))?
            .is_err()
        {
            return Err(StoreError::Conflict("the key already has an account"));
        }
        trees
            .accounts
            .insert(account.id.as_bytes(), serde_json::to_vec(account)?)?;
        self.durable().await
    }

    async fn account(&self, id: &str) -> Result<AccountRecord, StoreError> {
        get(&self.acme().accounts, id.as_bytes())
    }

    async fn account_by_thumbprint(
        &self,
        endpoint: &Name,
        thumbprint: &str,
    ) -> Result<Option<AccountRecord>, StoreError> {
        let trees = self.acme();
        let Some(id) = trees.account_keys.get(account_key_index(endpoint, thumbprint))? else {
            return Ok(None);
        };
        match get(&trees.accounts, &id) {
            Ok(account) => Ok(Some(account)),
            // The key was claimed and the account not written yet (or a crash between).
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn update_account(&self, account: &AccountRecord) -> Result<(), StoreError> {
        swap_versioned(&self.acme().accounts, account.id.as_bytes(), account, account.version)?;
        self.durable().await
    }

    async fn change_account_key(&self, old_thumbprint: &str, account: &AccountRecord) -> Result<(), StoreError> {
        let trees = self.acme();
        let new_index = account_key_index(&account.endpoint, &account.thumbprint);
        if trees
            .account_keys
            .compare_and_swap(&new_index, None::<&[u8]>, Some(account.id.as_bytes()))?
            .is_err()
        {
            return Err(StoreError::Conflict("the new key already has an account"));
        }
        if let Err(e) = swap_versioned(&trees.accounts, account.id.as_bytes(), account, account.version) {
            trees.account_keys.remove(&new_index)?;
            return Err(e);
        }
        trees
            .account_keys
            .remove(account_key_index(&account.endpoint, old_thumbprint))?;
        self.durable().await
    }

    async fn insert_order(&self, order: &OrderRecord, new_authorizations: &[AuthzRecord]) -> Result<(), StoreError> {
        let trees = self.acme();
        let (orders_by_expiry, authzs_by_expiry) = (
            self.db().open_tree(ORDERS_BY_EXPIRY)?,
            self.db().open_tree(AUTHZS_BY_EXPIRY)?,
        );
        for authz in new_authorizations {
            authzs_by_expiry.insert(expiry_index(authz.expires, &authz.id), &[])?;
            trees.authzs.insert(authz.id.as_bytes(), serde_json::to_vec(authz)?)?;
        }
        orders_by_expiry.insert(expiry_index(order.expires, &order.id), &[])?;
        trees.orders.insert(order.id.as_bytes(), serde_json::to_vec(order)?)?;
        trees.orders_by_account.insert(order_index(order), &[])?;
        Ok(())
    }

    async fn order(&self, id: &str) -> Result<OrderRecord, StoreError> {
        get(&self.acme().orders, id.as_bytes())
    }

    async fn update_order(&self, order: &OrderRecord) -> Result<(), StoreError> {
        swap_versioned(&self.acme().orders, order.id.as_bytes(), order, order.version)
    }

    async fn orders_of_account(
        &self,
        account_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OrderPage, StoreError> {
        let limit = limit.clamp(1, MAX_ORDER_PAGE);
        let mut prefix = account_id.as_bytes().to_vec();
        prefix.push(0);
        let start = match after {
            Some(cursor) => {
                let mut key = prefix.clone();
                key.extend_from_slice(&hex::decode(cursor).map_err(|_| StoreError::Conflict("malformed cursor"))?);
                std::ops::Bound::Excluded(key)
            }
            None => std::ops::Bound::Included(prefix.clone()),
        };
        let mut suffixes = Vec::with_capacity(limit + 1);
        for entry in self.acme().orders_by_account.range((start, std::ops::Bound::Unbounded)) {
            let (key, _) = entry?;
            if !key.starts_with(&prefix) || suffixes.len() > limit {
                break;
            }
            suffixes.push(key[prefix.len()..].to_vec());
        }
        let more = suffixes.len() > limit;
        suffixes.truncate(limit);
        let page = OrderPage {
            next: more.then(|| hex::encode(suffixes.last().map(Vec::as_slice).unwrap_or_default())),
            ids: suffixes
                .iter()
                .map(|suffix| String::from_utf8_lossy(suffix.get(8..).unwrap_or_default()).into_owned())
                .collect(),
        };
        Ok(page)
    }

    async fn authorization(&self, id: &str) -> Result<AuthzRecord, StoreError> {
        get(&self.acme().authzs, id.as_bytes())
    }

    async fn update_authorization(&self, authz: &AuthzRecord) -> Result<(), StoreError> {
        let trees = self.acme();
        swap_versioned(&trees.authzs, authz.id.as_bytes(), authz, authz.version)?;
        self.db()
            .open_tree(AUTHZS_BY_EXPIRY)?
            .insert(expiry_index(authz.expires, &authz.id), &[])?;
        if authz.status == AuthzStatus::Valid {
            let mut index = authz_prefix(&authz.account_id, &authz.identifier, authz.wildcard);
            index.extend_from_slice(&expiry_prefix(authz.expires));
            index.extend_from_slice(authz.id.as_bytes());
            trees.authzs_by_account.insert(index, &[])?;
        }
        Ok(())
    }

    async fn reusable_authorization(
        &self,
        account_id: &str,
        identifier: &Identifier,
        wildcard: bool,
        valid_until: OffsetDateTime,
    ) -> Result<Option<AuthzRecord>, StoreError> {
        let trees = self.acme();
        let prefix = authz_prefix(account_id, identifier, wildcard);
        // Newest expiry last: walk backwards and take the first that is still valid.
        for entry in trees.authzs_by_account.scan_prefix(&prefix).rev() {
            let (key, _) = entry?;
            let Some(id) = key.get(prefix.len() + 8..) else {
                continue;
            };
            let authz: AuthzRecord = match get(&trees.authzs, id) {
                Ok(authz) => authz,
                Err(StoreError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            if authz.status == AuthzStatus::Valid && authz.expires > valid_until {
                return Ok(Some(authz));
            }
            if authz.expires <= valid_until {
                break;
            }
        }
        Ok(None)
    }

    async fn sweep_acme(&self, expired_before: OffsetDateTime) -> Result<AcmeSweep, StoreError> {
        let trees = self.acme();
        let mut swept = AcmeSweep::default();
        let end = expiry_prefix(expired_before);
        let orders_by_expiry = self.db().open_tree(ORDERS_BY_EXPIRY)?;
        drain_below(&orders_by_expiry, &end, SWEEP_BATCH, |key| {
            let id = &key[8..];
            match get::<OrderRecord>(&trees.orders, id) {
                Ok(order) if order.expires < expired_before => {
                    trees.orders_by_account.remove(order_index(&order))?;
                    trees.orders.remove(id)?;
                    swept.orders += 1;
                    Ok(())
                }
                Ok(_) | Err(StoreError::NotFound) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await?;
        let authzs_by_expiry = self.db().open_tree(AUTHZS_BY_EXPIRY)?;
        drain_below(&authzs_by_expiry, &end, SWEEP_BATCH, |key| {
            let id = &key[8..];
            match get::<AuthzRecord>(&trees.authzs, id) {
                Ok(authz) if authz.expires < expired_before => {
                    let mut index = authz_prefix(&authz.account_id, &authz.identifier, authz.wildcard);
                    index.extend_from_slice(&expiry_prefix(authz.expires));
                    index.extend_from_slice(authz.id.as_bytes());
                    trees.authzs_by_account.remove(index)?;
                    trees.authzs.remove(id)?;
                    swept.authorizations += 1;
                    Ok(())
                }
                // Not expired after all (it became valid and got a later expiry): only this
                // stale index entry goes.
                Ok(_) | Err(StoreError::NotFound) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await?;
        Ok(swept)
    }

    async fn insert_eab_key(&self, key: &EabKeyRecord) -> Result<(), StoreError> {
        let trees = self.acme();
        if trees
            .eab_keys
            .compare_and_swap(key.key_id.as_bytes(), None::<&[u8]>, Some(serde_json::to_vec(key)?))?
            .is_err()
        {
            return Err(StoreError::Conflict("an EAB key with this id exists"));
        }
        self.durable().await
    }

    async fn eab_key(&self, key_id: &str) -> Result<EabKeyRecord, StoreError> {
        get(&self.acme().eab_keys, key_id.as_bytes())
    }

    async fn eab_keys(&self, endpoint: Option<&Name>) -> Result<Vec<EabKeyRecord>, StoreError> {
        let mut keys = Vec::new();
        for entry in self.acme().eab_keys.iter() {
            let (_, bytes) = entry?;
            let key: EabKeyRecord = serde_json::from_slice(&bytes)?;
            if endpoint.is_none_or(|e| *e == key.endpoint) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    async fn bind_eab_key(&self, key_id: &str, account_id: &str) -> Result<(), StoreError> {
        let tree = &self.acme().eab_keys;
        let Some(old) = tree.get(key_id.as_bytes())? else {
            return Err(StoreError::NotFound);
        };
        let mut key: EabKeyRecord = serde_json::from_slice(&old)?;
        if key.account_id.is_some() {
            return Err(StoreError::Conflict("the EAB key was used already"));
        }
        key.account_id = Some(account_id.to_owned());
        if tree
            .compare_and_swap(key_id.as_bytes(), Some(old), Some(serde_json::to_vec(&key)?))?
            .is_err()
        {
            return Err(StoreError::Conflict("the EAB key was used already"));
        }
        self.durable().await
    }

    async fn unbind_eab_key(&self, key_id: &str, account_id: &str) -> Result<(), StoreError> {
        let tree = &self.acme().eab_keys;
        let Some(old) = tree.get(key_id.as_bytes())? else {
            return Err(StoreError::NotFound);
        };
        let mut key: EabKeyRecord = serde_json::from_slice(&old)?;
        if key.account_id.as_deref() != Some(account_id) {
            return Err(StoreError::Conflict("the EAB key is bound to another account"));
        }
        key.account_id = None;
        if tree
            .compare_and_swap(key_id.as_bytes(), Some(old), Some(serde_json::to_vec(&key)?))?
            .is_err()
        {
            return Err(StoreError::Conflict("the EAB key changed meanwhile"));
        }
        self.durable().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::AccountStatus;

    fn account(id: &str, thumbprint: &str) -> AccountRecord {
        AccountRecord {
            id: id.into(),
            endpoint: Name::new("default").unwrap(),
            jwk: "{}".into(),
            thumbprint: thumbprint.into(),
            contact: Vec::new(),
            status: AccountStatus::Valid,
            terms_agreed: true,
            eab_key_id: None,
            created_at: OffsetDateTime::now_utc(),
            version: 1,
        }
    }

    /// What a crash can leave in the key index, and what opening the store does with it.
    #[tokio::test]
    async fn open_removes_key_index_entries_left_by_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Name::new("default").unwrap();
        let moved = account("acct-moved", "key-now");
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.insert_account(&account("acct-good", "key-good")).await.unwrap();
            store.insert_account(&moved).await.unwrap();
            let keys = &store.acme().account_keys;
            // newAccount claimed the key, then the process died before writing the account.
            keys.insert(
                account_key_index(&endpoint, "key-orphan"),
                "acct-never-written".as_bytes(),
            )
            .unwrap();
            // keyChange claimed the new key, then died before updating the account.
            keys.insert(
                account_key_index(&endpoint, "key-half-changed"),
                "acct-moved".as_bytes(),
            )
            .unwrap();
            store.db().flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let cases = [
            ("good_account_key", "key-good", Some("acct-good")),
            ("good_current_key", "key-now", Some("acct-moved")),
            ("bad_claimed_never_written", "key-orphan", None),
            ("bad_half_changed_key", "key-half-changed", None),
        ];
        for (case, thumbprint, want) in cases {
            let got = store
                .acme()
                .account_keys
                .get(account_key_index(&endpoint, thumbprint))
                .unwrap();
            assert_eq!(got.as_deref(), want.map(str::as_bytes), "case {case}");
        }
        // The orphaned key can have an account again.
        store
            .insert_account(&account("acct-retry", "key-orphan"))
            .await
            .unwrap();
        let found = store.account_by_thumbprint(&endpoint, "key-orphan").await.unwrap();
        assert_eq!(found.map(|a| a.id).as_deref(), Some("acct-retry"));
    }
}
