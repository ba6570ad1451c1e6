//! A tiny PNG encoder: 8-bit RGB, one IDAT chunk, zlib via flate2, CRCs via `flate2::Crc`.

use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;

/// The 8-byte PNG signature.
pub const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).expect("PNG chunk fits in u32");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// Encode a `width`×`height` gradient (colours shifted by `seed`) as PNG.
pub fn gradient(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let (w, h) = (width.max(1), height.max(1));
    let shift = (seed % 256) as u32;
    let mut raw = Vec::with_capacity(((w * 3 + 1) * h) as usize);
    for y in 0..h {
        raw.push(0); // filter type: none
        for x in 0..w {
            let r = (x * 255 / w.max(2).saturating_sub(1).max(1) + shift) % 256;
            let g = (y * 255 / h.max(2).saturating_sub(1).max(1) + shift / 2) % 256;
            let b = ((x + y) * 4 + shift * 3) % 256;
            raw.extend_from_slice(&[r as u8, g as u8, b as u8]);
        }
    }
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    z.write_all(&raw).expect("writing to a Vec cannot fail");
    let idat = z.finish().expect("writing to a Vec cannot fail");

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, RGB, deflate, filter 0, no interlace

    let mut out = SIGNATURE.to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn png_is_well_formed() {
        let png = gradient(7, 5, 42);
        assert_eq!(&png[..8], &SIGNATURE);
        // Walk chunks and verify each CRC.
        let mut pos = 8;
        let mut kinds = Vec::new();
        let mut idat = Vec::new();
        while pos < png.len() {
            let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
            let kind = &png[pos + 4..pos + 8];
            let data = &png[pos + 8..pos + 8 + len];
            let crc = u32::from_be_bytes(png[pos + 8 + len..pos + 12 + len].try_into().unwrap());
            let mut c = flate2::Crc::new();
            c.update(kind);
            c.update(data);
            assert_eq!(c.sum(), crc, "crc of {}", String::from_utf8_lossy(kind));
            if kind == b"IHDR" {
                assert_eq!(u32::from_be_bytes(data[0..4].try_into().unwrap()), 7);
                assert_eq!(u32::from_be_bytes(data[4..8].try_into().unwrap()), 5);
            }
            if kind == b"IDAT" {
                idat.extend_from_slice(data);
            }
            kinds.push(String::from_utf8_lossy(kind).into_owned());
            pos += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&idat[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), (7 * 3 + 1) * 5);
    }
}
