//! `make bench-gzip`: the builder's stored-block gzip writer against flate2 level 0 on the same
//! incompressible data (the content `make bench-build` serves), several runs each, interleaved
//! so both see the same machine load. Prints min/median/max MiB/s per writer and write size, and
//! one JSON line at the end.
//!
//! Cases: writes of 8 KiB (what the layer pipeline hands the encoder: `tar::Builder::append_data`
//! copies through `std::io::copy`'s 8 KiB buffer) and of 1 MiB, into a counting sink (only the
//! encoder is measured); and the old `bench_build` probe's setup, writes of 1 MiB into a fresh
//! `Vec` of the whole output size (first-touch page faults included).
//!
//! Usage: `bench_gzip [--mib N] [--runs N]`.

use std::io::{self, Read, Write};
use std::time::Instant;

use futures::StreamExt;
use salad_sd_image::StoredGzEncoder;
use salad_sd_testkit::generated_content;
use sha2::{Digest, Sha256};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Counts the bytes written and drops them.
#[derive(Default)]
struct Counting(u64);

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    Stored,
    Flate2Level0,
}

impl Writer {
    fn name(self) -> &'static str {
        match self {
            Writer::Stored => "stored-block writer",
            Writer::Flate2Level0 => "flate2 level 0",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Writer::Stored => "stored",
            Writer::Flate2Level0 => "flate2_level0",
        }
    }

    /// Encodes `data` in writes of `step` bytes into `out`; returns `out`.
    fn encode<W: Write>(self, data: &[u8], step: usize, out: W) -> W {
        match self {
            Writer::Stored => {
                let mut gz = StoredGzEncoder::new(out);
                for c in data.chunks(step) {
                    gz.write_all(c).expect("in-memory gzip");
                }
                gz.finish().expect("in-memory gzip")
            }
            Writer::Flate2Level0 => {
                let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::none());
                for c in data.chunks(step) {
                    gz.write_all(c).expect("in-memory gzip");
                }
                gz.finish().expect("in-memory gzip")
            }
        }
    }
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn main() {
    let mib = arg("--mib", 256);
    let runs = arg("--runs", 9).max(1) as usize;
    let size = mib << 20;
    let chunks: Vec<bytes::Bytes> =
        futures::executor::block_on(generated_content(size, 99).collect());
    let data: Vec<u8> = chunks.concat();
    drop(chunks);
    let writers = [Writer::Stored, Writer::Flate2Level0];

    // Correctness and determinism, untimed: each writer's output decodes to the input and does
    // not depend on how the input is split into writes.
    let mut overhead = serde_json::Map::new();
    for w in writers {
        let a = w.encode(&data, 8 << 10, Vec::new());
        let b = w.encode(&data, 1 << 20, Vec::new());
        let c = w.encode(&data, 7_777, Vec::new());
        let deterministic = Sha256::digest(&a) == Sha256::digest(&b) && a == c;
        let mut back = Vec::with_capacity(data.len());
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .expect("gzip decodes");
        assert_eq!(back, data, "{} does not round-trip", w.name());
        let pct = (a.len() as f64 / data.len() as f64 - 1.0) * 100.0;
        eprintln!(
            "{}: {} bytes for {} ({:+.4}%), same bytes for writes of 8 KiB, 1 MiB and 7,777 B: {deterministic}",
            w.name(),
            a.len(),
            data.len(),
            pct
        );
        overhead.insert(
            w.key().into(),
            serde_json::json!({ "overhead_pct": (pct * 1e4).round() / 1e4, "deterministic": deterministic }),
        );
    }

    let mut results = serde_json::Map::new();
    for (step, fresh_vec) in [(8usize << 10, false), (1 << 20, false), (1 << 20, true)] {
        let case = format!(
            "write_{}k{}",
            step >> 10,
            if fresh_vec { "_fresh_vec" } else { "" }
        );
        let mut mibs: Vec<Vec<f64>> = vec![Vec::new(); writers.len()];
        for run in 0..runs {
            // Alternate which writer goes first, so a load spike does not favour one.
            let order: Vec<usize> = if run % 2 == 0 { vec![0, 1] } else { vec![1, 0] };
            for i in order {
                let start = Instant::now();
                if fresh_vec {
                    let out = Vec::with_capacity(data.len() + (1 << 20));
                    std::hint::black_box(writers[i].encode(&data, step, out).len());
                } else {
                    std::hint::black_box(writers[i].encode(&data, step, Counting::default()).0);
                }
                let secs = start.elapsed().as_secs_f64();
                mibs[i].push(mib as f64 / secs);
            }
        }
        for (i, w) in writers.iter().enumerate() {
            let mut v = mibs[i].clone();
            v.sort_by(f64::total_cmp);
            let (min, med, max) = (v[0], median(&v), v[v.len() - 1]);
            eprintln!(
                "{mib} MiB, {case}, {runs} runs: {:<20} min {min:.0} / median {med:.0} / max {max:.0} MiB/s",
                w.name()
            );
            results.insert(
                format!("{}_{case}", w.key()),
                serde_json::json!({
                    "min_mib_s": round1(min),
                    "median_mib_s": round1(med),
                    "max_mib_s": round1(max),
                }),
            );
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let out = serde_json::json!({
        "data_mib": mib,
        "runs": runs,
        "loadavg_after": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "output": overhead,
        "throughput": results,
    });
    println!("{out}");
}
