//! Checks of the flags against the machine, made before anything is bound or logged as
//! listening: a flag the machine cannot honour stops start-up with a message saying what to
//! change, never a panic or a half-started node.

use std::path::Path;

use super::CpuList;
use crate::sip::Uri;

/// The CPU each shard is pinned to. `--cpus` alone gives one shard per CPU listed;
/// `--shards` alone one per CPU from 0, wrapping around when there are more shards than CPUs
/// (a deliberate choice some benchmarks make); both together must agree. Every CPU must be
/// one this process may run on.
pub fn shard_cpus(shards: Option<usize>, cpus: Option<&CpuList>) -> Result<Vec<usize>, String> {
    let allowed = allowed_cpus();
    let list = match (shards, cpus) {
        (_, Some(list)) => {
            let n = shards.unwrap_or(list.0.len());
            if list.0.len() < n {
                return Err(format!(
                    "--shards {n} needs {n} CPUs in --cpus, which lists {}",
                    list.0.len()
                ));
            }
            list.0[..n].to_vec()
        }
        (n, None) => {
            let n = n.unwrap_or(allowed.len().max(1));
            (0..n).map(|i| allowed[i % allowed.len()]).collect()
        }
    };
    if let Some(bad) = list.iter().find(|c| !allowed.contains(c)) {
        return Err(format!(
            "--cpus: CPU {bad} is not available here: this process may run on CPUs {}",
            describe(&allowed)
        ));
    }
    Ok(list)
}

/// The CPUs this process may run on (its affinity mask: a container or `taskset` narrows it),
/// CPU 0 alone if the system will not say.
fn allowed_cpus() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort_unstable();
    if ids.is_empty() {
        ids.push(0);
    }
    ids
}

/// `0-3,6` for a sorted list.
fn describe(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// `--advertise HOST[:PORT]`: a host name, an IPv4 address or a bracketed IPv6 address, and
/// an optional port, as a SIP URI's host part (it is written into Via and Record-Route).
pub fn check_advertise(value: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "--advertise {value:?}: expected HOST[:PORT] (a host name, an IPv4 address or a \
             bracketed IPv6 address, and a port from 1 to 65535)"
        )
    };
    let uri = format!("sip:{value}");
    let parsed = Uri::parse(uri.as_bytes()).map_err(|_| bad())?;
    let plain = parsed.user.is_none()
        && parsed.params.is_empty()
        && parsed.host.is_some()
        && parsed.port != Some(0)
        && !value.contains(['?', ';', '@']);
    if plain {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The admin API's token, from its file (surrounding white space ignored).
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --admin-token-file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "--admin-token-file {}: the token must be one word of at least 16 characters",
            path.display()
        ));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_outside_the_machine_are_refused_with_what_is_available() {
        let allowed = allowed_cpus();
        let beyond = allowed.last().unwrap() + 1000;
        let list = CpuList(vec![beyond]);
        let e = shard_cpus(None, Some(&list)).unwrap_err();
        assert!(e.contains(&format!("CPU {beyond} is not available")), "{e}");
        assert!(e.contains(&describe(&allowed)), "{e}");
    }

    #[test]
    fn cpus_alone_give_one_shard_each_and_shards_must_fit_the_list() {
        let first = allowed_cpus()[0];
        let list = CpuList(vec![first]);
        assert_eq!(shard_cpus(None, Some(&list)).unwrap(), vec![first]);
        let e = shard_cpus(Some(2), Some(&list)).unwrap_err();
        assert!(e.contains("--shards 2 needs 2 CPUs"), "{e}");
        assert_eq!(shard_cpus(Some(3), None).unwrap().len(), 3, "wraps around");
    }

    #[test]
    fn describes_ranges() {
        assert_eq!(describe(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(describe(&[1]), "1");
    }

    #[test]
    fn advertise_takes_a_host_and_an_optional_port_only() {
        for ok in [
            "edge1.example.com",
            "192.0.2.1:5070",
            "[2001:db8::1]:5060",
            "edge1",
        ] {
            assert!(check_advertise(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "user@host",
            "host;lr",
            "host:0",
            "host:99999",
            "host:",
            "ho st",
            "[::1",
        ] {
            assert!(check_advertise(bad).is_err(), "{bad}");
        }
    }
}
