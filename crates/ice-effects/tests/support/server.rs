//! A tiny loopback HTTP server for the HTTP effector's tests: it records each request it receives and answers
//! by path (`/hello`, `/echo`, `/chunked`, `/continue`, `/eof`, `/big`, `/short`, `/silent`, `/echo-headers`).

#![allow(dead_code)] // each test crate uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
}

impl Server {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (Arc::clone(&seen), Arc::clone(&connections));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let s = Arc::clone(&s);
                std::thread::spawn(move || handle(stream, &s));
            }
        });
        Self { addr, seen, connections }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn handle(mut stream: TcpStream, seen: &Mutex<Vec<Seen>>) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut request = Seen { head, body: data[head_end + 4..].to_vec() };
    let length = request.header("content-length").map_or(0, |v| v.parse::<usize>().unwrap());
    while request.body.len() < length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.body.extend_from_slice(&buf[..n]),
        }
    }
    seen.lock().unwrap().push(request.clone());
    let path = request.head.split(' ').nth(1).unwrap_or("/").to_owned();
    let response: Vec<u8> = match path.as_str() {
        "/hello" => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: session=s3cr3t\r\nX-Plain: v\r\n\r\nhello".to_vec()
        }
        "/echo" => {
            let mut r = format!("HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n", request.body.len()).into_bytes();
            r.extend_from_slice(&request.body);
            r
        }
        "/chunked" => {
            let chunks = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: t\r\n\r\n";
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}").into_bytes()
        }
        "/echo-headers" => {
            // Echoes the request's Authorization and X-Key back in response headers, as a careless server might.
            let echo = |name: &str| request.header(name).unwrap_or_default();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Seen-Auth: {}\r\nX-Seen-Key: got {} here\r\n\r\n",
                echo("authorization"),
                echo("x-key")
            )
            .into_bytes()
        }
        "/continue" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        "/eof" => b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec(),
        "/big" => {
            let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
            r.extend(std::iter::repeat_n(b'z', 100_000));
            r
        }
        "/short" => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec(),
        "/silent" => {
            // Never answers; holds the connection until the client gives up.
            std::thread::sleep(Duration::from_secs(3));
            return;
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&response);
}
