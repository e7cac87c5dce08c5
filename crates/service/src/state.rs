//! `AppState`: what every handler shares: the store and the settings.

use persistence::Store;

use crate::config::Settings;

/// Shared, read-only application state.
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) settings: Settings,
}
