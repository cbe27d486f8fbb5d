//! What `--redis` and its companions become: typed settings, parsed once at start-up.

use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

/// How this node takes part in a cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub redis: RedisEndpoint,
    /// `--redis-password-file`, read at start-up (else the URL's own, if any).
    pub password: Option<String>,
    /// `--redis-ca`, read at start-up: the roots a rediss:// server's certificate must chain
    /// to (else the system's).
    pub tls_ca: Option<Vec<u8>>,
    /// `--node-id`: names this node's changes; the last tie-break of two equal versions.
    pub node_id: String,
    /// `--redis-prefix`: every key of this cluster starts with it.
    pub prefix: String,
    /// `--redis-queue`: changes kept while Redis is unreachable.
    pub queue_limit: usize,
    /// `--redis-publish-interval-ms`: how often this node's changes are written to Redis.
    pub publish_interval: Duration,
    /// `--redis-stream-length`: about how many changes the change stream keeps (a node
    /// disconnected for longer than they cover reloads the whole state).
    pub stream_length: usize,
    /// `--max-clock-skew-ms`: how far apart the nodes' clocks may be.
    pub max_skew_ms: u64,
    /// How long Redis keeps a removal: longer than any binding it removes can live, so that
    /// no delayed registration older than the removal is ever written after it is gone.
    pub tombstone_ttl: Duration,
}

/// Where the primary is.
#[derive(Clone, Debug)]
pub enum RedisEndpoint {
    /// `redis://[user:password@]HOST:PORT[/DB]`, or `rediss://...` (TLS).
    Direct(ConnectionInfo),
    /// `sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB]`: ask the Sentinels.
    Sentinel {
        sentinels: Vec<ConnectionInfo>,
        master: String,
        db: i64,
    },
}

/// Parse `--redis`.
pub fn parse_endpoint(url: &str) -> Result<RedisEndpoint, String> {
    if let Some(rest) = url.strip_prefix("sentinel://") {
        return parse_sentinel(rest);
    }
    if !url.starts_with("redis://") && !url.starts_with("rediss://") {
        return Err(format!(
            "--redis {url}: expected redis://HOST:PORT[/DB], rediss://HOST:PORT[/DB] or sentinel://HOST:PORT[,HOST:PORT]/MASTER[/DB]"
        ));
    }
    url.into_connection_info()
        .map(RedisEndpoint::Direct)
        .map_err(|e| format!("--redis {url}: {e}"))
}

impl RedisEndpoint {
    /// Whether the connection to Redis is over TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        matches!(self, RedisEndpoint::Direct(info) if matches!(info.addr, ConnectionAddr::TcpTls { .. }))
    }
}

fn parse_sentinel(rest: &str) -> Result<RedisEndpoint, String> {
    let bad = || {
        format!("--redis sentinel://{rest}: expected sentinel://HOST:PORT[,HOST:PORT]/MASTER[/DB]")
    };
    let (hosts, path) = rest.split_once('/').ok_or_else(bad)?;
    let (master, db) = match path.split_once('/') {
        Some((m, db)) => (m, db.parse::<i64>().map_err(|_| bad())?),
        None => (path, 0),
    };
    if master.is_empty() || hosts.is_empty() {
        return Err(bad());
    }
    let sentinels = hosts
        .split(',')
        .map(|h| format!("redis://{h}").into_connection_info())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", bad()))?;
    Ok(RedisEndpoint::Sentinel {
        sentinels,
        master: master.to_string(),
        db,
    })
}

/// A node id may name a node in keys and values: letters, digits, `.`, `-`, `_`.
pub fn check_node_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--node-id {id:?}: 1 to 64 letters, digits, '.', '-' or '_'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert!(matches!(
            parse_endpoint("redis://127.0.0.1:6379/2"),
            Ok(RedisEndpoint::Direct(i)) if i.redis.db == 2
        ));
        match parse_endpoint("sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/1") {
            Ok(RedisEndpoint::Sentinel {
                sentinels,
                master,
                db,
            }) => {
                assert_eq!(sentinels.len(), 2);
                assert_eq!(master, "mymaster");
                assert_eq!(db, 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_endpoint("sentinel://10.0.0.1:26379").is_err());
        let tls = parse_endpoint("rediss://redis.example.net:6380/1").unwrap();
        assert!(tls.is_tls());
        assert!(!parse_endpoint("redis://x:1").unwrap().is_tls());
        assert!(parse_endpoint("http://x").is_err());
    }

    #[test]
    fn node_ids_are_plain_names() {
        assert!(check_node_id("edge-1.fra").is_ok());
        for bad in ["", "a|b", "a:b", "a b", &"x".repeat(65)] {
            assert!(check_node_id(bad).is_err(), "{bad}");
        }
    }
}
