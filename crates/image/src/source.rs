//! Opening model sources under the source policy: https only, no internal addresses (checked at
//! connect time by a DNS resolver, and for IP literals before connecting), redirects followed by
//! hand so each hop is checked and the auth header only goes to the original host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION, RANGE,
};
use url::Url;

use crate::error::{Error, Result, describe_reqwest};
use crate::pool::{Home, Pooled, Spares};
use crate::recipe::Source;
use crate::registry::ByteStream;

const MAX_REDIRECTS: usize = 10;

/// Which model sources are acceptable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourcePolicy {
    /// Allow `http://` and hosts that are (or resolve to) loopback, link-local or private
    /// addresses. Only for tests and local demos.
    pub allow_private_sources: bool,
    /// Allow `file://` URLs. Never in operator mode.
    pub allow_file_sources: bool,
}

/// An opened download.
pub(crate) struct Download {
    pub(crate) stream: ByteStream,
    pub(crate) len: Option<u64>,
}

/// Opens sources according to the policy.
pub(crate) struct SourceFetcher {
    http: reqwest::Client,
    policy: SourcePolicy,
    ranged: Ranged,
    /// Room for ranges in memory across all downloads of this builder, so that concurrent
    /// layers share one bound instead of multiplying it.
    budget: Arc<RangeBudget>,
}

/// How a large download is split: `connections` ranged requests in flight, each for `segment`
/// bytes, re-ordered into the one stream the layer pipeline reads. One connection (or a source
/// without ranges) is one plain GET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ranged {
    pub(crate) connections: usize,
    pub(crate) segment: u64,
    /// Bytes of ranges held in memory at once across all downloads.
    pub(crate) budget: u64,
}

/// Attempts per segment (the first and two resumptions from where a broken range stopped).
const SEGMENT_ATTEMPTS: u32 = 3;

/// Error raised by the resolver when every address of a name is forbidden.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to internal addresses ({addrs})")]
struct ForbiddenAddress {
    host: String,
    addrs: String,
}

struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| !is_internal(a.ip()))
                .collect();
            if public.is_empty() {
                let addrs = all
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(ForbiddenAddress { host, addrs })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// True for loopback, link-local, private, CGNAT, unique-local, multicast, unspecified and
/// other non-global addresses (cluster pod/service ranges live in the private ranges).
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // fc00::/7 unique local
                || (seg0 & 0xffc0) == 0xfe80 // fe80::/10 link local
                || (seg0 & 0xffc0) == 0xfec0 // fec0::/10 site local (deprecated)
                || (seg0 == 0x0064 && v6.segments()[1] == 0xff9b) // 64:ff9b::/96 NAT64 can reach internal v4
                || (seg0 == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 CGNAT
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240
}

/// `scheme://host[:port]/path`, never the query string (it may carry tokens).
pub(crate) fn display_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
            if let Some(p) = u.port() {
                s.push_str(&format!(":{p}"));
            }
            s.push_str(u.path());
            s
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

/// The process's HTTP clients for model sources, one per address policy, shared by every
/// builder.
fn shared_http(allow_private_sources: bool) -> Result<reqwest::Client> {
    static GUARDED: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    static OPEN: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let cell = if allow_private_sources {
        &OPEN
    } else {
        &GUARDED
    };
    crate::error::shared_client(cell, || {
        let b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(8);
        if allow_private_sources {
            b
        } else {
            // A proxy would resolve names itself and bypass the address check.
            b.no_proxy().dns_resolver(Arc::new(GuardedResolver))
        }
    })
}

impl SourceFetcher {
    pub(crate) fn new(policy: SourcePolicy, ranged: Ranged) -> Result<Self> {
        let http = shared_http(policy.allow_private_sources)?;
        Ok(Self {
            http,
            policy,
            budget: Arc::new(RangeBudget::new(ranged)),
            ranged,
        })
    }

    fn check_url(&self, name: &str, url: &Url) -> Result<()> {
        let forbid = |reason: String| Error::ForbiddenSource {
            name: name.to_owned(),
            url: display_url(url.as_str()),
            reason,
        };
        match url.scheme() {
            "https" => {}
            "http" if self.policy.allow_private_sources => {}
            "http" => return Err(forbid("plain http is not allowed; use an https URL".into())),
            "file" if self.policy.allow_file_sources => return Ok(()),
            "file" => return Err(forbid("file:// sources are disabled".into())),
            other => {
                return Err(forbid(format!(
                    "scheme {other:?} is not supported; use https"
                )));
            }
        }
        let internal = match url.host() {
            Some(url::Host::Ipv4(ip)) => is_internal(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => is_internal(IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) => {
                d.eq_ignore_ascii_case("localhost")
                    || d.to_ascii_lowercase().ends_with(".localhost")
            }
            None => return Err(forbid("URL has no host".into())),
        };
        if internal && !self.policy.allow_private_sources {
            return Err(forbid(
                "the host is a loopback, link-local or private address".into(),
            ));
        }
        Ok(())
    }

    /// Opens a source: checks the policy, follows redirects, checks status and content type.
    pub(crate) async fn open(&self, name: &str, source: &Source) -> Result<Download> {
        let original = Url::parse(&source.url)
            .map_err(|e| Error::InvalidRecipe(format!("model {name}: invalid URL: {e}")))?;
        self.check_url(name, &original)?;
        if original.scheme() == "file" {
            return self.open_file(name, &original).await;
        }
        let auth = match &source.auth {
            Some(a) => {
                let n = HeaderName::from_bytes(a.header.as_bytes()).map_err(|_| {
                    Error::InvalidRecipe(format!("model {name}: invalid auth header name"))
                })?;
                let mut v = HeaderValue::from_str(a.value.expose()).map_err(|_| {
                    Error::InvalidRecipe(format!("model {name}: invalid auth header value"))
                })?;
                v.set_sensitive(true);
                Some((n, v))
            }
            None => None,
        };
        let shown = display_url(original.as_str());
        let mut url = original.clone();
        let mut hops = 0;
        let ranged = self.ranged.connections > 1 && self.ranged.segment > 0;
        let resp = loop {
            let mut rb = self.http.get(url.clone());
            if ranged {
                // The first segment: a 206 says the source takes ranges (and its size), a 200
                // that it does not, and then this one response is the whole download.
                rb = rb.header(RANGE, format!("bytes=0-{}", self.ranged.segment - 1));
            }
            if let Some((n, v)) = &auth
                && same_origin(&url, &original)
            {
                rb = rb.header(n.clone(), v.clone());
            }
            let resp = rb
                .send()
                .await
                .map_err(|e| self.network_error(name, &shown, e))?;
            if resp.status().is_redirection() {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(Error::SourceHttp {
                        name: name.into(),
                        url: shown,
                        status: resp.status().as_u16(),
                    });
                }
                let next = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| Error::SourceHttp {
                        name: name.into(),
                        url: shown.clone(),
                        status: resp.status().as_u16(),
                    })?;
                if next.scheme() == "file" {
                    return Err(Error::ForbiddenSource {
                        name: name.into(),
                        url: shown,
                        reason: "redirect to a file:// URL".into(),
                    });
                }
                self.check_url(name, &next)?;
                url = next;
                continue;
            }
            break resp;
        };
        let status = resp.status();
        match status {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(Error::SourceNotFound {
                    name: name.into(),
                    url: shown,
                    status: status.as_u16(),
                });
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(Error::SourceUnauthorized {
                    name: name.into(),
                    url: shown,
                    status: status.as_u16(),
                });
            }
            _ => {
                return Err(Error::SourceHttp {
                    name: name.into(),
                    url: shown,
                    status: status.as_u16(),
                });
            }
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if content_type.to_ascii_lowercase().starts_with("text/html") {
            return Err(Error::HtmlInsteadOfFile {
                name: name.into(),
                url: shown,
                content_type,
            });
        }
        if status == StatusCode::PARTIAL_CONTENT {
            let Some((0, end, total)) = content_range(&resp) else {
                return Err(Error::SourceNetwork {
                    name: name.into(),
                    url: shown,
                    detail: "answered a range request with an unusable Content-Range".into(),
                });
            };
            let segment = Segment {
                http: self.http.clone(),
                url,
                auth,
                original,
                name: name.to_owned(),
                shown,
            };
            return Ok(segment.download(resp, end, total, self.ranged, self.budget.clone()));
        }
        let len = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let stream = resp
            .bytes_stream()
            .map_err(|e| std::io::Error::other(describe_reqwest(e)))
            .boxed();
        Ok(Download { stream, len })
    }

    async fn open_file(&self, name: &str, url: &Url) -> Result<Download> {
        let path = url
            .to_file_path()
            .map_err(|_| Error::InvalidRecipe(format!("model {name}: invalid file URL")))?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::SourceNotFound {
                    name: name.into(),
                    url: display_url(url.as_str()),
                    status: 404,
                },
                _ => Error::Io {
                    context: format!("model {name}: opening {}", path.display()),
                    source: e,
                },
            })?;
        let len = file
            .metadata()
            .await
            .map_err(|e| Error::Io {
                context: format!("model {name}: reading metadata"),
                source: e,
            })?
            .len();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).boxed();
        Ok(Download {
            stream,
            len: Some(len),
        })
    }

    fn network_error(&self, name: &str, shown: &str, e: reqwest::Error) -> Error {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = src {
            if let Some(f) = s.downcast_ref::<ForbiddenAddress>() {
                return Error::ForbiddenSource {
                    name: name.into(),
                    url: shown.into(),
                    reason: f.to_string(),
                };
            }
            src = s.source();
        }
        Error::SourceNetwork {
            name: name.into(),
            url: shown.into(),
            detail: describe_reqwest(e),
        }
    }
}

/// The builder's room for downloaded ranges: `budget / segment` buffers of one segment each.
/// A buffer is reused while downloads run (no allocator churn, and the budget is the memory,
/// whatever the allocator keeps); when the last one comes back, the idle builder frees them.
struct RangeBudget {
    permits: Arc<tokio::sync::Semaphore>,
    total: usize,
    spares: Spares,
}

impl RangeBudget {
    fn new(ranged: Ranged) -> Self {
        let total = (ranged.budget / ranged.segment.max(1)).max(1) as usize;
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(total)),
            total,
            spares: Spares::default(),
        }
    }

    /// Waits for room (first come, first served) and returns it with an empty buffer.
    async fn acquire(self: Arc<Self>) -> std::io::Result<RangeBuf> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let bytes = self.spares.take();
        Ok(Pooled::new(
            bytes,
            RangeRoom {
                budget: self,
                _permit: permit,
            },
        ))
    }
}

/// A downloaded range in one buffer, holding its room in the budget until the pipeline has
/// dropped the last slice of it (so bytes waiting in the layer's channels count too).
type RangeBuf = Pooled<RangeRoom>;

struct RangeRoom {
    budget: Arc<RangeBudget>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Home for RangeRoom {
    fn welcome(&self, bytes: Vec<u8>) {
        // This range's permit is released right after: all others are free, nothing runs.
        if self.budget.permits.available_permits() + 1 >= self.budget.total {
            self.budget.spares.clear();
        } else {
            self.budget.spares.keep(bytes, usize::MAX);
        }
    }
}

/// Slices of a range handed to the pipeline (the layer channels hold a few of them).
const SLICE: usize = 256 << 10;

/// A range's bytes as pipeline-sized slices of its one buffer.
fn slices(range: RangeBuf) -> impl Iterator<Item = bytes::Bytes> {
    let whole = range.into_bytes();
    let len = whole.len();
    (0..len)
        .step_by(SLICE)
        .map(move |at| whole.slice(at..(at + SLICE).min(len)))
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = std::result::Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// `(first, last, total)` of a `Content-Range: bytes first-last/total`.
fn content_range(resp: &reqwest::Response) -> Option<(u64, u64, u64)> {
    let v = resp.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total) = (
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (first <= last && last < total).then_some((first, last, total))
}

/// What the ranged requests of one download share.
#[derive(Clone)]
struct Segment {
    http: reqwest::Client,
    /// The URL after redirects.
    url: Url,
    auth: Option<(HeaderName, HeaderValue)>,
    original: Url,
    name: String,
    shown: String,
}

impl Segment {
    /// The download of `total` bytes whose first range (`0..=first_end`) `first` is answering:
    /// the other ranges are requested `ranged.connections` at a time and yielded in order; the
    /// bytes of all ranges, wherever they are in the pipeline, stay within the builder's budget.
    fn download(
        self,
        first: reqwest::Response,
        first_end: u64,
        total: u64,
        ranged: Ranged,
        budget: Arc<RangeBudget>,
    ) -> Download {
        let mut ranges = vec![(0, first_end)];
        let mut start = first_end + 1;
        while start < total {
            let end = (start + ranged.segment).min(total) - 1;
            ranges.push((start, end));
            start = end + 1;
        }
        let mut first = Some(first);
        // Room in the budget is taken in range order, so a download's next range is never
        // waiting behind its own later ones (nor is the budget held only by ranges that cannot
        // be consumed yet). Each range is then a task, so its connection keeps reading while
        // the pipeline is busy with the range before it; dropping the download aborts them.
        let stream = futures::stream::iter(ranges)
            .then(move |range| {
                let budget = budget.clone();
                async move { (range, budget.acquire().await) }
            })
            .map(move |((a, b), room)| {
                let open = first.take();
                let segment = self.clone();
                let task = AbortOnDrop(tokio::spawn(async move {
                    let mut room = room?;
                    segment.fetch(a, b, open, &mut room.bytes).await?;
                    Ok(room)
                }));
                async move {
                    match task.await {
                        Ok(r) => r,
                        Err(e) => Err(std::io::Error::other(format!("range task: {e}"))),
                    }
                }
            })
            .buffered(ranged.connections)
            .map_ok(|range| futures::stream::iter(slices(range).map(Ok)))
            .try_flatten()
            .boxed();
        Download {
            stream,
            len: Some(total),
        }
    }

    /// Bytes `start..=end` into `bytes` (empty), from `open` (already requested) or a new
    /// request; a range that breaks is asked for again from where it stopped.
    async fn fetch(
        self,
        start: u64,
        end: u64,
        mut open: Option<reqwest::Response>,
        bytes: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let want = end - start + 1;
        bytes.reserve_exact(want as usize);
        let mut got = 0u64;
        let mut failures = 0;
        let mut last_error = String::new();
        while got < want {
            if failures >= SEGMENT_ATTEMPTS {
                return Err(std::io::Error::other(format!(
                    "bytes {start}-{end} of {}: {last_error} ({failures} attempts)",
                    self.shown
                )));
            }
            let resp = match open.take() {
                Some(r) => r,
                None => {
                    let mut rb = self
                        .http
                        .get(self.url.clone())
                        .header(RANGE, format!("bytes={}-{end}", start + got));
                    if let Some((n, v)) = &self.auth
                        && same_origin(&self.url, &self.original)
                    {
                        rb = rb.header(n.clone(), v.clone());
                    }
                    match rb.send().await {
                        Ok(r) => r,
                        Err(e) => {
                            failures += 1;
                            last_error = describe_reqwest(e);
                            tokio::time::sleep(Duration::from_millis(200 << failures)).await;
                            continue;
                        }
                    }
                }
            };
            match content_range(&resp) {
                Some((first, _, _))
                    if resp.status() == StatusCode::PARTIAL_CONTENT && first == start + got => {}
                _ => {
                    // The source stopped honouring ranges mid-download: nothing to resume.
                    return Err(std::io::Error::other(format!(
                        "{} answered bytes {}-{end} with HTTP {} ({}); not resumable",
                        self.shown,
                        start + got,
                        resp.status().as_u16(),
                        resp.headers()
                            .get(CONTENT_RANGE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("no Content-Range")
                    )));
                }
            }
            let before = got;
            let mut body = resp.bytes_stream();
            let mut broke = false;
            while let Some(item) = body.next().await {
                match item {
                    Ok(chunk) => {
                        got += chunk.len() as u64;
                        if got > want {
                            return Err(std::io::Error::other(format!(
                                "{} sent more than bytes {start}-{end}",
                                self.shown
                            )));
                        }
                        bytes.extend_from_slice(&chunk);
                    }
                    Err(e) => {
                        failures += 1;
                        last_error = describe_reqwest(e);
                        tracing::debug!(model = %self.name, start, end, got, "a range broke; resuming where it stopped");
                        broke = true;
                        break;
                    }
                }
            }
            if !broke && got < want {
                failures += 1;
                last_error = format!("the response ended after {} bytes", got - before);
            }
        }
        Ok(())
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(s.parse().unwrap()), "{s} should be internal");
        }
        for s in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "1.1.1.1",
        ] {
            assert!(!is_internal(s.parse().unwrap()), "{s} should be public");
        }
    }

    #[tokio::test]
    async fn range_buffers_are_reused_while_busy_and_freed_when_idle() {
        let budget = Arc::new(RangeBudget::new(Ranged {
            connections: 2,
            segment: 4,
            budget: 8,
        }));
        let mut a = budget.clone().acquire().await.unwrap();
        a.bytes.extend_from_slice(b"abcd");
        let b = budget.clone().acquire().await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), budget.clone().acquire());
        assert!(third.await.is_err(), "a third range waits for room");
        drop(a);
        assert_eq!(budget.spares.len(), 1, "kept for the next range");
        let c = budget.clone().acquire().await.unwrap();
        assert!(c.bytes.is_empty(), "a reused buffer comes back empty");
        assert!(c.bytes.capacity() >= 4, "and keeps its allocation");
        drop(b);
        drop(c);
        assert!(
            budget.spares.len() == 0,
            "an idle builder holds no range buffers"
        );
    }

    #[tokio::test]
    async fn slices_hold_the_room_until_the_last_is_dropped() {
        let budget = Arc::new(RangeBudget::new(Ranged {
            connections: 1,
            segment: 1 << 20,
            budget: 1 << 20,
        }));
        let mut range = budget.clone().acquire().await.unwrap();
        range.bytes.resize(SLICE + 10, 7);
        let mut parts: Vec<bytes::Bytes> = slices(range).collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [SLICE, 10]
        );
        assert_eq!(budget.permits.available_permits(), 0);
        parts.remove(0);
        assert_eq!(
            budget.permits.available_permits(),
            0,
            "one slice still waits"
        );
        parts.clear();
        assert_eq!(budget.permits.available_permits(), 1, "room given back");
    }

    #[test]
    fn display_url_drops_query() {
        assert_eq!(
            display_url("https://civitai.com/api/download/models/1?token=SECRET"),
            "https://civitai.com/api/download/models/1"
        );
    }
}
