//! What each endpoint answers. Every answer is JSON, an error too (`{"error": "..."}`), but the
//! listing of every binding, which is JSON lines (one binding a line) streamed as it is
//! written, so that a million AORs never make one giant response.
//!
//! ```text
//! GET    /health                          200 while the process answers
//! GET    /ready                           200 when every shard serves, 503 while starting or stopping
//! GET    /v1/bindings                     every live binding, JSON lines
//! GET    /v1/bindings/{aor}               {"aor", "bindings": [...]}, 404 when none
//! DELETE /v1/bindings/{aor}[?contact=URI] {"aor", "removed": N}, 404 when none matched
//! GET    /v1/stats                        every counter and gauge, per shard and node
//! POST   /v1/reload                       users file and TLS certificate, as SIGHUP
//! ```

use std::convert::Infallible;

use futures_lite::stream::BoxedLocal;
use http_body_util::{Either, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::http::State;
use super::{aor, json};
use crate::metrics;

/// A JSON value, or the listing's pieces (which borrow the peer's table as they are written:
/// not `Send`, which hyper's HTTP/1 server on a `LocalSet` does not ask for).
pub type Body = Either<Full<Bytes>, StreamBody<BoxedLocal<Result<Frame<Bytes>, Infallible>>>>;

/// AORs rendered per piece of the streamed listing (the peer's table is borrowed per piece,
/// and the shards' changes are taken in between).
const AORS_PER_PIECE: usize = 512;

pub fn route(req: &Request<Incoming>, state: &std::rc::Rc<State>) -> Response<Body> {
    let path = req.uri().path();
    let method = req.method();
    match (method, path) {
        (&Method::GET, "/health") => health(state),
        (&Method::GET, "/ready") => ready(state),
        _ if !path.starts_with("/v1/") => error(StatusCode::NOT_FOUND, "no such endpoint"),
        _ if !authorized(req, state) => error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (--admin-token-file)",
        ),
        (&Method::GET, "/v1/bindings") => listing(state),
        (&Method::GET, "/v1/stats") => ok(metrics::json::render(&state.ctx.published)),
        (&Method::POST, "/v1/reload") => reload(state),
        (m, p) if p.starts_with("/v1/bindings/") => {
            let written = &p["/v1/bindings/".len()..];
            match *m {
                Method::GET => one_aor(state, written),
                Method::DELETE => remove(state, written, req.uri().query()),
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "use GET or DELETE"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

fn health(state: &State) -> Response<Body> {
    let node = &state.ctx.node;
    ok(json!({
        "status": "ok",
        "shards": node.shards,
        "serving": node.serving(),
        "stopping": node.stopping(),
    }))
}

fn ready(state: &State) -> Response<Body> {
    let node = &state.ctx.node;
    if node.ready() {
        return ok(json!({ "ready": true }));
    }
    let why = if node.stopping() {
        "stopping"
    } else if node.serving() == node.shards {
        "loading the cluster's state from Redis"
    } else {
        "starting"
    };
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "ready": false, "reason": why }),
    )
}

/// With a token configured, `/v1/...` needs `Authorization: Bearer TOKEN` (compared in
/// constant time).
fn authorized(req: &Request<Incoming>, state: &State) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    given.ct_eq(token.as_bytes()).into()
}

/// The AOR written in the path (percent-encoded) and its table key, or why it is no AOR.
fn key_of(state: &State, written: &str) -> Result<(String, Vec<u8>), &'static str> {
    let written = percent_decode_str(written)
        .decode_utf8()
        .map_err(|_| "the AOR is not UTF-8")?
        .into_owned();
    let key = aor::key(state.ctx.identity, &written)?;
    Ok((written, key))
}

fn one_aor(state: &State, written: &str) -> Response<Body> {
    let (written, key) = match key_of(state, written) {
        Ok(k) => k,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let mut peer = state.peer.borrow_mut();
    peer.take_in();
    let now = (state.ctx.clock)().secs();
    let bindings: Vec<Value> = peer
        .table()
        .live_bindings(&key, now)
        .map(|b| json::binding(&key, &b, now))
        .collect();
    if bindings.is_empty() {
        return error(StatusCode::NOT_FOUND, &format!("no bindings for {written}"));
    }
    ok(json!({ "aor": String::from_utf8_lossy(&key), "bindings": bindings }))
}

fn remove(state: &State, written: &str, query: Option<&str>) -> Response<Body> {
    let (written, key) = match key_of(state, written) {
        Ok(k) => k,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let contact = match contact_param(query) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let now = (state.ctx.clock)();
    let removed =
        state
            .peer
            .borrow_mut()
            .unregister(&key, contact.as_deref().map(str::as_bytes), now);
    match removed {
        None => error(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping"),
        Some(0) => error(
            StatusCode::NOT_FOUND,
            &match &contact {
                Some(c) => format!("no binding of {written} with contact {c}"),
                None => format!("no bindings for {written}"),
            },
        ),
        Some(n) => {
            log::info!(
                "admin: removed {n} binding(s) of {written}{}",
                contact
                    .map(|c| format!(" with contact {c}"))
                    .unwrap_or_default()
            );
            ok(json!({ "aor": String::from_utf8_lossy(&key), "removed": n }))
        }
    }
}

/// `contact=URI` from the query (percent-encoded; `+` is a plus, as in telephone numbers).
fn contact_param(query: Option<&str>) -> Result<Option<String>, &'static str> {
    let Some(q) = query else {
        return Ok(None);
    };
    for pair in q.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "contact" {
            let uri = percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| "the contact is not UTF-8")?;
            if uri.is_empty() {
                return Err("contact= needs a URI");
            }
            return Ok(Some(uri.into_owned()));
        }
    }
    Err("the only parameter is contact=URI")
}

fn reload(state: &State) -> Response<Body> {
    match (state.ctx.reload)() {
        Ok(what) => ok(json!({ "reloaded": what })),
        Err(why) => error(StatusCode::INTERNAL_SERVER_ERROR, &why),
    }
}

/// Every live binding as JSON lines, AOR by AOR, written piece by piece as the client reads:
/// the AORs are those in the table when the listing starts (their keys copied once, packed),
/// each with its bindings as of when its piece is written.
fn listing(state: &std::rc::Rc<State>) -> Response<Body> {
    let keys = {
        let mut peer = state.peer.borrow_mut();
        peer.take_in();
        Keys::of(peer.table())
    };
    let state = std::rc::Rc::clone(state);
    let pieces = futures_lite::stream::unfold(0, move |next| {
        let piece = (next < keys.len()).then(|| {
            let end = (next + AORS_PER_PIECE).min(keys.len());
            (Ok(Frame::data(render(&state, &keys, next..end))), end)
        });
        std::future::ready(piece)
    });
    let pieces: BoxedLocal<_> = Box::pin(pieces);
    let mut resp = Response::new(Either::Right(StreamBody::new(pieces)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

/// One piece of the listing: the live bindings of `keys[range]`, a line each.
fn render(state: &State, keys: &Keys, range: std::ops::Range<usize>) -> Bytes {
    let mut peer = state.peer.borrow_mut();
    peer.take_in();
    let now = (state.ctx.clock)().secs();
    let mut out = Vec::with_capacity(range.len() * 256);
    for i in range {
        let key = keys.get(i);
        for b in peer.table().live_bindings(key, now) {
            // Writing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, &json::binding(key, &b, now));
            out.push(b'\n');
        }
    }
    Bytes::from(out)
}

/// The AOR keys of a table, packed in one buffer (a million AORs: tens of megabytes, not a
/// million allocations).
struct Keys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    fn of(table: &crate::location::LocationTable) -> Keys {
        let mut keys = Keys {
            bytes: Vec::new(),
            ends: Vec::with_capacity(table.aor_count()),
        };
        for (aor, _) in table.iter() {
            keys.bytes.extend_from_slice(aor);
            keys.ends.push(keys.bytes.len());
        }
        keys
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

fn ok(v: Value) -> Response<Body> {
    respond(StatusCode::OK, v)
}

fn error(status: StatusCode, why: &str) -> Response<Body> {
    respond(status, json::error(why))
}

fn respond(status: StatusCode, v: Value) -> Response<Body> {
    let mut body = v.to_string();
    body.push('\n');
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
