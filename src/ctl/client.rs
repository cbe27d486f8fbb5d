//! The HTTP side of `sipshard ctl`: one request to the admin API with hyper's client on a
//! current-thread runtime, its body handed over piece by piece (a listing of every binding is
//! never held whole).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// How long to wait for the connection (the API is local or near: a longer wait is an outage).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the API is and how to authenticate to it.
pub struct Client {
    pub addr: String,
    pub token: Option<String>,
}

impl Client {
    /// Send one request; `each` gets the status and the body's pieces as they arrive.
    /// Returns the status.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        each: impl FnMut(StatusCode, &[u8]),
    ) -> Result<StatusCode, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        runtime.block_on(self.exchange(method, path, each))
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        mut each: impl FnMut(StatusCode, &[u8]),
    ) -> Result<StatusCode, String> {
        let unreachable = |e: &dyn std::fmt::Display| {
            format!(
                "cannot reach the admin API at {}: {e} (is sipshard running with --admin {}?)",
                self.addr, self.addr
            )
        };
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&self.addr))
                .await
                .map_err(|_| unreachable(&"timed out"))?
                .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.addr);
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad request: {e}"))?;
        let mut resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("the admin API at {} failed: {e}", self.addr))?;
        let status = resp.status();
        while let Some(frame) = resp.body_mut().frame().await {
            let frame = frame.map_err(|e| format!("the answer was cut: {e}"))?;
            if let Some(data) = frame.data_ref() {
                each(status, data);
            }
        }
        Ok(status)
    }
}
