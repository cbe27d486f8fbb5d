//! The `--metrics` endpoint: `GET /metrics` over HTTP/1.1, served by hyper on a current-thread
//! tokio runtime in a thread of its own, away from the shards' cores and executors.
//!
//! Every connection is closed after one response (`Connection: close`): a scrape is one request
//! every few seconds, and simple clients (ours in the tests, `curl`, shell scripts) may read the
//! response to end of stream.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::cluster::ClusterStats;
use super::publish::Published;
use super::text::render;

/// The exposition format's content type (Prometheus text, version 0.0.4).
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4";

/// A client gets this long to send its request head (slow or idle connections are dropped).
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// And this long for the whole exchange, so a client that never reads cannot hold a task.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `GET /metrics` on `addr` from a thread of its own. Binds before returning, so a bad
/// address fails start-up; returns the bound address (port 0 picks one). The cluster peer's
/// figures follow the shards' when the node has one.
pub fn serve(
    addr: SocketAddr,
    shards: Vec<Arc<Published>>,
    cluster: Option<Arc<ClusterStats>>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let listener = {
        let _in_runtime = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let sources = Arc::new(Sources {
        shards: shards.into(),
        cluster,
    });
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || runtime.block_on(accept(listener, sources)))?;
    Ok(bound)
}

/// What a scrape reads.
struct Sources {
    shards: Box<[Arc<Published>]>,
    cluster: Option<Arc<ClusterStats>>,
}

async fn accept(listener: tokio::net::TcpListener, sources: Arc<Sources>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, or a connection reset before accept: keep serving.
                log::debug!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let sources = Arc::clone(&sources);
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, Arc::clone(&sources)));
            let conn = http1::Builder::new()
                .keep_alive(false)
                .title_case_headers(true)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("metrics: {e}"),
                Err(_) => log::debug!("metrics: connection timed out"),
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    sources: Arc<Sources>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::new(Full::default());
    if req.method() == Method::GET && req.uri().path() == "/metrics" {
        let mut text = render(&sources.shards);
        if let Some(c) = &sources.cluster {
            c.render(&mut text);
        }
        *resp.body_mut() = Full::new(Bytes::from(text));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
    } else {
        *resp.status_mut() = StatusCode::NOT_FOUND;
    }
    Ok(resp)
}
