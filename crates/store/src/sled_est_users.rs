//! [`EstUserStore`] on sled: one tree `est_users`, keyed `endpoint NUL username`.

use async_trait::async_trait;
use certgate_core::Name;

use crate::StoreError;
use crate::est_users::{EstUserRecord, EstUserStore};
use crate::sled_backend::SledStore;

/// The EST user tree, opened with the database.
#[derive(Debug)]
pub(crate) struct EstUserTrees {
    /// `endpoint NUL username` -> record (JSON).
    pub(crate) users: sled::Tree,
}

impl EstUserTrees {
    /// Opens (or creates) the tree in `db`.
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            users: db.open_tree("est_users")?,
        })
    }
}

fn user_key(endpoint: &Name, username: &str) -> Vec<u8> {
    let mut key = endpoint.as_str().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(username.as_bytes());
    key
}

#[async_trait]
impl EstUserStore for SledStore {
    async fn insert_est_user(&self, user: &EstUserRecord) -> Result<(), StoreError> {
        let tree = &self.est_user_trees().users;
        if tree
            .compare_and_swap(
                user_key(&user.endpoint, &user.username),
                None::<&[u8]>,
                Some(serde_json::to_vec(user)?),
            )?
            .is_err()
        {
            return Err(StoreError::Conflict("the endpoint has a user of this name"));
        }
        self.durable().await
    }

    async fn est_user(&self, endpoint: &Name, username: &str) -> Result<EstUserRecord, StoreError> {
        match self.est_user_trees().users.get(user_key(endpoint, username))? {
            Some(bytes) => Ok(serde_json::from_slice(&bytes)?),
            None => Err(StoreError::NotFound),
        }
    }

    async fn est_users(&self, endpoint: Option<&Name>) -> Result<Vec<EstUserRecord>, StoreError> {
        let tree = &self.est_user_trees().users;
        let entries = match endpoint {
            Some(endpoint) => {
                let mut prefix = endpoint.as_str().as_bytes().to_vec();
                prefix.push(0);
                tree.scan_prefix(prefix)
            }
            None => tree.iter(),
        };
        let mut users = Vec::new();
        for entry in entries {
            let (_, bytes) = entry?;
            users.push(serde_json::from_slice(&bytes)?);
        }
        Ok(users)
    }

    async fn update_est_user(&self, user: &EstUserRecord) -> Result<(), StoreError> {
        let tree = &self.est_user_trees().users;
        let key = user_key(&user.endpoint, &user.username);
        let Some(old) = tree.get(&key)? else {
            return Err(StoreError::NotFound);
        };
        let stored: EstUserRecord = serde_json::from_slice(&old)?;
        if stored.version + 1 != user.version {
            return Err(StoreError::Conflict("the user changed meanwhile"));
        }
        if tree
            .compare_and_swap(&key, Some(old), Some(serde_json::to_vec(user)?))?
            .is_err()
        {
            return Err(StoreError::Conflict("the user changed meanwhile"));
        }
        self.durable().await
    }

    async fn remove_est_user(&self, endpoint: &Name, username: &str) -> Result<(), StoreError> {
        if self
            .est_user_trees()
            .users
            .remove(user_key(endpoint, username))?
            .is_none()
        {
            return Err(StoreError::NotFound);
        }
        self.durable().await
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    fn user(endpoint: &str, name: &str) -> EstUserRecord {
        EstUserRecord {
            endpoint: Name::new(endpoint).unwrap(),
            username: name.into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            created_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            version: 1,
        }
    }

    #[tokio::test]
    async fn add_list_update_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.insert_est_user(&user("default", "alice")).await.unwrap();
        store.insert_est_user(&user("default", "bob")).await.unwrap();
        store.insert_est_user(&user("factory", "alice")).await.unwrap();
        assert!(matches!(
            store.insert_est_user(&user("default", "alice")).await,
            Err(StoreError::Conflict(_))
        ));
        let default = Name::new("default").unwrap();
        let names: Vec<String> = store
            .est_users(Some(&default))
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
        assert_eq!(store.est_users(None).await.unwrap().len(), 3);

        let mut changed = user("default", "alice");
        changed.password_hash = "$argon2id$new".into();
        changed.version = 2;
        store.update_est_user(&changed).await.unwrap();
        assert!(matches!(
            store.update_est_user(&changed).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            store.est_user(&default, "alice").await.unwrap().password_hash,
            "$argon2id$new"
        );

        store.remove_est_user(&default, "alice").await.unwrap();
        assert!(matches!(
            store.est_user(&default, "alice").await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.remove_est_user(&default, "alice").await,
            Err(StoreError::NotFound)
        ));
        // The other endpoint's alice is untouched: users are per endpoint.
        assert!(store.est_user(&Name::new("factory").unwrap(), "alice").await.is_ok());
    }
}
