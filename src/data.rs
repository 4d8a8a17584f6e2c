//! The data folder: `registry.sqlite3`, `wal/`, `parquet/` (unless an object store is
//! configured), `tls/`. Commands that touch stored data open it here, the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sunfleet_engine::directory::DeviceDirectory;
use sunfleet_engine::registry::Registry;
use sunfleet_engine::store::{Store, StoreConfig};

/// The default data folder: `./sunfleet-data`.
pub const DEFAULT_DATA_DIR: &str = "sunfleet-data";

/// An open data folder.
pub struct DataFolder {
    pub registry: Arc<Registry>,
    /// Serial → device and time zones, loaded from the registry.
    pub directory: DeviceDirectory,
    pub store: Arc<Store>,
}

pub fn registry_path(root: &Path) -> PathBuf {
    root.join("registry.sqlite3")
}

impl DataFolder {
    /// Opens (creating if needed) the data folder at `root`.
    pub async fn open(root: &Path) -> anyhow::Result<Self> {
        Self::open_with(root, |_| Ok(())).await
    }

    /// Opens the data folder, letting `prepare` change the registry (seed it, say) before
    /// the device directory is loaded from it.
    pub async fn open_with(
        root: &Path,
        prepare: impl FnOnce(&Registry) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let registry = Registry::open(registry_path(root))
            .with_context(|| format!("opening the registry in {}", root.display()))?;
        prepare(&registry)?;
        let directory = DeviceDirectory::new();
        registry.load_directory(&directory)?;
        let store = Store::open(StoreConfig::new(root), directory.clone())
            .await
            .with_context(|| format!("opening the telemetry store in {}", root.display()))?;
        Ok(Self {
            registry: Arc::new(registry),
            directory,
            store: Arc::new(store),
        })
    }
}
