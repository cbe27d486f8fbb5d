//! `sipshard ctl`: the operators' command line, a client of the admin API ([`crate::admin`],
//! served with `--admin`). Readable tables by default, the API's JSON with `--json`.
//!
//! ```text
//! sipshard ctl bindings                  every binding (streamed)
//! sipshard ctl bindings bob@example.com  one AOR's bindings
//! sipshard ctl unregister bob@example.com [sip:bob@192.0.2.7:5062]
//! sipshard ctl stats | reload | health
//! ```
//!
//! Exit status: 0 done, 1 refused or failed (the reason on stderr), 2 bad usage.

mod client;
mod show;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use hyper::{Method, StatusCode};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

use client::Client;

/// Where the admin API is, when `--admin` is not given to `ctl`.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8060";

/// `sipshard ctl [OPTIONS] COMMAND`.
#[derive(Args, Debug, Clone)]
pub struct CtlArgs {
    /// The admin API's address: what sipshard was started with as `--admin`.
    // Its own id: the server's `--admin` (a socket address) is another argument of the same
    // command line, and clap keys values by id.
    #[arg(
        long = "admin",
        id = "ctl_admin",
        value_name = "HOST:PORT",
        default_value = DEFAULT_ADMIN,
        global = true
    )]
    pub admin: String,

    /// The bearer token, when sipshard was started with `--admin-token-file`.
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,

    /// Print the API's JSON instead of tables (JSON lines for a listing).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum CtlCommand {
    /// List every binding, or one AOR's (`user@domain`).
    Bindings { aor: Option<String> },
    /// Remove an AOR's bindings, or only the one with CONTACT, on every shard (and from the
    /// state directory).
    Unregister {
        aor: String,
        contact: Option<String>,
    },
    /// Every counter and gauge, per shard and for the node.
    Stats,
    /// Reload the users file and the TLS certificate (as SIGHUP does).
    Reload,
    /// Whether the node serves: exit status 0 when every shard serves.
    Health,
}

/// Run one `ctl` command; returns the exit status.
pub fn run(args: &CtlArgs) -> i32 {
    match execute(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sipshard ctl: {e}");
            1
        }
    }
}

fn execute(args: &CtlArgs) -> Result<(), String> {
    let client = Client {
        addr: args.admin.clone(),
        token: read_token(args.token_file.as_ref())?,
    };
    let json = args.json;
    match &args.command {
        CtlCommand::Bindings { aor: None } => list(&client, json),
        CtlCommand::Bindings { aor: Some(aor) } => {
            let v = get_json(&client, Method::GET, &aor_path(aor, None))?;
            show::output(json, &v, show::aor_bindings)
        }
        CtlCommand::Unregister { aor, contact } => {
            let path = aor_path(aor, contact.as_deref());
            let v = get_json(&client, Method::DELETE, &path)?;
            show::output(json, &v, show::removed)
        }
        CtlCommand::Stats => {
            let v = get_json(&client, Method::GET, "/v1/stats")?;
            show::output(json, &v, show::stats)
        }
        CtlCommand::Reload => {
            let v = get_json(&client, Method::POST, "/v1/reload")?;
            show::output(json, &v, show::reloaded)
        }
        CtlCommand::Health => health(&client, json),
    }
}

fn read_token(file: Option<&PathBuf>) -> Result<Option<String>, String> {
    let Some(f) = file else {
        return Ok(None);
    };
    std::fs::read_to_string(f)
        .map(|t| Some(t.trim().to_owned()))
        .map_err(|e| format!("cannot read --token-file {}: {e}", f.display()))
}

/// `/v1/bindings/{aor}` with the AOR (and contact) percent-encoded.
fn aor_path(aor: &str, contact: Option<&str>) -> String {
    let mut path = format!(
        "/v1/bindings/{}",
        utf8_percent_encode(aor, NON_ALPHANUMERIC)
    );
    if let Some(c) = contact {
        path.push_str("?contact=");
        path.extend(utf8_percent_encode(c, NON_ALPHANUMERIC));
    }
    path
}

/// One request whose answer is one JSON value; a refusal is an error with the API's reason.
fn get_json(client: &Client, method: Method, path: &str) -> Result<Value, String> {
    let mut body = Vec::new();
    let status = client.request(method, path, |_, piece| body.extend_from_slice(piece))?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the admin API answered {status} with something not JSON: {e}"))?;
    refused(status, &v)?;
    Ok(v)
}

fn refused(status: StatusCode, v: &Value) -> Result<(), String> {
    if status.is_success() {
        return Ok(());
    }
    let why = v["error"].as_str().unwrap_or("no reason given");
    Err(format!("{why} ({status})"))
}

/// Every binding, printed as the lines arrive.
fn list(client: &Client, json: bool) -> Result<(), String> {
    let mut lines = show::Lines::new(json);
    let mut refusal = Vec::new();
    let status = client.request(Method::GET, "/v1/bindings", |status, piece| {
        if status.is_success() {
            lines.feed(piece);
        } else {
            refusal.extend_from_slice(piece);
        }
    })?;
    if status.is_success() {
        lines.finish();
        return Ok(());
    }
    let v: Value = serde_json::from_slice(&refusal).unwrap_or(Value::Null);
    refused(status, &v)
}

fn health(client: &Client, json: bool) -> Result<(), String> {
    let v = get_json(client, Method::GET, "/health")?;
    show::output(json, &v, show::health)?;
    let mut body = Vec::new();
    let status = client.request(Method::GET, "/ready", |_, p| body.extend_from_slice(p))?;
    if !status.is_success() {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return Err(format!(
            "not ready: {}",
            v["reason"].as_str().unwrap_or("unknown")
        ));
    }
    Ok(())
}
