//! [`AdminTokenStore`] on sled: one tree, id -> record (JSON).

use async_trait::async_trait;

use crate::StoreError;
use crate::admin_tokens::{AdminTokenRecord, AdminTokenStore};
use crate::sled_backend::SledStore;

const TREE: &str = "admin_tokens";

#[async_trait]
impl AdminTokenStore for SledStore {
    async fn insert_admin_token(&self, token: &AdminTokenRecord) -> Result<(), StoreError> {
        let tree = self.db().open_tree(TREE)?;
        if tree
            .compare_and_swap(
                token.id.as_bytes(),
                None as Option<&[u8]>,
                Some(serde_json::to_vec(token)?),
            )?
            .is_err()
        {
            return Err(StoreError::Conflict("an admin token with this id exists"));
        }
        self.durable().await
    }

    async fn admin_token(&self, id: &str) -> Result<AdminTokenRecord, StoreError> {
        match self.db().open_tree(TREE)?.get(id.as_bytes())? {
            Some(bytes) => Ok(serde_json::from_slice(&bytes)?),
            None => Err(StoreError::NotFound),
        }
    }

    async fn admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        let mut tokens = Vec::new();
        for entry in self.db().open_tree(TREE)?.iter() {
            let (_, bytes) = entry?;
            tokens.push(serde_json::from_slice(&bytes)?);
        }
        Ok(tokens)
    }

    async fn remove_admin_token(&self, id: &str) -> Result<(), StoreError> {
        if self.db().open_tree(TREE)?.remove(id.as_bytes())?.is_none() {
            return Err(StoreError::NotFound);
        }
        self.durable().await
    }
}
