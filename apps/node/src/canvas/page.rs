//! The page canvas mode shows: a full-size `<canvas id="canvas">` under a `<div id="root">`, for the agent
//! to draw on with `screen.eval`. Served by the node itself on a loopback port, so it needs no network and
//! no allow-list entry.

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// Stops the page server when dropped.
struct StopOnDrop(Option<oneshot::Sender<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

const CANVAS_HTML: &str = r#"<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>Lanyard Canvas</title>
<style>
  html, body { margin: 0; height: 100%; overflow: hidden; background: #fff; }
  #canvas { position: fixed; inset: 0; width: 100vw; height: 100vh; }
  #root { position: fixed; inset: 0; }
</style>
</head>
<body>
<canvas id="canvas"></canvas>
<div id="root"></div>
<script>
  // The canvas has as many pixels as the window, so drawing coordinates are screen pixels.
  const canvas = document.getElementById("canvas");
  function fit() { canvas.width = innerWidth; canvas.height = innerHeight; }
  fit();
  addEventListener("resize", fit);
</script>
</body>
</html>
"#;

/// The running page server.
pub struct CanvasPage {
    pub url: String,
    _stop: StopOnDrop,
}

impl CanvasPage {
    pub async fn serve() -> std::io::Result<CanvasPage> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let app = Router::new().route("/", get(|| async { Html(CANVAS_HTML) }));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(CanvasPage { url: format!("http://{addr}/"), _stop: StopOnDrop(Some(stop)) })
    }
}
