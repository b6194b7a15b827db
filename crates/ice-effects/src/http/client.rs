//! A small HTTP/1.1 client over `std::net::TcpStream`: one request per connection (`Connection: close`), one
//! deadline for connect plus the whole exchange, bounded status line and headers, and a body read by
//! `Content-Length`, by chunked transfer coding, or to EOF — kept up to a cap, then cut and marked truncated.
//!
//! Errors are split by what the server may have seen: [`SendError::Connect`] means nothing was sent (a retry is
//! safe); [`SendError::AfterConnect`] means the request may have arrived and been acted on.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::url::Url;

/// Longest status or header line.
const MAX_LINE: usize = 8 * 1024;
/// Largest header section.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most header fields.
const MAX_HEADERS: usize = 200;

/// A request to send.
pub(crate) struct Request<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// Where.
    pub url: &'a Url,
    /// Every header to send, in order (already validated).
    pub headers: &'a [(String, String)],
    /// The body; `Content-Length` is sent when there is one or the method is not GET/HEAD.
    pub body: Option<&'a [u8]>,
}

/// A response as received.
#[derive(Debug)]
pub(crate) struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body kept (at most the cap).
    pub body: Vec<u8>,
    /// The body's full size when known (`Content-Length`), else what was received.
    pub body_total: u64,
    /// The body was longer than the cap and was cut.
    pub truncated: bool,
    /// The body ended early (EOF, timeout, bad chunking): why.
    pub incomplete: Option<String>,
}

/// Why a request did not produce a response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection was made; nothing was sent.
    Connect(String),
    /// Connected, and the request may have been received; no complete response head came back.
    AfterConnect(String),
}

/// Sends the request and reads the response within `timeout`, keeping at most `max_body` bytes of body.
pub(crate) fn send(req: &Request<'_>, timeout: Duration, max_body: u64) -> Result<Response, SendError> {
    let deadline = Instant::now() + timeout;
    let stream = connect(req.url, deadline)?;
    let mut wire = Wire { stream, buf: Vec::new(), pos: 0, deadline };
    let after = |e: io::Error| SendError::AfterConnect(describe(&e));
    wire.write_all(&encode(req)).map_err(after)?;
    let (status, headers) = wire.read_head().map_err(after)?;
    let mut response =
        Response { status, headers, body: Vec::new(), body_total: 0, truncated: false, incomplete: None };
    let no_body = req.method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304;
    if !no_body {
        let framing = framing(&response.headers).map_err(|m| SendError::AfterConnect(m.to_owned()))?;
        if let Err(e) = wire.read_body(framing, max_body, &mut response) {
            response.incomplete = Some(describe(&e));
        }
    }
    Ok(response)
}

fn connect(url: &Url, deadline: Instant) -> Result<TcpStream, SendError> {
    let addrs: Vec<SocketAddr> = (url.connect_host(), url.port)
        .to_socket_addrs()
        .map_err(|e| SendError::Connect(format!("cannot resolve {}: {e}", url.host)))?
        .collect();
    let mut last = format!("{} resolves to no address", url.host);
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last = "timed out while connecting".to_owned();
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("{addr}: {}", describe(&e)),
        }
    }
    Err(SendError::Connect(format!("cannot connect to {}: {last}", url.host_port())))
}

fn encode(req: &Request<'_>) -> Vec<u8> {
    let mut head = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", req.method, req.url.target, req.url.host_header());
    for (name, value) in req.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = req.body.unwrap_or_default();
    if req.body.is_some() || !matches!(req.method, "GET" | "HEAD") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    [head.as_bytes(), body].concat()
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

fn framing(headers: &[(String, String)]) -> Result<Framing, &'static str> {
    let mut codings = headers.iter().filter(|(n, _)| n == "transfer-encoding").flat_map(|(_, v)| v.split(','));
    if let Some(last) = codings.by_ref().last() {
        // Transfer-Encoding wins over Content-Length; only a final `chunked` delimits the body.
        return Ok(if last.trim().eq_ignore_ascii_case("chunked") { Framing::Chunked } else { Framing::UntilClose });
    }
    let mut length = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        for part in value.split(',') {
            let part = part.trim();
            if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err("the response has an invalid Content-Length");
            }
            let n: u64 = part.parse().map_err(|_| "the response has an invalid Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("the response has conflicting Content-Length values");
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// A buffered reader/writer bound to one deadline.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    deadline: Instant,
}

impl Wire {
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() { Err(io::Error::new(io::ErrorKind::TimedOut, "the timeout was reached")) } else { Ok(left) }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            self.stream.set_write_timeout(Some(self.left()?))?;
            match self.stream.write(rest) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the server closed the connection")),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads more into the buffer; `Ok(false)` at EOF.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            self.stream.set_read_timeout(Some(self.left()?))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One CRLF- (or LF-) terminated line, without its terminator.
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let mut line = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 1;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() - self.pos > MAX_LINE {
                return Err(invalid("a response line is too long"));
            }
            if !self.fill()? {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
            }
        }
    }

    /// Status line and headers, skipping interim (1xx) responses.
    fn read_head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        loop {
            let line = self.read_line()?;
            let status = parse_status(&line).ok_or_else(|| invalid("the response has no valid status line"))?;
            let headers = self.read_headers()?;
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            return Ok((status, headers));
        }
    }

    fn read_headers(&mut self) -> io::Result<Vec<(String, String)>> {
        let mut headers = Vec::new();
        let mut size = 0;
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                return Ok(headers);
            }
            size += line.len();
            if size > MAX_HEADER_BYTES || headers.len() == MAX_HEADERS {
                return Err(invalid("the response headers are too large"));
            }
            let text = String::from_utf8_lossy(&line);
            let Some((name, value)) = text.split_once(':') else {
                return Err(invalid("the response has a malformed header line"));
            };
            if !super::url::is_token(name) {
                return Err(invalid("the response has a malformed header name"));
            }
            headers.push((name.to_ascii_lowercase(), value.trim_matches([' ', '\t']).to_owned()));
        }
    }

    /// Takes up to `n` buffered-or-read bytes; empty at EOF.
    fn take(&mut self, n: u64) -> io::Result<&[u8]> {
        if self.pos == self.buf.len() && !self.fill()? {
            return Ok(&[]);
        }
        let available = self.buf.len() - self.pos;
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(available);
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..start + n])
    }

    fn read_body(&mut self, framing: Framing, max: u64, resp: &mut Response) -> io::Result<()> {
        match framing {
            Framing::Length(len) => {
                resp.body_total = len;
                let mut left = len;
                while left > 0 {
                    let chunk = self.take(left)?;
                    if chunk.is_empty() {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the body ended before Content-Length",
                        ));
                    }
                    left -= chunk.len() as u64;
                    if !keep(&mut resp.body, chunk, max, &mut resp.truncated) {
                        return Ok(());
                    }
                }
                Ok(())
            }
            Framing::UntilClose => loop {
                let chunk = self.take(u64::MAX)?;
                if chunk.is_empty() {
                    return Ok(());
                }
                resp.body_total += chunk.len() as u64;
                if !keep(&mut resp.body, chunk, max, &mut resp.truncated) {
                    return Ok(());
                }
            },
            Framing::Chunked => loop {
                let line = self.read_line()?;
                let size = parse_chunk_size(&line).ok_or_else(|| invalid("the response has a bad chunk size"))?;
                if size == 0 {
                    // Trailer fields are read and dropped.
                    while !self.read_line()?.is_empty() {}
                    return Ok(());
                }
                let mut left = size;
                while left > 0 {
                    let chunk = self.take(left)?;
                    if chunk.is_empty() {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the body ended inside a chunk"));
                    }
                    left -= chunk.len() as u64;
                    resp.body_total += chunk.len() as u64;
                    if !keep(&mut resp.body, chunk, max, &mut resp.truncated) {
                        return Ok(());
                    }
                }
                if !self.read_line()?.is_empty() {
                    return Err(invalid("a chunk is not followed by CRLF"));
                }
            },
        }
    }
}

/// Appends what fits under `max`; false (and `truncated` set) once the cap is passed, to stop reading.
fn keep(body: &mut Vec<u8>, chunk: &[u8], max: u64, truncated: &mut bool) -> bool {
    let room = usize::try_from(max.saturating_sub(body.len() as u64)).unwrap_or(usize::MAX);
    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    if chunk.len() > room {
        *truncated = true;
        return false;
    }
    true
}

fn parse_status(line: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("HTTP/1.")?;
    let (minor, rest) = rest.split_at_checked(1)?;
    if !matches!(minor, "0" | "1") {
        return None;
    }
    let code = rest.strip_prefix(' ')?.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) || (rest.len() > 4 && !rest[4..].starts_with(' ')) {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let digits = text.split(';').next()?.trim_matches([' ', '\t']);
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// A readable description; a read timeout surfaces as WouldBlock on Linux.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "the timeout was reached".to_owned(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 404"), Some(404));
        assert_eq!(parse_status(b"HTTP/1.1 204 "), Some(204));
        for bad in [&b"HTTP/2 200 OK"[..], b"HTTP/1.1 20 OK", b"HTTP/1.1 2000", b"HTTP/1.1 999 x", b"junk"] {
            assert_eq!(parse_status(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn chunk_sizes_and_framing() {
        assert_eq!(parse_chunk_size(b"1a;ext=1"), Some(26));
        assert_eq!(parse_chunk_size(b"zz"), None);
        assert_eq!(parse_chunk_size(b""), None);
        let h = |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert!(matches!(framing(&h(&[("content-length", "5")])), Ok(Framing::Length(5))));
        assert!(matches!(framing(&h(&[("content-length", "5, 5")])), Ok(Framing::Length(5))));
        assert!(framing(&h(&[("content-length", "5"), ("content-length", "6")])).is_err());
        assert!(framing(&h(&[("content-length", "-1")])).is_err());
        let both = h(&[("transfer-encoding", "gzip, chunked"), ("content-length", "3")]);
        assert!(matches!(framing(&both), Ok(Framing::Chunked)));
        assert!(matches!(framing(&h(&[])), Ok(Framing::UntilClose)));
    }
}
