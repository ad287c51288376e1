//! Plain downloads (`ADD https://…`) through the registry client's HTTP stack, against a small
//! HTTP server on loopback (redirects are followed, the body streams whole, `Last-Modified`
//! reaches the caller, a failure names the URL and the status) and a real registry serving
//! HTTPS (the trust store is the client's).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use common::Registry;
use rbuild_registry::{BlockingClient, ClientOptions, RegistryError};

/// Serves `/file` (a redirect to `/real`), `/real` (`body`, with a Last-Modified date) and a 404
/// for anything else, one HTTP/1.0 response per connection. Returns `http://host:port`.
fn serve(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            let _ = match path.as_str() {
                "/file" => stream
                    .write_all(b"HTTP/1.0 302 Found\r\nLocation: /real\r\nContent-Length: 0\r\n\r\n"),
                "/real" => stream
                    .write_all(
                        format!(
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(&body)),
                _ => stream.write_all(
                    b"HTTP/1.0 404 Not Found\r\nContent-Length: 9\r\n\r\nno such\r\n",
                ),
            };
        }
    });
    format!("http://{addr}")
}

#[test]
fn get_follows_redirects_streams_the_body_and_names_failures() {
    // Larger than one read and than any single chunk, so the reader really streams.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let base = serve(body.clone());
    let c = BlockingClient::new(ClientOptions::default()).expect("client");

    let mut d = c.get(&format!("{base}/file")).expect("get");
    assert_eq!(d.url(), format!("{base}/real"));
    assert_eq!(d.last_modified(), Some("Wed, 21 Oct 2015 07:28:00 GMT"));
    assert_eq!(d.content_length(), Some(body.len() as u64));
    let mut got = Vec::new();
    d.read_to_end(&mut got).expect("read");
    assert_eq!(got.len(), body.len());
    assert!(got == body, "the body arrives byte for byte");

    let missing = format!("{base}/missing");
    match c.get(&missing) {
        Err(e @ RegistryError::Status { status: 404, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&missing) && msg.contains("404"), "{msg}");
        }
        other => panic!("want a 404 naming the URL, got {other:?}"),
    }

    match c.get("ftp://127.0.0.1/x") {
        Err(e @ RegistryError::Reference { .. }) => {
            assert!(e.to_string().contains("ftp://127.0.0.1/x"), "{e}")
        }
        other => panic!("want a refused scheme, got {other:?}"),
    }
}

#[test]
fn get_over_https_trusts_the_client_ca_bundle() {
    let reg = Registry::start_tls();
    let url = format!("https://{}/v2/", reg.host());
    let c = BlockingClient::new(ClientOptions {
        ca_file: Some(reg.dir.path().join("tls-cert.pem")),
        ..ClientOptions::default()
    })
    .expect("client");
    let mut body = String::new();
    c.get(&url)
        .unwrap_or_else(|e| panic!("GET {url} with its CA: {e}\n{}", reg.log()))
        .read_to_string(&mut body)
        .expect("read");
    assert_eq!(body.trim(), "{}");

    // The system bundle does not know the registry's self-signed certificate: refused, even on
    // loopback (registry insecurity never applies to plain downloads), and the error names the URL.
    let c = BlockingClient::new(ClientOptions::default()).expect("client");
    match c.get(&url) {
        Err(e @ RegistryError::Http { .. }) => assert!(e.to_string().contains(&url), "{e}"),
        other => panic!("want a TLS failure naming {url}, got {other:?}"),
    }
}
