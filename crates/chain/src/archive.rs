//! This node's own index of tasks pruned from the consensus state: the ledger keeps a task for
//! `task_retention_blocks` after it became final, then hands its last record to the executor,
//! which stores it here (before the block's state is persisted, so a crash re-archives it on
//! replay). The RPC answers `task` lookups from the state first, then from here, so old tasks
//! still answer while the state stays bounded. Not part of consensus: a node that syncs from
//! genesis rebuilds it by replay.
use crate::{Digest, Error};
use commonware_storage::archive::{Archive as _, Identifier, immutable};
use futures::{future::BoxFuture, lock::Mutex};
use polylink_ledger::Task;
use polylink_types::TaskId;

type Store<E> = immutable::Archive<E, Digest, Task>;

/// Read access to the archived tasks, as the RPC needs it (whatever the runtime).
pub trait TaskIndex: Send + Sync {
    /// The archived record of `id`, if this node pruned it.
    fn task<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Option<Task>>;
}

/// The archive of pruned tasks, keyed by task id.
pub(crate) struct TaskArchive<E: commonware_storage::Context> {
    store: Mutex<Option<Store<E>>>,
}

fn key(id: &TaskId) -> Digest {
    commonware_cryptography::sha256::Digest(id.0)
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("task archive: {e}"))
}

impl<E: commonware_storage::Context> TaskArchive<E> {
    /// Opens (or creates) the archive with `config`.
    pub(crate) async fn init(context: E, config: immutable::Config<()>) -> Result<Self, Error> {
        let store = Store::init(context, config).await.map_err(storage)?;
        Ok(Self { store: Mutex::new(Some(store)) })
    }

    /// Stores `tasks` (skipping any already kept, as after a replay) and syncs them to disk.
    pub(crate) async fn keep(&self, tasks: Vec<(TaskId, Task)>) -> Result<(), Error> {
        if tasks.is_empty() {
            return Ok(());
        }
        let mut guard = self.store.lock().await;
        let mut store = guard.take().ok_or_else(|| storage("lost after an earlier failure"))?;
        for (id, task) in tasks {
            if store.has(Identifier::Key(&key(&id))).await.map_err(storage)? {
                continue;
            }
            let index = store.last_index().map_or(0, |last| last + 1);
            store = store.put(index, key(&id), &task).await.map_err(storage)?;
        }
        *guard = Some(store.sync().await.map_err(storage)?);
        Ok(())
    }
}

impl<E: commonware_storage::Context> TaskIndex for TaskArchive<E> {
    fn task<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Option<Task>> {
        Box::pin(async move {
            let guard = self.store.lock().await;
            guard.as_ref()?.get(Identifier::Key(&key(id))).await.ok().flatten()
        })
    }
}
