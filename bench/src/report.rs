//! `report`: a markdown table from JSON result lines.

use std::path::PathBuf;

use serde_json::Value;

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_f64()
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k)?.as_str()
}

pub fn run(files: &[PathBuf]) -> i32 {
    let mut rows: Vec<Value> = Vec::new();
    for file in files {
        match std::fs::read_to_string(file) {
            Ok(text) => rows.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(Value::is_object),
            ),
            Err(e) => {
                eprintln!("cannot read {}: {e}", file.display());
                return 2;
            }
        }
    }
    print!("{}", table(&rows));
    0
}

/// One column per server (label), one row per headline figure.
pub fn table(rows: &[Value]) -> String {
    let mut servers: Vec<String> = Vec::new();
    for r in rows {
        let l = s(r, "label").unwrap_or("server").to_string();
        if !servers.contains(&l) {
            servers.push(l);
        }
    }
    let of = |label: &str| -> Vec<&Value> {
        rows.iter()
            .filter(|r| s(r, "label").unwrap_or("server") == label)
            .collect()
    };
    let mode = |r: &Value, m: &str| s(r, "mode") == Some(m);
    // The fanout run at 20k/s: tagged fanout-20k, else the fanout offering closest to 20k/s.
    let at_20k = |label: &str| -> Option<Value> {
        let rs = of(label);
        rs.iter()
            .find(|r| mode(r, "fanout") && s(r, "tag") == Some("fanout-20k"))
            .or_else(|| {
                rs.iter().filter(|r| mode(r, "fanout")).min_by(|a, b| {
                    let d = |r: &Value| {
                        (f(r, &["offered_deliveries_per_sec"]).unwrap_or(0.0) - 20000.0).abs()
                    };
                    d(a).total_cmp(&d(b))
                })
            })
            .map(|r| (*r).clone())
    };
    let ms = |x: Option<f64>| x.map(|v| format!("{v:.2} ms")).unwrap_or("–".into());
    let mut lines: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, cell: &dyn Fn(&str) -> String| {
        lines.push((name.to_string(), servers.iter().map(|l| cell(l)).collect()));
    };
    row("RSS per idle connection", &|l| {
        of(l)
            .iter()
            .rfind(|r| mode(r, "idle"))
            .and_then(|r| {
                Some(format!(
                    "{:.2} KiB ({} conns)",
                    f(r, &["rss_per_conn_kib"])?,
                    f(r, &["subscribed"])?
                ))
            })
            .unwrap_or("–".into())
    });
    row("idle connect rate", &|l| {
        of(l)
            .iter()
            .rfind(|r| mode(r, "idle"))
            .and_then(|r| Some(format!("{:.0}/s", f(r, &["connect_rate"])?)))
            .unwrap_or("–".into())
    });
    row("p99 at 20k deliveries/s", &|l| {
        ms(at_20k(l).and_then(|r| f(&r, &["latency", "p99_ms"])))
    });
    row("CPU s per million deliveries at 20k/s", &|l| {
        at_20k(l)
            .and_then(|r| f(&r, &["server_cpu_s_per_million"]))
            .map(|v| format!("{v:.2} s"))
            .unwrap_or("–".into())
    });
    row("highest delivery rate (p99)", &|l| {
        of(l)
            .iter()
            .filter(|r| mode(r, "fanout"))
            .max_by(|a, b| {
                let d = |r: &Value| f(r, &["deliveries_per_sec"]).unwrap_or(0.0);
                d(a).total_cmp(&d(b))
            })
            .and_then(|r| {
                Some(format!(
                    "{:.0}/s (p99 {:.2} ms, loss {})",
                    f(r, &["deliveries_per_sec"])?,
                    f(r, &["latency", "p99_ms"]).unwrap_or(f64::NAN),
                    f(r, &["loss"]).unwrap_or(0.0)
                ))
            })
            .unwrap_or("–".into())
    });
    row("churn: p99 / reconnects / failures", &|l| {
        of(l)
            .iter()
            .rfind(|r| mode(r, "churn"))
            .map(|r| {
                format!(
                    "{} / {} / {}",
                    ms(f(r, &["latency", "p99_ms"])),
                    f(r, &["churn_ops"]).unwrap_or(0.0),
                    f(r, &["churn_failures"]).unwrap_or(0.0)
                )
            })
            .unwrap_or("–".into())
    });
    row("presence: join p99 / member events ok", &|l| {
        of(l)
            .iter()
            .rfind(|r| mode(r, "presence"))
            .map(|r| {
                let ev_ok = f(r, &["member_added", "received"])
                    == f(r, &["member_added", "expected"])
                    && f(r, &["member_removed", "received"])
                        == f(r, &["member_removed", "expected"]);
                format!(
                    "{} / {}",
                    ms(f(r, &["join_latency", "p99_ms"])),
                    if ev_ok { "yes" } else { "NO" }
                )
            })
            .unwrap_or("–".into())
    });
    row("runs with problems", &|l| {
        let bad: Vec<String> = of(l)
            .iter()
            .filter(|r| r.get("ok").and_then(Value::as_bool) == Some(false))
            .map(|r| s(r, "tag").or(s(r, "mode")).unwrap_or("?").to_string())
            .collect();
        if bad.is_empty() {
            "none".into()
        } else {
            bad.join(", ")
        }
    });
    let mut out = String::new();
    out.push_str("| |");
    for l in &servers {
        out.push_str(&format!(" {l} |"));
    }
    out.push_str("\n|---|");
    for _ in &servers {
        out.push_str("---|");
    }
    out.push('\n');
    for (name, cells) in lines {
        out.push_str(&format!("| {name} |"));
        for c in cells {
            out.push_str(&format!(" {c} |"));
        }
        out.push('\n');
    }
    out
}
