//! `sipshard ctl`'s tables: what the admin API's JSON says, aligned for reading.

use std::io::Write;

use serde_json::Value;

/// Print `v` as JSON (`--json`) or through `table`.
pub fn output(json: bool, v: &Value, table: fn(&Value) -> String) -> Result<(), String> {
    let text = if json { format!("{v:#}\n") } else { table(v) };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write: {e}"))
}

/// Column widths of the bindings table: AOR, contact, expires, q, destination.
const WIDTHS: [usize; 5] = [28, 44, 8, 5, 30];
const HEADER: [&str; 6] = ["AOR", "CONTACT", "EXPIRES", "Q", "DESTINATION", "FLAGS"];

fn row(cells: [&str; 6]) -> String {
    let mut line = String::new();
    for (cell, w) in cells.iter().zip(WIDTHS) {
        line.push_str(&format!("{cell:<w$} "));
    }
    line.push_str(cells[5]);
    line.trim_end().to_owned() + "\n"
}

/// One binding (an element of the API's `bindings`, or a line of the listing) as a row.
fn binding_row(b: &Value) -> String {
    let dest = &b["destination"];
    let mut flags = Vec::new();
    if b["nat"].as_bool() == Some(true) {
        flags.push("nat".to_owned());
    }
    if let Some(reg_id) = b["reg_id"].as_u64() {
        flags.push(format!("flow:{reg_id}"));
    }
    if let Some(path) = b["path"].as_array() {
        flags.push(format!("path:{}", path.len()));
    }
    let destination = format!(
        "{} {}",
        dest["transport"].as_str().unwrap_or("?"),
        dest["address"].as_str().unwrap_or("?")
    );
    row([
        b["aor"].as_str().unwrap_or("?"),
        b["contact"].as_str().unwrap_or("?"),
        &format!("{}s", b["expires_in"]),
        &b["q"].to_string(),
        &destination,
        &flags.join(","),
    ])
}

pub fn aor_bindings(v: &Value) -> String {
    let mut out = row(HEADER);
    for b in v["bindings"].as_array().into_iter().flatten() {
        out.push_str(&binding_row(b));
    }
    out
}

pub fn removed(v: &Value) -> String {
    format!(
        "removed {} binding(s) of {}\n",
        v["removed"],
        v["aor"].as_str().unwrap_or("?")
    )
}

pub fn reloaded(v: &Value) -> String {
    format!("reloaded: {}\n", v["reloaded"].as_str().unwrap_or("?"))
}

pub fn health(v: &Value) -> String {
    format!(
        "{}: {} of {} shard(s) serving{}\n",
        v["status"].as_str().unwrap_or("?"),
        v["serving"],
        v["shards"],
        if v["stopping"].as_bool() == Some(true) {
            ", stopping"
        } else {
            ""
        }
    )
}

/// `series  shard 0  shard 1 ...  total`, a line per non-zero series.
pub fn stats(v: &Value) -> String {
    let shards = v["shards"].as_u64().unwrap_or(0);
    let mut out = format!("{:<64}", "SERIES");
    for s in 0..shards {
        out.push_str(&format!(" {:>12}", format!("shard {s}")));
    }
    out.push_str(&format!(" {:>12}\n", "total"));
    for f in v["families"].as_array().into_iter().flatten() {
        for s in f["series"].as_array().into_iter().flatten() {
            out.push_str(&format!("{:<64}", series_name(f, s)));
            for n in s["shards"].as_array().into_iter().flatten() {
                out.push_str(&format!(" {:>12}", n.to_string()));
            }
            out.push_str(&format!(" {:>12}\n", s["total"].to_string()));
        }
    }
    out
}

/// `name{label="value"}`, as Prometheus writes a series.
fn series_name(family: &Value, series: &Value) -> String {
    let name = family["name"].as_str().unwrap_or("?");
    let labels: Vec<String> = series["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or("?")))
        .collect();
    if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

/// The listing's JSON lines, printed as they arrive (as rows, or as they are with `--json`).
pub struct Lines {
    json: bool,
    pending: Vec<u8>,
    out: std::io::BufWriter<std::io::Stdout>,
    header_done: bool,
}

impl Lines {
    pub fn new(json: bool) -> Lines {
        Lines {
            json,
            pending: Vec::new(),
            out: std::io::BufWriter::new(std::io::stdout()),
            header_done: false,
        }
    }

    pub fn feed(&mut self, piece: &[u8]) {
        self.pending.extend_from_slice(piece);
        let Some(last) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.pending.drain(..=last).collect();
        for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            self.line(line);
        }
    }

    fn line(&mut self, line: &[u8]) {
        let text = if self.json {
            let mut l = line.to_vec();
            l.push(b'\n');
            l
        } else {
            let mut t = String::new();
            if !self.header_done {
                t.push_str(&row(HEADER));
                self.header_done = true;
            }
            match serde_json::from_slice::<Value>(line) {
                Ok(b) => t.push_str(&binding_row(&b)),
                Err(_) => t.push_str(&format!(
                    "(unreadable line: {})\n",
                    String::from_utf8_lossy(line)
                )),
            }
            t.into_bytes()
        };
        // A closed stdout (`| head`) ends the listing's output, not the program.
        let _ = self.out.write_all(&text);
    }

    pub fn finish(mut self) {
        if !self.json && !self.header_done {
            let _ = self.out.write_all(b"no bindings\n");
        }
        let _ = self.out.flush();
    }
}
