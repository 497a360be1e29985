//! Process signals that stop the server (SIGHUP, which reloads the Noise keys, is
//! [`crate::reload::reload_on_hangup`]).

/// Completes on ctrl-c (SIGINT) or SIGTERM. If a handler cannot be installed, that signal is
/// logged and ignored rather than stopping the server at once.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!("received ctrl-c"),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for ctrl-c");
                std::future::pending::<()>().await;
            }
        }
    };
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
                tracing::info!("received SIGTERM");
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
