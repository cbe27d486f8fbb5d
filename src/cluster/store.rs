//! The Redis side of the cluster peer: connecting (to a primary, or to the one Sentinel names),
//! writing this node's changes, reading the whole state, and following the change stream. The
//! RESP protocol is redis-rs's; this file only says which commands, and why in that order.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, ConnectionInfo, RedisConnectionInfo, Value};

use super::record;
use super::settings::{ClusterSettings, RedisEndpoint};

/// A write keeps the newest version of a binding (last writer wins, the node id breaking ties,
/// exactly the table's rule in numbers) and, only when it changed the key, appends the change
/// to the stream: the key and its stream entry change together or not at all, which is what
/// lets a node read the stream position, then the keys, then follow from that position.
///
/// KEYS: binding key, stream. ARGV: value, TTL (ms), stream length bound.
const WRITE_SCRIPT: &str = r#"
local function version(v)
  local s, h, l, c, n = string.match(v, '^(%d+):(%d+):(%d+):(%d+):([^|]*)|')
  if not s then return nil end
  return {tonumber(s), tonumber(h), tonumber(l), tonumber(c)}, n
end
local new, node = version(ARGV[1])
if not new then return redis.error_reply('sipshard: malformed value') end
local cur = redis.call('GET', KEYS[1])
if cur then
  local old, oldnode = version(cur)
  if old then
    local newer = nil
    for i = 1, 4 do
      if newer == nil and new[i] ~= old[i] then newer = new[i] > old[i] end
    end
    if newer == nil then newer = node > oldnode end
    if not newer then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'r', ARGV[1])
return 1
"#;

/// Keys read per SCAN step and values per MGET while loading.
const SCAN_COUNT: usize = 5000;
/// How long a follower waits on the stream for news before asking again.
const STREAM_BLOCK_MS: usize = 1000;
/// Entries read from the stream at once.
const STREAM_COUNT: usize = 2048;

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
            Client::open(info)?
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

    /// Write a batch of changes, one round trip: each is `(key, value, ttl_ms)`. Returns how
    /// many changed Redis (the rest were older than what it holds).
    pub async fn write(
        &mut self,
        stream: &str,
        stream_max: usize,
        batch: &[(Vec<u8>, Vec<u8>, u64)],
    ) -> redis::RedisResult<usize> {
        let mut pipe = redis::pipe();
        for (key, value, ttl_ms) in batch {
            pipe.cmd("EVALSHA")
                .arg(&self.script_sha)
                .arg(2)
                .arg(key)
                .arg(stream)
                .arg(value)
                .arg(ttl_ms.max(&1))
                .arg(stream_max);
        }
        let written: Vec<i64> = pipe.query_async(&mut self.conn).await?;
        Ok(written.iter().filter(|&&w| w == 1).count())
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

/// Every stored binding value, a piece at a time (SCAN then MGET): `each` gets each piece.
/// Keys written meanwhile may be seen or not; their stream entries follow the position read
/// before, so nothing is missed.
pub async fn scan_all(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    mut each: impl FnMut(Vec<Vec<u8>>),
) -> redis::RedisResult<()> {
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
            each(values.into_iter().flatten().collect());
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The stream's entries after `id`, waiting up to [`STREAM_BLOCK_MS`] for some: (id, value)
/// pairs, in order. Empty when nothing came.
pub async fn follow(
    conn: &mut MultiplexedConnection,
    stream: &str,
    id: &str,
) -> redis::RedisResult<Vec<(String, Vec<u8>)>> {
    let reply: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(STREAM_COUNT)
        .arg("BLOCK")
        .arg(STREAM_BLOCK_MS)
        .arg("STREAMS")
        .arg(stream)
        .arg(id)
        .query_async(conn)
        .await?;
    Ok(entries(reply))
}

/// XREAD's reply, `[[stream, [[id, [field, value, ...]], ...]]]` (nil when it timed out), as
/// (id, value of field `r`) pairs.
fn entries(reply: Value) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Value::Array(streams) = reply else {
        return out;
    };
    for s in streams {
        let Value::Array(mut s) = s else { continue };
        let Some(Value::Array(list)) = s.pop() else {
            continue;
        };
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
            let value = fields.chunks(2).find_map(|kv| match kv {
                [Value::BulkString(k), Value::BulkString(v)] if k == b"r" => Some(v.clone()),
                _ => None,
            });
            out.push((id, value.unwrap_or_default()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
                    Value::Array(vec![bulk("r"), bulk("one")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Array(vec![bulk("x"), bulk("y")])]),
            ]),
        ])]);
        assert_eq!(
            entries(reply),
            vec![("1-0".into(), b"one".to_vec()), ("2-0".into(), Vec::new())]
        );
        assert!(entries(Value::Nil).is_empty());
    }
}
