//! One request's passage through ggrokd, measured: an [`Exchange`] is made when a request for a
//! tunnel arrives, rides along with the response body (or the upgraded connection) counting bytes
//! as they pass, and when dropped — at the end of the body, of the connection, or when the public
//! client goes away — adds itself to the tunnel's counters and to the request log.
//!
//! The wrappers count the frames they pass on; when the inspector captures, they also copy the
//! first bytes of each body into its entry ([`crate::inspect`]).

use crate::inspect::{Arrival, Entry, Inspector, Side};
use crate::reqlog::{Record, RequestLog};
use crate::stats::{Outcome, TunnelStats};
use crate::tunnels::Tunnel;
use bytes::Bytes;
use ggrok_proto::ctl::MAX_LOGGED_PATH;
use ggrok_proto::h2io::{RecvBody, StreamIo};
use ggrok_proto::http::Body;
use ggrok_proto::tally::BytesRead;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The header in which the server appends the public client's address.
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The tunnel side of an upgrade: its stream's bytes, once the 200 answering it is sent.
pub type TunnelSide = tokio::sync::oneshot::Receiver<StreamIo>;

/// A request in flight, recorded when dropped.
pub struct Exchange {
    stats: Arc<TunnelStats>,
    log: Arc<RequestLog>,
    started: Instant,
    time_ms: u64,
    host: String,
    method: Method,
    path: Box<str>,
    client: Option<IpAddr>,
    upgrade: Option<Box<str>>,
    status: u16,
    bytes_in: u64,
    /// Request body bytes, counted by the [`RequestBody`] that the local client reads.
    body_in: Option<Arc<AtomicU64>>,
    bytes_out: u64,
    /// The inspector's copy, when it captures.
    capture: Option<Arc<Entry>>,
}

impl Exchange {
    /// A request for `host` arrived on a tunnel with these `stats`; `upgrade` is the protocol of
    /// an upgrade request (`websocket`).
    pub fn start<B>(
        log: &Arc<RequestLog>,
        stats: &Arc<TunnelStats>,
        host: String,
        req: &Request<B>,
        upgrade: Option<&str>,
    ) -> Self {
        stats.started();
        let time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Self {
            stats: stats.clone(),
            log: log.clone(),
            started: Instant::now(),
            time_ms,
            host,
            // Upgrades cross the tunnel as CONNECT; the public client sent a GET.
            method: if upgrade.is_some() { Method::GET } else { req.method().clone() },
            path: logged_path(req.uri()),
            client: client_address(req.headers()),
            upgrade: upgrade.map(Box::from),
            status: 0,
            bytes_in: 0,
            body_in: None,
            bytes_out: 0,
            capture: None,
        }
    }

    /// Captures this request in `inspector` (when it captures), as it went to `tunnel`. Nothing
    /// is copied or allocated when the inspector is off.
    pub fn inspected<B>(mut self, inspector: &Inspector, tunnel: &Tunnel, req: &Request<B>) -> Self {
        if inspector.enabled() {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            self.capture = Some(inspector.store.begin(&Arrival {
                host: &self.host,
                tunnel: &tunnel.host(),
                method: self.method.as_str(),
                path,
                headers: req.headers(),
                client: self.client,
                upgrade: self.upgrade.as_deref(),
                replay_of: None,
            }));
        }
        self
    }

    /// Wraps the request body so that its bytes are counted as the local client reads them.
    pub fn meter_request(&mut self, req: Request<RecvBody>) -> Request<RequestBody> {
        let counter = (!req.body().is_end_stream()).then(|| Arc::new(AtomicU64::new(0)));
        self.body_in = counter.clone();
        let tap = RequestTap { count: counter, capture: self.capture.clone() };
        req.map(|inner| CountedBody { inner, count: tap })
    }

    /// The local service agreed to the upgrade (101, with these headers): the inspector shows it
    /// while the connection is open.
    pub fn upgraded(&mut self, headers: &HeaderMap) {
        self.status = 101;
        if let Some(entry) = &self.capture {
            entry.answered(101, headers);
        }
    }

    /// The status to record instead of the response's (an upgrade answer carried in a header).
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    /// Sends `resp` on with this exchange riding along its body: recorded when the body ends.
    pub fn respond<B>(mut self, resp: Response<B>) -> Response<Body>
    where
        B: HttpBody<Data = Bytes> + Unpin + Send + Sync + 'static,
        B::Error: Into<ggrok_proto::http::BodyError>,
    {
        if self.status == 0 {
            self.status = resp.status().as_u16();
        }
        if let Some(entry) = &self.capture {
            entry.answered(self.status, resp.headers());
        }
        resp.map(|inner| CountedBody { inner, count: self }.map_err(Into::into).boxed())
    }

    /// Copies bytes both ways between the two sides of an upgraded connection (status 101) until
    /// both directions end, counting them; the exchange is recorded when it returns. The tunnel
    /// side comes once the 200 answering the stream is sent.
    pub async fn splice(mut self, public: TunnelSide, local: OnUpgrade) -> io::Result<()> {
        self.status = 101;
        let public = async { public.await.map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe)) };
        let local = async { local.await.map_err(io::Error::other) };
        let (public, local) = tokio::try_join!(public, local)?;
        let (mut from_public, mut from_local) = (BytesRead::default(), BytesRead::default());
        let result =
            ggrok_proto::tally::splice(public, TokioIo::new(local), &mut from_public, &mut from_local).await;
        (self.bytes_in, self.bytes_out) = (from_public.0, from_local.0);
        result
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        let bytes_in = self.bytes_in + self.body_in.as_ref().map_or(0, |c| c.load(Relaxed));
        let timed = self.upgrade.is_none() && self.status != 0;
        if let Some(entry) = self.capture.take() {
            let upgraded = self.upgrade.is_some().then_some((bytes_in, self.bytes_out));
            let error =
                (self.status == 0).then(|| "the public client went away before the answer".to_owned());
            entry.finished(self.status, duration.as_micros() as u64, upgraded, error);
        }
        self.stats.finished(&Outcome {
            status: self.status,
            bytes: (bytes_in, self.bytes_out),
            latency: timed.then_some(duration),
        });
        self.log.push(Record {
            time_ms: self.time_ms,
            host: std::mem::take(&mut self.host),
            method: std::mem::replace(&mut self.method, Method::GET),
            path: std::mem::take(&mut self.path),
            status: self.status,
            duration_us: duration.as_micros() as u64,
            bytes_in,
            bytes_out: self.bytes_out,
            client: self.client,
            upgrade: self.upgrade.take(),
        });
    }
}

/// Path and query, cut at [`MAX_LOGGED_PATH`] bytes (on a character boundary) with `…` added.
fn logged_path(uri: &Uri) -> Box<str> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if path.len() <= MAX_LOGGED_PATH {
        return path.into();
    }
    let mut end = MAX_LOGGED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end]).into()
}

/// The public client: the last entry of the last `X-Forwarded-For`, where the server puts it.
fn client_address(headers: &HeaderMap) -> Option<IpAddr> {
    let value = headers.get_all(X_FORWARDED_FOR).iter().next_back()?.to_str().ok()?;
    value.rsplit(',').next()?.trim().parse().ok()
}

/// What counts the data of a [`CountedBody`].
pub trait Count {
    fn add(&mut self, data: &Bytes);
}

/// A request body's counter, shared with its exchange (none for a body known to be empty), and
/// the inspector's copy.
pub struct RequestTap {
    count: Option<Arc<AtomicU64>>,
    capture: Option<Arc<Entry>>,
}

impl Count for RequestTap {
    fn add(&mut self, data: &Bytes) {
        if let Some(counter) = &self.count {
            counter.fetch_add(data.len() as u64, Relaxed);
        }
        if let Some(entry) = &self.capture {
            entry.tap(Side::Request, data);
        }
    }
}

/// A response body carries its exchange, recorded when the body is dropped.
impl Count for Exchange {
    fn add(&mut self, data: &Bytes) {
        self.bytes_out += data.len() as u64;
        if let Some(entry) = &self.capture {
            entry.tap(Side::Response, data);
        }
    }
}

/// A body whose data bytes are counted as they pass (and copied, up to a limit, when the
/// inspector captures).
pub struct CountedBody<B, C> {
    inner: B,
    count: C,
}

/// A request body on its way to the local service, its bytes counted for its exchange.
pub type RequestBody = CountedBody<RecvBody, RequestTap>;

impl<B: HttpBody<Data = Bytes> + Unpin, C: Count + Unpin> HttpBody for CountedBody<B, C> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.count.add(data);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn exchange(log: &Arc<RequestLog>, stats: &Arc<TunnelStats>, req: &Request<()>) -> Exchange {
        Exchange::start(log, stats, "a.test".into(), req, None)
    }

    #[test]
    fn client_is_the_last_forwarded_address() {
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(X_FORWARDED_FOR, v.parse().unwrap());
            }
            h
        };
        assert_eq!(client_address(&headers(&["10.0.0.1, 203.0.113.7"])), Some([203, 0, 113, 7].into()));
        assert_eq!(client_address(&headers(&["1.1.1.1", "::1"])), Some("::1".parse().unwrap()));
        assert_eq!(client_address(&headers(&["not an address"])), None);
        assert_eq!(client_address(&HeaderMap::new()), None);
    }

    #[test]
    fn long_paths_are_cut() {
        let uri: Uri = format!("http://a.test/{}", "a".repeat(3 * MAX_LOGGED_PATH)).parse().unwrap();
        let path = logged_path(&uri);
        assert_eq!(path.len(), MAX_LOGGED_PATH + '…'.len_utf8());
        assert!(path.ends_with("a…"));
        assert_eq!(&*logged_path(&"http://a.test/x?y=1".parse().unwrap()), "/x?y=1");
    }

    #[tokio::test]
    async fn a_response_is_recorded_when_its_body_ends() {
        let (log, stats) = (Arc::new(RequestLog::new(10)), Arc::new(TunnelStats::default()));
        let req =
            Request::post("http://a.test/up?x=1").header(X_FORWARDED_FOR, "127.0.0.1").body(()).unwrap();
        let exchange = exchange(&log, &stats, &req);
        assert_eq!(stats.active.load(Relaxed), 1);
        let body = Full::new(Bytes::from_static(b"12345")).map_err(|never| match never {});
        let resp = exchange.respond(Response::builder().status(404).body(body).unwrap());
        assert!(log.recent(None).is_empty(), "recorded before the body ended");
        let collected = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(collected.len(), 5);
        let records = log.recent(None);
        let r = &records[0];
        assert_eq!((r.method.as_str(), &*r.path, r.status, r.bytes_out), ("POST", "/up?x=1", 404, 5));
        assert_eq!(r.client, Some([127, 0, 0, 1].into()));
        assert_eq!((stats.active.load(Relaxed), stats.status_4xx.load(Relaxed)), (0, 1));
    }

    #[test]
    fn a_request_abandoned_before_its_answer_has_status_zero() {
        let (log, stats) = (Arc::new(RequestLog::new(10)), Arc::new(TunnelStats::default()));
        drop(exchange(&log, &stats, &Request::get("http://a.test/").body(()).unwrap()));
        assert_eq!(log.recent(None)[0].status, 0);
        assert_eq!(stats.active.load(Relaxed), 0);
        assert!(stats.latency.percentiles().is_none(), "an abandoned request is no latency sample");
    }
}
