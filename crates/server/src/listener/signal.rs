//! Process signals: those that stop the server, and SIGHUP, which reloads its Noise keys.

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

/// Reloads the Noise keys through `reloader` on every SIGHUP (after `commucat keys rotate` or
/// `retire`) until the process ends; spawn the returned future beside the server. The handler
/// is installed before this returns, so a SIGHUP arriving once the server listens never takes
/// the default action (terminating the process). A failed reload is logged and recorded by the
/// reloader and the keys in force stay. If the handler cannot be installed, that is logged and
/// SIGHUP is left alone. Needs a Tokio runtime.
pub fn reload_on_hangup(
    reloader: crate::keys::reload::KeyReloader,
) -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let hangups = signal(SignalKind::hangup())
        .map_err(|error| {
            tracing::warn!(%error, "cannot listen for SIGHUP; Noise keys reload on restart only");
        })
        .ok();
    async move {
        let Some(mut hangups) = hangups else { return };
        while hangups.recv().await.is_some() {
            tracing::info!("received SIGHUP: reloading the Noise keys");
            // The outcome is logged and recorded by the reloader.
            let _ = reloader.reload_async().await;
        }
    }
}
