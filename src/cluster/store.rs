//! The Redis side of the cluster peer: connecting (to a primary, or to the one Sentinel names),
//! writing this node's changes, reading the whole state, and following the change stream. The
//! RESP protocol is redis-rs's; this file only says which commands, and why in that order.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionInfo, RedisConnectionInfo, TlsCertificates, Value,
};

use super::record;
use super::settings::{ClusterSettings, RedisEndpoint};

/// A write keeps the newest version of each binding (last writer wins, the node id breaking
/// ties, exactly the table's rule in numbers) and, only when it changed the key, appends the
/// change to this node's stream: a key and its stream entry change together or not at all,
/// which is what lets a node read the streams' positions, then the keys, then follow from those
/// positions. One call writes a batch (Redis runs a script whole, and one reply answers it).
///
/// Versions are compared as text: a value starts with its version in fixed-width hex and the
/// node id, up to `|` ([`record::HEADER_LEN`]), so the text before `|` orders values the way
/// the numbers do; no number is parsed (that parsing was most of the script's cost). A stored
/// value without that shape is older than anything.
///
/// The changes of one call are one stream entry (a field `r` per change): one XADD per batch
/// instead of one per change, the other half of the script's cost. The stream is trimmed to
/// about `--redis-stream-length` changes: to that many entries divided by the changes in the
/// newest one.
///
/// KEYS: the bindings' keys, then this node's stream. ARGV: each key's value and TTL (ms), then
/// the stream's length bound in changes. Returns how many keys changed.
const WRITE_SCRIPT: &str = r#"
local header = 44
local function order(v)
  local bar = string.find(v, '|', header + 2, true)
  if not bar or string.byte(v, header) ~= 58 then return nil end
  return string.sub(v, 1, bar - 1)
end
local stream = KEYS[#KEYS]
local maxlen = tonumber(ARGV[#ARGV])
local changed = {}
for i = 1, #KEYS - 1 do
  local value, ttl = ARGV[2 * i - 1], ARGV[2 * i]
  local new = order(value)
  if not new then return redis.error_reply('sipshard: malformed value') end
  local cur = redis.call('GET', KEYS[i])
  local old = cur and order(cur)
  if not old or new > old then
    redis.call('SET', KEYS[i], value, 'PX', ttl)
    changed[#changed + 1] = 'r'
    changed[#changed + 1] = value
  end
end
local written = #changed / 2
if written > 0 then
  local entries = math.ceil(maxlen / written)
  redis.call('XADD', stream, 'MAXLEN', '~', entries, '*', unpack(changed))
end
return written
"#;

/// Changes per script call.
const SCRIPT_BATCH: usize = 256;
/// Keys read per SCAN step and values per MGET while loading.
const SCAN_COUNT: usize = 10_000;
/// How long a follower waits on the streams for news before asking again (and looking for new
/// nodes).
const STREAM_BLOCK_MS: usize = 1000;
/// Entries read from the stream at once (each up to [`SCRIPT_BATCH`] changes).
const STREAM_COUNT: usize = 256;

/// A connection to the primary, with the write script loaded on it.
pub struct Primary {
    pub conn: MultiplexedConnection,
    script_sha: String,
}

/// Connect to the primary: the given server, or the one the Sentinels name (asked again at
/// every connection, so a failover is followed by reconnecting).
pub async fn connect(settings: &ClusterSettings) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_millis(STREAM_BLOCK_MS as u64 + 4000));
    match &settings.redis {
        RedisEndpoint::Direct(info) => {
            let mut info: ConnectionInfo = info.clone();
            if settings.password.is_some() {
                info.redis.password.clone_from(&settings.password);
            }
            let client = match &settings.tls_ca {
                // rediss:// with roots of our own; without them redis-rs trusts the system's.
                Some(ca) => Client::build_with_tls(
                    info,
                    TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca.clone()),
                    },
                )?,
                None => Client::open(info)?,
            };
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
        }
        RedisEndpoint::Sentinel {
            sentinels,
            master,
            db,
        } => {
            let node = SentinelNodeConnectionInfo {
                tls_mode: None,
                redis_connection_info: Some(RedisConnectionInfo {
                    db: *db,
                    password: settings.password.clone(),
                    ..Default::default()
                }),
            };
            let mut client = SentinelClient::build(
                sentinels.clone(),
                master.clone(),
                Some(node),
                SentinelServerType::Master,
            )?;
            client.get_async_connection_with_config(&config).await
        }
    }
}

impl Primary {
    pub async fn open(settings: &ClusterSettings) -> redis::RedisResult<Primary> {
        let mut conn = connect(settings).await?;
        check_primary(&mut conn).await?;
        // Other nodes learn of this node's stream from the set of nodes.
        let _: i64 = redis::cmd("SADD")
            .arg(record::nodes_key(&settings.prefix))
            .arg(&settings.node_id)
            .query_async(&mut conn)
            .await?;
        let script_sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(WRITE_SCRIPT)
            .query_async(&mut conn)
            .await?;
        Ok(Primary { conn, script_sha })
    }

    /// Whether the connection still answers, and still to a primary.
    pub async fn check(&mut self) -> redis::RedisResult<()> {
        check_primary(&mut self.conn).await
    }

    /// Write a batch of changes, one round trip: each is `(key, value, ttl_ms)`, appended to
    /// `stream` (this node's) when it changed its key. Returns how many did (the rest were
    /// older than what Redis holds).
    pub async fn write(
        &mut self,
        stream: &str,
        stream_max: usize,
        batch: &[(Vec<u8>, Vec<u8>, u64)],
    ) -> redis::RedisResult<usize> {
        let mut pipe = redis::pipe();
        for chunk in batch.chunks(SCRIPT_BATCH) {
            let call = pipe
                .cmd("EVALSHA")
                .arg(&self.script_sha)
                .arg(chunk.len() + 1);
            for (key, _, _) in chunk {
                call.arg(key);
            }
            call.arg(stream);
            for (_, value, ttl_ms) in chunk {
                call.arg(value).arg((*ttl_ms).max(1));
            }
            call.arg(stream_max);
        }
        let written: Vec<i64> = pipe.query_async(&mut self.conn).await?;
        Ok(written.iter().sum::<i64>() as usize)
    }
}

/// A replica (an old primary demoted by a failover) takes reads and refuses writes: only a
/// primary will do.
async fn check_primary(conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let role: Vec<Value> = redis::cmd("ROLE").query_async(conn).await?;
    if matches!(role.first(), Some(Value::BulkString(r)) if r == b"master") {
        Ok(())
    } else {
        Err((redis::ErrorKind::ReadOnly, "not a primary").into())
    }
}

/// The id of the stream's last entry (`0-0` when it is empty or missing): where to follow from
/// after reading the keys.
pub async fn stream_end(
    conn: &mut MultiplexedConnection,
    stream: &str,
) -> redis::RedisResult<String> {
    let last: Vec<(String, Value)> = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(last
        .into_iter()
        .next()
        .map_or_else(|| "0-0".into(), |(id, _)| id))
}

/// Whether entries after `id` may be missing from the stream: its first entry is later than
/// `id` (the stream was trimmed past it, or Redis lost it), or it is gone while we had read
/// some of it.
pub async fn stream_has_gap(
    conn: &mut MultiplexedConnection,
    stream: &str,
    id: &str,
) -> redis::RedisResult<bool> {
    let first: Vec<(String, Value)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(match first.first() {
        Some((first, _)) => later(first, id),
        None => id != "0-0",
    })
}

/// Stream ids compare as (milliseconds, sequence).
fn later(a: &str, b: &str) -> bool {
    let parse = |s: &str| {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    parse(a) > parse(b)
}

/// Every stored binding value, a piece at a time (SCAN then MGET): `each` gets each piece and
/// says whether to go on. Keys written meanwhile may be seen or not; their stream entries come
/// after the positions read before, so nothing is missed.
pub async fn scan_all<F, Fut>(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    mut each: F,
) -> redis::RedisResult<()>
where
    F: FnMut(Vec<Vec<u8>>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let pattern = record::key_pattern(prefix);
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            let values: Vec<Option<Vec<u8>>> =
                redis::cmd("MGET").arg(&keys).query_async(conn).await?;
            if !each(values.into_iter().flatten().collect()).await {
                return Ok(());
            }
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The other nodes (the set every node adds itself to), without `me`.
pub async fn other_nodes(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    me: &str,
) -> redis::RedisResult<Vec<String>> {
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(record::nodes_key(prefix))
        .query_async(conn)
        .await?;
    Ok(nodes.into_iter().filter(|n| n != me).collect())
}

/// The entries after each stream's position, waiting up to [`STREAM_BLOCK_MS`] for some:
/// (stream, id, value) triples, in order per stream. Empty when nothing came.
pub async fn follow(
    conn: &mut MultiplexedConnection,
    positions: &std::collections::BTreeMap<String, String>,
) -> redis::RedisResult<Vec<(String, String, Vec<u8>)>> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT")
        .arg(STREAM_COUNT)
        .arg("BLOCK")
        .arg(STREAM_BLOCK_MS)
        .arg("STREAMS");
    for stream in positions.keys() {
        cmd.arg(stream);
    }
    for id in positions.values() {
        cmd.arg(id);
    }
    let reply: Value = cmd.query_async(conn).await?;
    Ok(entries(reply))
}

/// XREAD's reply, `[[stream, [[id, [field, value, ...]], ...]], ...]` (nil when it timed out),
/// as (stream, id, value) triples: one per field `r` of an entry, in order (an entry with
/// none still yields its id, with an empty value, so that the position moves past it).
fn entries(reply: Value) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    let Value::Array(streams) = reply else {
        return out;
    };
    for s in streams {
        let Value::Array(mut s) = s else { continue };
        let (Some(Value::Array(list)), Some(Value::BulkString(name))) = (s.pop(), s.pop()) else {
            continue;
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        for entry in list {
            let Value::Array(mut entry) = entry else {
                continue;
            };
            let (Some(Value::Array(fields)), Some(Value::BulkString(id))) =
                (entry.pop(), entry.pop())
            else {
                continue;
            };
            let id = String::from_utf8_lossy(&id).into_owned();
            let before = out.len();
            let mut fields = fields.into_iter();
            while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
                if let (Value::BulkString(k), Value::BulkString(v)) = (k, v) {
                    if k == b"r" {
                        out.push((name.clone(), id.clone(), v));
                    }
                }
            }
            if out.len() == before {
                out.push((name.clone(), id, Vec::new()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_knows_where_a_version_ends() {
        let line = format!("local header = {}\n", record::HEADER_LEN);
        assert!(WRITE_SCRIPT.contains(&line));
    }

    #[test]
    fn stream_ids_compare_by_time_then_sequence() {
        assert!(later("1700000000001-0", "1700000000000-5"));
        assert!(later("1700000000000-6", "1700000000000-5"));
        assert!(!later("1700000000000-5", "1700000000000-5"));
        assert!(!later("0-0", "1-0"));
    }

    #[test]
    fn xread_replies_become_id_value_pairs() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("p:stream"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("r"), bulk("one"), bulk("r"), bulk("two")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Array(vec![bulk("x"), bulk("y")])]),
            ]),
        ])]);
        assert_eq!(
            entries(reply),
            vec![
                ("p:stream".into(), "1-0".into(), b"one".to_vec()),
                ("p:stream".into(), "1-0".into(), b"two".to_vec()),
                ("p:stream".into(), "2-0".into(), Vec::new())
            ]
        );
        assert!(entries(Value::Nil).is_empty());
    }
}
