//! baresip, a softphone written by others (Debian package baresip-core): a real user agent
//! that registers, calls and answers over TLS.
//!
//! Each phone runs headless with a configuration directory of its own (`-f DIR`), written
//! here: SIP on 127.0.0.1 only, the test's CA as `sip_cafile`, no sound device (the `aubridge`
//! module loops the phone's player back into its own source inside the process, so calls
//! have audio without hardware), and only the modules a call needs. It is driven through
//! `ctrl_tcp`, baresip's TCP control interface: netstrings of JSON carrying commands
//! (`{"command":"dial","params":URI,"token":T}`), their responses and the phone's events
//! (`CALL_ESTABLISHED`, `CALL_CLOSED`, ...). A pipe to its interactive console would need a
//! terminal; the control socket answers each command and reports every event, so the test
//! waits on what the phone says happened rather than on its log's wording.
//!
//! Ports: `sip_listen 127.0.0.1:P` binds UDP and TCP on P and TLS on P + 1, so a phone takes
//! two consecutive free ports, and one more for its control socket.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{require, INSTALL_HINT};
use crate::poll::eventually;
use crate::ports::{free_port, free_ports};
use crate::proc::Proc;

/// Where Debian's baresip-core keeps its modules.
const MODULE_DIR: &str = "/usr/lib/baresip/modules";

/// The modules a phone loads; all of them come with baresip-core.
const MODULES: [&str; 4] = ["g711.so", "aubridge.so", "menu.so", "ctrl_tcp.so"];

/// How long a phone may take to open its control socket, or to answer a command.
const PATIENCE: Duration = Duration::from_secs(15);

/// An event the phone reported: `{"event":true,"type":"CALL_CLOSED","param":REASON,...}`.
pub type Event = Value;

/// A running baresip, driven over its control socket.
pub struct Phone {
    pub name: String,
    /// Its SIP port for UDP and TCP; TLS is on the next one.
    pub sip_port: u16,
    ctrl: TcpStream,
    /// Bytes read from the control socket that do not yet make a whole netstring.
    pending: Vec<u8>,
    /// Every event the phone has reported, oldest first.
    events: Vec<Event>,
    next_token: u32,
    pub proc: Proc,
}

impl Phone {
    /// Start baresip as `name`, its configuration in `dir/NAME/`, trusting `ca_file` for TLS,
    /// with `account` as its one line in `accounts` (`<sip:USER@HOST;transport=tls>;PARAMS`).
    /// Returns once its control socket accepts a connection; registering is up to the caller
    /// to wait for.
    pub fn start(dir: &Path, name: &str, ca_file: &Path, account: &str) -> Phone {
        Self::start_on(dir, name, ca_file, account, &Network::default())
    }

    /// [`start`](Self::start) on another network: SIP on `net.ip` (its ports chosen there),
    /// inside namespace `net.netns` when given (see [`crate::netns`]).
    pub fn start_on(dir: &Path, name: &str, ca_file: &Path, account: &str, net: &Network) -> Phone {
        let program = require("baresip");
        let (sip_port, ctrl_port) = match net.netns {
            None => (free_ports(2), free_port()),
            // A namespace of the test's own has every port free.
            Some(_) => (5060, 5070),
        };
        let config_dir = dir.join(name);
        std::fs::create_dir_all(&config_dir).expect("create baresip config directory");
        let files = [
            ("config", config(net.ip, sip_port, ctrl_port, ca_file, name)),
            ("accounts", format!("{account}\n")),
        ];
        for (file, text) in files {
            std::fs::write(config_dir.join(file), text).expect("write baresip configuration");
        }
        let mut cmd = match &net.netns {
            None => Command::new(program),
            Some(ns) => {
                let mut c = crate::netns::in_netns(ns);
                c.arg(program);
                c
            }
        };
        // -v: debug output, -s: every SIP message it sends and receives, both for the logs
        // a failing run leaves behind.
        cmd.arg("-f").arg(&config_dir).args(["-v", "-s"]);
        let mut proc = Proc::spawn(dir, name, &mut cmd);
        let ctrl = match &net.netns {
            None => connect_ctrl(&mut proc, ctrl_port),
            Some(ns) => crate::netns::within(ns, || connect_ctrl(&mut proc, ctrl_port)),
        };
        Phone {
            name: name.to_string(),
            sip_port,
            ctrl,
            pending: Vec::new(),
            events: Vec::new(),
            next_token: 0,
            proc,
        }
    }

    /// Run a command (`dial`, `hangup`, ...) and return its response's `data`. Fails the test
    /// when the phone refuses it or does not answer within [`PATIENCE`].
    pub fn command(&mut self, command: &str, params: &str) -> String {
        self.next_token += 1;
        let token = format!("t{}", self.next_token);
        let request = json!({"command": command, "params": params, "token": token}).to_string();
        let framed = format!("{}:{request},", request.len());
        self.ctrl
            .write_all(framed.as_bytes())
            .unwrap_or_else(|e| panic!("{}: send {command}: {e}", self.name));
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            for msg in self.read_messages() {
                if msg["response"] == true && msg["token"] == token.as_str() {
                    assert!(
                        msg["ok"] == true,
                        "{}: {command} {params} refused: {msg}\n{}",
                        self.name,
                        self.proc.output_tail(4000)
                    );
                    return msg["data"].as_str().unwrap_or_default().to_string();
                }
            }
        }
        panic!(
            "{}: no response to {command} within {PATIENCE:?}\n{}",
            self.name,
            self.proc.output_tail(4000)
        );
    }

    /// Wait up to `limit` for an event of type `kind` (`CALL_ESTABLISHED`, ...), counting
    /// those already reported; returns it.
    pub fn wait_event(&mut self, kind: &str, limit: Duration) -> Option<Event> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.events.iter().find(|e| e["type"] == kind) {
                return Some(e.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.read_messages();
        }
    }

    /// The types of the events reported so far, for failure messages.
    pub fn event_types(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// Everything it has written so far (stdout, then stderr).
    pub fn log(&self) -> String {
        format!("{}{}", self.proc.stdout_text(), self.proc.stderr_text())
    }

    /// The start lines of the SIP messages it received over TLS from `from`, in order, as its
    /// SIP trace (`-s`) shows them: a line `TLS FROM -> LOCAL`, then the message.
    pub fn received_over_tls(&self, from: SocketAddr) -> Vec<String> {
        let marker = format!("TLS {from} -> ");
        let log = self.log();
        let mut lines = log.lines();
        let mut out = Vec::new();
        while let Some(line) = lines.next() {
            if line.starts_with(&marker) {
                out.extend(lines.next().map(str::to_string));
            }
        }
        out
    }

    /// SIGTERM, which makes baresip unregister before it exits; SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        self.proc.stop(grace);
    }

    /// Read what the control socket has within 100 ms; keep the events, return every whole
    /// message (events and responses).
    fn read_messages(&mut self) -> Vec<Value> {
        let mut buf = [0u8; 16 * 1024];
        match self.ctrl.read(&mut buf) {
            Ok(0) => panic!(
                "{}: control socket closed\n{}",
                self.name,
                self.proc.output_tail(4000)
            ),
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{}: control socket: {e}", self.name),
        }
        let mut out = Vec::new();
        while let Some(payload) = take_netstring(&mut self.pending) {
            let msg: Value = serde_json::from_slice(&payload).unwrap_or_else(|e| {
                panic!(
                    "{}: not JSON ({e}): {}",
                    self.name,
                    String::from_utf8_lossy(&payload)
                )
            });
            if msg["event"] == true {
                self.events.push(msg.clone());
            }
            out.push(msg);
        }
        out
    }
}

/// A phone's `config`.
/// Where a phone's SIP lives: an address, and the network namespace it is in (`None`: this
/// one). The default is loopback here.
pub struct Network {
    pub ip: std::net::IpAddr,
    pub netns: Option<String>,
}

impl Default for Network {
    fn default() -> Network {
        Network {
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            netns: None,
        }
    }
}

fn config(
    ip: std::net::IpAddr,
    sip_port: u16,
    ctrl_port: u16,
    ca_file: &Path,
    name: &str,
) -> String {
    assert!(
        MODULES
            .iter()
            .all(|m| Path::new(MODULE_DIR).join(m).is_file()),
        "baresip's modules {MODULES:?} not all in {MODULE_DIR}: {INSTALL_HINT}"
    );
    let modules: String = MODULES.iter().map(|m| format!("module {m}\n")).collect();
    format!(
        "\
poll_method epoll
# SIP (TLS on the next port) and media on {ip} (loopback unless the test says), the control
# socket on loopback.
net_interface {ip}
sip_listen {ip}:{sip_port}
# Were a name ever looked up, the query would stay on this machine.
dns_server 127.0.0.1:53
# The test's CA, the one that signed sipshard's certificate. (baresip 1.0.0 loads it but does
# not check the server's certificate; newer versions do, and read sip_verify_server.)
sip_cafile {ca}
sip_verify_server yes
# No sound card: the player feeds the source through an in-process bridge.
audio_player aubridge,{name}
audio_source aubridge,{name}
audio_alert aubridge,{name}
ringback_disabled yes
statmode_default off
module_path {MODULE_DIR}
{modules}module_tmp account.so
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
",
        ca = ca_file.display(),
    )
}

/// Connect to the phone's control socket once it listens; fails the test if baresip exits or
/// does not open it within [`PATIENCE`].
fn connect_ctrl(proc: &mut Proc, port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut ctrl = None;
    let up = eventually(PATIENCE, || {
        if proc.try_status().is_some() {
            return true;
        }
        ctrl = TcpStream::connect(addr).ok();
        ctrl.is_some()
    });
    let status = proc.try_status();
    let Some(ctrl) = ctrl.filter(|_| up && status.is_none()) else {
        panic!(
            "baresip did not open its control socket {addr} ({status:?}):\n{}",
            proc.output_tail(4000)
        );
    };
    ctrl.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    ctrl
}

/// Remove one netstring (`LEN:PAYLOAD,`) from the front of `buf` and return its payload, if
/// a whole one is there.
fn take_netstring(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let colon = buf.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&buf[..colon])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad netstring: {}", String::from_utf8_lossy(buf)));
    let end = colon + 1 + len;
    if buf.len() <= end {
        return None;
    }
    assert_eq!(buf[end], b',', "netstring without its comma");
    let payload = buf[colon + 1..end].to_vec();
    buf.drain(..=end);
    Some(payload)
}

#[cfg(test)]
mod tests {
    use super::take_netstring;

    #[test]
    fn netstrings_come_out_whole_and_in_order() {
        let mut buf = b"3:abc,2:de".to_vec();
        assert_eq!(take_netstring(&mut buf).as_deref(), Some(&b"abc"[..]));
        assert_eq!(take_netstring(&mut buf), None);
        buf.extend_from_slice(b",");
        assert_eq!(take_netstring(&mut buf).as_deref(), Some(&b"de"[..]));
        assert!(buf.is_empty());
    }
}
