//! `AppState`: what every handler shares: the store, the settings, and the documents rendered
//! once per base URL.

use std::sync::{Arc, PoisonError, RwLock};

use persistence::Store;

use crate::config::Settings;

/// Shared, read-only application state.
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) settings: Settings,
    /// The CapabilityStatement, rendered once per base URL (`capabilities::rendered`).
    pub(crate) capabilities: PerBase,
    /// Told when a bulk export is kicked off here, so this replica's exporter starts at once.
    pub(crate) exports: Arc<tokio::sync::Notify>,
}

/// Most base URLs whose document is kept (a server behind several host names); past that, the
/// others are rendered per request.
const KEPT_BASES: usize = 8;

/// A text that changes only with the build and the settings, kept per base URL (rendered at
/// start when `CAREPLAN_BASE_URL` is set, else on the first request for each host name).
#[derive(Default)]
pub(crate) struct PerBase(RwLock<Vec<(String, Arc<str>)>>);

impl PerBase {
    /// The text for `base`, rendering it with `render` the first time.
    pub(crate) fn get_or_render(&self, base: &str, render: impl FnOnce() -> String) -> Arc<str> {
        let kept = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, text)) = kept.iter().find(|(b, _)| b == base) {
            return text.clone();
        }
        drop(kept);
        let text: Arc<str> = Arc::from(render());
        let mut kept = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < KEPT_BASES && !kept.iter().any(|(b, _)| b == base) {
            kept.push((base.to_owned(), text.clone()));
        }
        text
    }
}
