//! A gzip writer that emits only deflate "stored" blocks.
//!
//! Model weights do not compress, so the layer only needs gzip *framing* (the media type every
//! runtime accepts). flate2's `Compression::none()` (miniz_oxide) still runs the input through
//! its compressor; this writer copies 65,535-byte blocks and computes the CRC-32 with
//! `crc32fast` (SIMD). Block boundaries depend only on the byte offset, so the output is
//! deterministic (the same bytes for any split of the input into writes).
//!
//! Kept because it wins, measured with `make bench-gzip` (256 MiB of the bench's incompressible
//! content, 9 interleaved runs per case, three invocations on the shared 2-core machine, load
//! average 2.6–4.5; min / median / max MiB/s):
//!
//! | case | this writer | flate2 level 0 |
//! |---|---|---|
//! | 8 KiB writes (what `tar` hands it in a build) | 8,391 / 13,307–21,655 / 23,490 | 275 / 322–481 / 486 |
//! | 1 MiB writes | 11,237 / 17,925–25,380 / 27,963 | 290 / 310–489 / 493 |
//! | 1 MiB writes into a fresh 257 MiB `Vec` (the old `bench-build` probe) | 1,032 / 1,230–1,849 / 2,023 | 218 / 258–356 / 387 |
//!
//! (min and max over all runs, medians per invocation.) Output overhead: +0.0076% against
//! +0.0158%. The single-run probe in `make bench-build` once printed 195 against 208 MiB/s; that
//! probe times a freshly allocated output `Vec` (page faults) and was not reproduced: three
//! `bench_build` runs printed 1,349 / 1,091 / 1,501 against 280 / 327 / 355 MiB/s.

use std::io::{self, Write};

const BLOCK: usize = 65_535;
/// Header: magic, CM=deflate, no flags, mtime 0, XFL 0, OS 255 (unknown).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Gzip encoder producing stored (uncompressed) deflate blocks: 5 bytes of overhead per 64 KiB.
pub struct StoredGzEncoder<W: Write> {
    inner: W,
    buf: Vec<u8>,
    crc: flate2::Crc,
    header_written: bool,
}

impl<W: Write> StoredGzEncoder<W> {
    /// Wraps a writer.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(BLOCK),
            crc: flate2::Crc::new(),
            header_written: false,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.inner.write_all(&HEADER)?;
            self.header_written = true;
        }
        Ok(())
    }

    fn block(&mut self, data: &[u8], last: bool) -> io::Result<()> {
        let len = data.len() as u16;
        let nlen = !len;
        let head = [
            u8::from(last),
            len as u8,
            (len >> 8) as u8,
            nlen as u8,
            (nlen >> 8) as u8,
        ];
        self.inner.write_all(&head)?;
        self.inner.write_all(data)
    }

    /// Writes the final block and the trailer; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.header()?;
        let rest = std::mem::take(&mut self.buf);
        self.block(&rest, true)?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.inner.write_all(&trailer)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for StoredGzEncoder<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        self.header()?;
        let total = data.len();
        self.crc.update(data);
        if !self.buf.is_empty() {
            let n = (BLOCK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == BLOCK {
                let full = std::mem::take(&mut self.buf);
                self.block(&full, false)?;
                self.buf = full;
                self.buf.clear();
            }
        }
        while data.len() >= BLOCK {
            self.block(&data[..BLOCK], false)?;
            data = &data[BLOCK..];
        }
        self.buf.extend_from_slice(data);
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn round_trips_and_is_deterministic_across_write_sizes() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let encode = |step: usize| {
            let mut gz = StoredGzEncoder::new(Vec::new());
            for c in data.chunks(step) {
                gz.write_all(c).unwrap();
            }
            gz.finish().unwrap()
        };
        let a = encode(7);
        let b = encode(65_535);
        let c = encode(100_000);
        assert_eq!(a, b);
        assert_eq!(a, c);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        // 10 header + 5 per block (5 blocks: 4 full + 1 final) + 8 trailer.
        assert_eq!(a.len(), data.len() + 10 + 5 * 5 + 8);
        let empty = StoredGzEncoder::new(Vec::new()).finish().unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&empty[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty());
    }
}
