//! An endpoint's validation pool: at most `workers` validations run at once and at most
//! `queue` more wait for a worker. A challenge that finds no place is refused before anything
//! is written (the server answers `rateLimited` and the challenge stays pending), so neither
//! waiting tasks nor their memory grow with what clients send.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounded pool.
#[derive(Debug)]
pub struct ValidationPool {
    workers: Arc<Semaphore>,
    places: Arc<Semaphore>,
}

/// A place in the pool (running or waiting), held until its validation has finished.
#[derive(Debug)]
pub struct Place {
    _place: OwnedSemaphorePermit,
    workers: Arc<Semaphore>,
}

impl ValidationPool {
    /// `workers` validations at once (at least one), `queue` more waiting.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            workers: Arc::new(Semaphore::new(workers)),
            places: Arc::new(Semaphore::new(
                workers.saturating_add(queue).min(Semaphore::MAX_PERMITS),
            )),
        }
    }

    /// A place for one more validation, or `None` when every worker is busy and the queue is
    /// full.
    pub fn try_enter(&self) -> Option<Place> {
        let place = Arc::clone(&self.places).try_acquire_owned().ok()?;
        Some(Place {
            _place: place,
            workers: Arc::clone(&self.workers),
        })
    }
}

impl Place {
    /// Waits for a worker, then runs `validation`; the place is given up when it ends.
    pub async fn run<F: Future>(self, validation: F) -> F::Output {
        // The semaphore is never closed, so acquiring only waits; were it closed, running
        // without a worker is the harmless way out.
        let _worker = Arc::clone(&self.workers).acquire_owned().await.ok();
        validation.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_are_workers_plus_queue_and_come_back_when_validations_end() {
        let pool = ValidationPool::new(2, 1);
        let held: Vec<Place> = (0..3).map(|_| pool.try_enter().expect("a place")).collect();
        assert!(pool.try_enter().is_none(), "two running and one waiting fill the pool");
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let mut held = held.into_iter();
        let first = held.next().expect("three places");
        let running = tokio::spawn(first.run(async move {
            let _ = wait.await;
        }));
        drop(held);
        assert!(pool.try_enter().is_some(), "dropped places come back");
        let _ = release.send(());
        running.await.expect("the validation ends");
        let again: Vec<_> = (0..3).filter_map(|_| pool.try_enter()).collect();
        assert_eq!(again.len(), 3, "a finished validation gives its place back");
    }

    #[tokio::test]
    async fn at_most_workers_run_at_once() {
        let pool = ValidationPool::new(1, 5);
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let place = pool.try_enter().expect("a place");
                let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                tokio::spawn(place.run(async move {
                    let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }))
            })
            .collect();
        for task in tasks {
            task.await.expect("a validation");
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
