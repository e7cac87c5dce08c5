//! `AppState`: what every handler shares: the store and the settings.

use persistence::Store;

use crate::capabilities::Rendered;
use crate::config::Settings;

/// Shared, read-only application state.
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) settings: Settings,
    /// The CapabilityStatement, rendered once per base URL.
    pub(crate) capabilities: Rendered,
}
