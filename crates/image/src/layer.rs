//! The streaming layer pipeline.
//!
//! ```text
//! file:    source stream ──► [download task: sha256(file), size checks, progress,
//!                             tar header before the bytes, padding and end blocks after]
//!                        ──► [upload body: sha256(layer) = diff_id, byte count] ──► registry PATCH
//! archive: source stream ──► [download task: sha256(file), size checks, progress]
//!                        ──► [blocking thread: deterministic tar rewritten entry by entry]
//!                        ──► [upload body: sha256(layer) = diff_id, byte count] ──► registry PATCH
//! ```
//! Each arrow is a bounded channel of chunks, so memory stays flat whatever the model size. The
//! layer is an uncompressed tar (weights do not compress), so its digest is its diff_id and a
//! file's bytes go from the download to the upload without a copy: two sha256 passes in all.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::pool::{Home, Pooled, Spares};
use crate::progress::{Phase, Progress, ProgressSink};
use crate::recipe::{LayerContent, normalize_image_path};
use crate::registry::ByteStream;
use crate::source::Download;

/// Owner of everything the builder writes (SD.Next's `webui-user`).
pub(crate) const OWNER_ID: u64 = 1000;
/// Fixed mtime of every entry: 2000-01-01T00:00:00Z.
pub(crate) const MTIME: u64 = 946_684_800;
const CHUNK: usize = 256 << 10;
const PROGRESS_EVERY: u64 = 32 << 20;

/// Limits applied while streaming.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_source_bytes: u64,
    pub(crate) max_unpacked_bytes: u64,
}

/// What a finished pipeline produced.
#[derive(Clone, Debug)]
pub(crate) struct LayerOutput {
    /// Also the diff_id: the layer is an uncompressed tar.
    pub(crate) digest: String,
    pub(crate) size: u64,
    pub(crate) file_sha256: String,
    pub(crate) source_bytes: u64,
}

enum StageError {
    /// The next stage went away; its error (or the upload's) is the real one.
    Cancelled,
    Failed(Error),
}

/// Handle to a running pipeline; [`Pipeline::finish`] after the upload body was consumed.
pub(crate) struct Pipeline {
    download: tokio::task::JoinHandle<std::result::Result<(String, u64), StageError>>,
    /// The archive rewriter; a file layer has none.
    writer: Option<tokio::task::JoinHandle<std::result::Result<(), StageError>>>,
    layer: Arc<Mutex<(Sha256, u64)>>,
}

/// Context for error messages.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) name: String,
    pub(crate) url: String,
}

/// Starts the pipeline. Returns the upload body and the handle.
pub(crate) fn start(
    ctx: Ctx,
    download: Download,
    content: LayerContent,
    limits: Limits,
    progress: Option<Arc<dyn ProgressSink>>,
) -> Result<(ByteStream, Pipeline)> {
    let file_len = match (&content, download.len) {
        (LayerContent::File { .. }, None) => {
            return Err(Error::MissingContentLength {
                name: ctx.name,
                url: ctx.url,
            });
        }
        (_, Some(len)) if len > limits.max_source_bytes => {
            return Err(Error::SizeLimit {
                name: ctx.name,
                what: format!("the download ({len} bytes)"),
                limit: limits.max_source_bytes,
            });
        }
        (_, len) => len,
    };
    let (download_task, writer, mut rx_b) = match content {
        LayerContent::File {
            path_in_image,
            mode,
        } => {
            let frame = TarFrame::for_file(&path_in_image, mode, file_len.unwrap_or(0))
                .map_err(Error::InvalidRecipe)?;
            let (tx_up, rx_up) = mpsc::channel::<io::Result<Bytes>>(DOWNLOAD_QUEUE);
            let task = tokio::spawn(download_stage(
                ctx, download, file_len, limits, progress, frame, tx_up,
            ));
            (task, None, rx_up)
        }
        LayerContent::Archive {
            dest_dir,
            strip_components,
        } => {
            let (tx_a, rx_a) = mpsc::channel::<io::Result<Bytes>>(DOWNLOAD_QUEUE);
            let (tx_up, rx_up) = mpsc::channel::<io::Result<Bytes>>(UPLOAD_QUEUE);
            let task = tokio::spawn(download_stage(
                ctx.clone(),
                download,
                file_len,
                limits,
                progress,
                TarFrame::default(),
                tx_a,
            ));
            let writer = tokio::task::spawn_blocking(move || {
                let reader = ChannelReader {
                    rx: rx_a,
                    cur: Bytes::new(),
                };
                let sink = ChunkSender::new(tx_up.clone());
                let res = write_archive_layer(
                    &ctx,
                    reader,
                    sink,
                    &dest_dir,
                    strip_components as usize,
                    limits,
                );
                if res.is_err() {
                    // Make the upload request fail instead of ending it cleanly with a partial layer.
                    let _ = tx_up.blocking_send(Err(io::Error::other("layer stream aborted")));
                }
                res
            });
            (task, Some(writer), rx_up)
        }
    };
    let layer = Arc::new(Mutex::new((Sha256::new(), 0u64)));
    let hasher = layer.clone();
    let body = futures::stream::poll_fn(move |cx| rx_b.poll_recv(cx))
        .inspect(move |item| {
            if let Ok(b) = item {
                let mut h = hasher.lock().expect("layer hash lock");
                h.0.update(b);
                h.1 += b.len() as u64;
            }
        })
        .boxed();
    Ok((
        body,
        Pipeline {
            download: download_task,
            writer,
            layer,
        },
    ))
}

impl Pipeline {
    /// Waits for both stages. `upload` is the result of the registry upload that consumed the body;
    /// the root cause wins: download error, then writer error, then upload error.
    pub(crate) async fn finish<T>(self, upload: Result<T>) -> Result<(T, LayerOutput)> {
        let join = |e: tokio::task::JoinError| Error::Internal(format!("layer task failed: {e}"));
        let download = self.download.await.map_err(join)?;
        let writer = match self.writer {
            Some(w) => w.await.map_err(join)?,
            None => Ok(()),
        };
        let (file_sha256, source_bytes) = match download {
            Err(StageError::Failed(e)) => return Err(e),
            Err(StageError::Cancelled) => (String::new(), 0),
            Ok(v) => v,
        };
        match writer {
            Err(StageError::Failed(e)) => return Err(e),
            Err(StageError::Cancelled) | Ok(()) => {}
        }
        let t = upload?;
        let (h, size) = std::mem::replace(
            &mut *self.layer.lock().expect("layer hash lock"),
            (Sha256::new(), 0),
        );
        let digest = format!("sha256:{}", hex::encode(h.finalize()));
        Ok((
            t,
            LayerOutput {
                digest,
                size,
                file_sha256,
                source_bytes,
            },
        ))
    }
}

async fn download_stage(
    ctx: Ctx,
    mut download: Download,
    len: Option<u64>,
    limits: Limits,
    progress: Option<Arc<dyn ProgressSink>>,
    frame: TarFrame,
    tx: mpsc::Sender<io::Result<Bytes>>,
) -> std::result::Result<(String, u64), StageError> {
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    let mut next_report = 0u64;
    let report = |n: u64, phase: Phase| {
        if let Some(p) = &progress {
            p.on_progress(&Progress {
                layer: ctx.name.clone(),
                phase,
                bytes_done: n,
                bytes_total: len,
            });
        }
    };
    let fail = |e: Error| async {
        let _ = tx.send(Err(io::Error::other(DOWNLOAD_FAILED))).await;
        Err(StageError::Failed(e))
    };
    let truncated = |got: u64| {
        len.filter(|exp| got < *exp)
            .map(|expected| Error::Truncated {
                name: ctx.name.clone(),
                url: ctx.url.clone(),
                expected,
                got,
            })
    };
    if !frame.head.is_empty() && tx.send(Ok(frame.head)).await.is_err() {
        return Err(StageError::Cancelled);
    }
    while let Some(item) = download.stream.next().await {
        let chunk = match item {
            Ok(c) => c,
            Err(e) => {
                // The connection broke: short of the announced size this is a truncation.
                if let Some(e) = truncated(n) {
                    return fail(e).await;
                }
                return fail(Error::SourceNetwork {
                    name: ctx.name.clone(),
                    url: ctx.url.clone(),
                    detail: e.to_string(),
                })
                .await;
            }
        };
        n += chunk.len() as u64;
        if n > limits.max_source_bytes {
            return fail(Error::SizeLimit {
                name: ctx.name.clone(),
                what: "the download".into(),
                limit: limits.max_source_bytes,
            })
            .await;
        }
        if let Some(exp) = len
            && n > exp
        {
            return fail(Error::SourceNetwork {
                name: ctx.name.clone(),
                url: ctx.url.clone(),
                detail: format!("source sent more than the announced {exp} bytes"),
            })
            .await;
        }
        hasher.update(&chunk);
        if n >= next_report {
            report(n, Phase::Uploading);
            next_report = n + PROGRESS_EVERY;
        }
        if tx.send(Ok(chunk)).await.is_err() {
            return Err(StageError::Cancelled);
        }
    }
    if let Some(e) = truncated(n) {
        return fail(e).await;
    }
    if !frame.tail.is_empty() && tx.send(Ok(frame.tail)).await.is_err() {
        return Err(StageError::Cancelled);
    }
    report(n, Phase::Uploading);
    Ok((hex::encode(hasher.finalize()), n))
}

/// What a one-file tar layer has around the file's bytes, which pass between them untouched.
#[derive(Default)]
struct TarFrame {
    /// The parent directory entries and the file's header (GNU long-name entries if needed).
    head: Bytes,
    /// Zero padding to the 512-byte block, then the two zero blocks that end the archive.
    tail: Bytes,
}

impl TarFrame {
    fn for_file(path_in_image: &str, mode: u32, len: u64) -> std::result::Result<Self, String> {
        let parts = normalize_image_path(path_in_image).map_err(str::to_owned)?;
        let mut tar = tar::Builder::new(Vec::new());
        let mut emitted = BTreeSet::new();
        let io_err = |e: io::Error| format!("tar header for {path_in_image}: {e}");
        emit_dirs(&mut tar, &mut emitted, &parts[..parts.len() - 1]).map_err(io_err)?;
        // The header announces `len`; with no data the builder writes the header alone.
        tar.append_data(
            &mut file_header(len, mode & 0o7777),
            parts.join("/"),
            io::empty(),
        )
        .map_err(io_err)?;
        let head = Bytes::from(tar.get_ref().clone());
        let padding = (512 - len % 512) % 512;
        Ok(Self {
            head,
            tail: Bytes::from(vec![0u8; padding as usize + 1024]),
        })
    }
}

/// Reads chunks from the download channel (blocking).
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(b)) => self.cur = b,
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Collects output into ≤256 KiB chunks for the upload channel, in buffers reused once the
/// upload has dropped them (see [`crate::pool`]).
struct ChunkSender {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    spares: Arc<Spares>,
}

const CANCELLED: &str = "upload stopped reading the layer";
const DOWNLOAD_FAILED: &str = "download failed";

/// Download chunks waiting for the next stage (the upload itself, for a file layer).
const DOWNLOAD_QUEUE: usize = 8;
/// Rewritten archive chunks waiting for the upload.
const UPLOAD_QUEUE: usize = 4;
/// At most this many spare chunk buffers per layer: the upload queue's, the one in the upload and
/// the one being filled.
const SPARE_CHUNKS: usize = UPLOAD_QUEUE + 2;

impl ChunkSender {
    fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        Self {
            tx,
            buf: Vec::new(),
            spares: Arc::default(),
        }
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // The next buffer is a spare or, on the next write, a new one.
        let full = std::mem::replace(&mut self.buf, self.spares.take());
        let chunk = Pooled::new(full, LayerSpares(Arc::downgrade(&self.spares))).into_bytes();
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, CANCELLED))
    }
}

/// A chunk's buffer goes back to its layer's spares when the upload drops it, or is freed when
/// the layer is done.
struct LayerSpares(Weak<Spares>);

impl Home for LayerSpares {
    fn welcome(&self, bytes: Vec<u8>) {
        if let Some(spares) = self.0.upgrade() {
            spares.keep(bytes, SPARE_CHUNKS);
        }
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(CHUNK);
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Yields exactly `remaining` bytes, failing if the inner reader ends early.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.remaining as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "download ended early",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The download stage failed (it reports the cause) or the upload stopped reading.
fn is_pipeline_stop(e: &io::Error) -> bool {
    let msg = e.to_string();
    msg == CANCELLED || msg == DOWNLOAD_FAILED
}

fn classify(ctx: &Ctx, e: io::Error) -> StageError {
    if is_pipeline_stop(&e) {
        return StageError::Cancelled;
    }
    StageError::Failed(Error::Io {
        context: format!("model {}: writing layer", ctx.name),
        source: e,
    })
}

type TarOut = tar::Builder<ChunkSender>;

fn dir_header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_uid(OWNER_ID);
    h.set_gid(OWNER_ID);
    h.set_mtime(MTIME);
    h.set_size(0);
    h
}

fn file_header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_uid(OWNER_ID);
    h.set_gid(OWNER_ID);
    h.set_mtime(MTIME);
    h.set_size(size);
    h
}

/// Emits `dir` and every missing parent as directory entries.
fn emit_dirs<W: Write>(
    out: &mut tar::Builder<W>,
    emitted: &mut BTreeSet<String>,
    parts: &[String],
) -> io::Result<()> {
    for i in 1..=parts.len() {
        let dir = format!("{}/", parts[..i].join("/"));
        if emitted.insert(dir.clone()) {
            out.append_data(&mut dir_header(), &dir, io::empty())?;
        }
    }
    Ok(())
}

fn write_archive_layer(
    ctx: &Ctx,
    reader: ChannelReader,
    sink: ChunkSender,
    dest_dir: &str,
    strip_components: usize,
    limits: Limits,
) -> std::result::Result<(), StageError> {
    let mut out = tar::Builder::new(sink);
    let mut emitted = BTreeSet::new();
    let parts = normalize_image_path(dest_dir)
        .map_err(|r| StageError::Failed(Error::InvalidRecipe(r.into())))?;
    emit_dirs(&mut out, &mut emitted, &parts).map_err(|e| classify(ctx, e))?;
    unpack_archive(
        ctx,
        reader,
        &mut out,
        &mut emitted,
        &parts,
        strip_components,
        limits,
    )?;
    let mut sink = out.into_inner().map_err(|e| classify(ctx, e))?;
    sink.send_buf().map_err(|e| classify(ctx, e))
}

fn archive_path(p: &Path, strip: usize) -> std::result::Result<Option<Vec<String>>, String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => {
                parts.push(s.to_str().ok_or("non-UTF-8 path in archive")?.to_owned())
            }
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "unsafe path {:?} in archive",
                    p.display().to_string()
                ));
            }
        }
    }
    if parts.len() <= strip {
        return Ok(None);
    }
    Ok(Some(parts.split_off(strip)))
}

fn unpack_archive(
    ctx: &Ctx,
    reader: ChannelReader,
    out: &mut TarOut,
    emitted: &mut BTreeSet<String>,
    dest: &[String],
    strip: usize,
    limits: Limits,
) -> std::result::Result<(), StageError> {
    let bad = |detail: String| {
        StageError::Failed(Error::BadArchive {
            name: ctx.name.clone(),
            url: ctx.url.clone(),
            detail,
        })
    };
    // A short or corrupt archive surfaces as an I/O error of the decoder; only a stopped pipeline
    // (download failed, upload gone) is not the archive's fault.
    let classify = |_: &Ctx, e: io::Error| {
        if is_pipeline_stop(&e) {
            StageError::Cancelled
        } else {
            bad(e.to_string())
        }
    };
    let mut br = BufReader::with_capacity(256 << 10, reader);
    let gz = br
        .fill_buf()
        .map_err(|e| classify(ctx, e))?
        .starts_with(&[0x1f, 0x8b]);
    let input: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(br))
    } else {
        Box::new(br)
    };
    let mut archive = tar::Archive::new(input);
    let entries = archive.entries().map_err(|e| classify(ctx, e))?;
    let mut unpacked = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| classify(ctx, e))?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let Some(rel) = archive_path(&path, strip).map_err(bad)? else {
            continue;
        };
        let mut full = dest.to_vec();
        full.extend(rel);
        emit_dirs(out, emitted, &full[..full.len() - 1]).map_err(|e| classify(ctx, e))?;
        let name = full.join("/");
        match kind {
            tar::EntryType::Directory => {
                emit_dirs(out, emitted, &full).map_err(|e| classify(ctx, e))?
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(|e| bad(e.to_string()))?;
                unpacked += size;
                if unpacked > limits.max_unpacked_bytes {
                    return Err(StageError::Failed(Error::SizeLimit {
                        name: ctx.name.clone(),
                        what: "the unpacked archive".into(),
                        limit: limits.max_unpacked_bytes,
                    }));
                }
                let exec = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
                let mut h = file_header(size, if exec { 0o755 } else { 0o644 });
                out.append_data(
                    &mut h,
                    &name,
                    ExactReader {
                        inner: &mut entry,
                        remaining: size,
                    },
                )
                .map_err(|e| classify(ctx, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(e.to_string()))?
                    .ok_or_else(|| bad("symlink without target".into()))?;
                let mut h = file_header(0, 0o777);
                h.set_entry_type(tar::EntryType::Symlink);
                out.append_link(&mut h, &name, target.as_ref())
                    .map_err(|e| classify(ctx, e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(e.to_string()))?
                    .ok_or_else(|| bad("hard link without target".into()))?;
                let Some(t) = archive_path(&target, strip).map_err(bad)? else {
                    return Err(bad(format!(
                        "hard link to stripped path {}",
                        target.display()
                    )));
                };
                let mut tfull = dest.to_vec();
                tfull.extend(t);
                let mut h = file_header(0, 0o644);
                h.set_entry_type(tar::EntryType::Link);
                out.append_link(&mut h, &name, tfull.join("/"))
                    .map_err(|e| classify(ctx, e))?;
            }
            // Devices, FIFOs and unknown entry types have no place in a model or extension.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `tar` itself writes for a one-file layer (the pipeline's bytes must be these).
    fn tar_of(path: &str, mode: u32, data: &[u8]) -> Vec<u8> {
        let parts = normalize_image_path(path).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut emitted = BTreeSet::new();
        emit_dirs(&mut tar, &mut emitted, &parts[..parts.len() - 1]).unwrap();
        let mut h = file_header(data.len() as u64, mode);
        tar.append_data(&mut h, parts.join("/"), data).unwrap();
        tar.into_inner().unwrap()
    }

    #[test]
    fn a_file_layer_is_the_tar_that_tar_writes() {
        let long = format!("/webui/models/{}/model.safetensors", "d".repeat(120));
        for (path, len) in [
            ("/m/x", 0usize),
            ("/m/x", 1),
            ("/webui/data/models/Stable-diffusion/a.safetensors", 511),
            ("/a/b/c", 512),
            ("/a/b/c", 513),
            (long.as_str(), 70_000),
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let frame = TarFrame::for_file(path, 0o644, len as u64).unwrap();
            let framed = [&frame.head[..], &data, &frame.tail[..]].concat();
            assert_eq!(
                framed,
                tar_of(path, 0o644, &data),
                "{path} with {len} bytes"
            );
            let mut archive = tar::Archive::new(&framed[..]);
            let mut files = archive.entries().unwrap().filter_map(|e| {
                let mut e = e.unwrap();
                (e.header().entry_type() == tar::EntryType::Regular).then(|| {
                    let mut got = Vec::new();
                    e.read_to_end(&mut got).unwrap();
                    (e.path().unwrap().display().to_string(), got)
                })
            });
            assert_eq!(
                files.next(),
                Some((path.trim_start_matches('/').to_owned(), data))
            );
        }
        assert!(TarFrame::for_file("/", 0o644, 1).is_err());
    }

    #[test]
    fn upload_chunks_reuse_the_buffers_the_upload_dropped() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut sink = ChunkSender::new(tx);
        sink.write_all(&vec![1u8; CHUNK]).unwrap();
        let first = rx.try_recv().unwrap().unwrap();
        assert_eq!(first.len(), CHUNK);
        let first_ptr = first.as_ptr();
        let spares = |sink: &ChunkSender| sink.spares.len();
        assert_eq!(spares(&sink), 0);
        drop(first);
        assert_eq!(spares(&sink), 1, "the dropped chunk's buffer was not kept");
        sink.write_all(&vec![2u8; CHUNK]).unwrap();
        assert_eq!(spares(&sink), 0, "the kept buffer was not taken");
        let second = rx.try_recv().unwrap().unwrap();
        sink.write_all(&vec![3u8; CHUNK]).unwrap();
        let third = rx.try_recv().unwrap().unwrap();
        assert!(second.iter().all(|&b| b == 2) && third.iter().all(|&b| b == 3));
        assert!(
            [second.as_ptr(), third.as_ptr()].contains(&first_ptr),
            "the dropped chunk's buffer was not reused"
        );
        assert_ne!(second.as_ptr(), third.as_ptr());
        // Chunks outliving their layer's sender are simply freed.
        drop(sink);
        drop((second, third));
    }
}
