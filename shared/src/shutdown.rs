//! How a binary learns it should stop: SIGTERM or Ctrl-C, turned into a cancelled token that
//! every part of it watches.

/// Waits for SIGTERM (Kubernetes, `docker stop`) or Ctrl-C, then cancels `shutdown`: the start of
/// a graceful shutdown.
pub async fn cancel_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
    shutdown.cancel();
}
