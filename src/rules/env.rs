//! Environment variables: which names may carry an app's port.

/// Why an app's port may not go in environment variable `name`
/// (`port_env`): the daemon sets it itself (`PMD_*`, `NODE_APP_INSTANCE`,
/// `PMDAEMON_HOME`), or replacing it breaks the app's start (`PATH`,
/// `HOME`). None when the name is free.
pub fn reserved_port_env(name: &str) -> Option<&'static str> {
    if name.starts_with("PMD_") || name == "NODE_APP_INSTANCE" || name == crate::HOME_ENV {
        Some("the daemon sets it for every app")
    } else if matches!(
        name,
        "PATH" | "HOME" | "USER" | "SHELL" | "LD_LIBRARY_PATH" | "LD_PRELOAD"
    ) {
        Some("the app and its interpreter need it as it is")
    } else {
        None
    }
}
