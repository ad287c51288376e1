//! Plain HTTP(S) downloads (`ADD https://…`) over the registry client's HTTP stack: the same trust
//! store, proxy settings, timeouts and runtime as registry transfers, so a program that pulls
//! images and downloads files carries one HTTP client, not two.

use std::io::{self, Read};

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, LAST_MODIFIED};

use crate::client::{status_err, Client};
use crate::error::{http_err, RegistryError};

/// A download whose status was 2xx; the body streams through [`Download::chunk`].
#[derive(Debug)]
pub struct Download {
    url: String,
    last_modified: Option<String>,
    content_length: Option<u64>,
    resp: reqwest::Response,
}

impl Download {
    /// The URL the body came from, after redirects.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `Last-Modified` header as sent (an HTTP date), for the downloaded file's mtime.
    pub fn last_modified(&self) -> Option<&str> {
        self.last_modified.as_deref()
    }

    /// The `Content-Length` header, when the server sent one.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, RegistryError> {
        self.resp.chunk().await.map_err(http_err(&self.url))
    }
}

impl Client {
    /// Starts a GET of `url` (`http` or `https`), following redirects, with the client's trust
    /// store and proxies and no registry credentials. A status other than 2xx is an error naming
    /// the URL and the status.
    pub async fn get(&self, url: &str) -> Result<Download, RegistryError> {
        let parsed = url::Url::parse(url).map_err(|e| RegistryError::Reference {
            reference: url.to_string(),
            reason: e.to_string(),
        })?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(RegistryError::Reference {
                reference: url.to_string(),
                reason: "only http and https URLs can be downloaded".into(),
            });
        }
        let resp = self
            .plain_http()
            .get(parsed)
            .send()
            .await
            .map_err(http_err(url))?;
        let final_url = resp.url().to_string();
        if !resp.status().is_success() {
            return Err(status_err(resp, &final_url).await);
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let last_modified = header(LAST_MODIFIED);
        let content_length = header(CONTENT_LENGTH).and_then(|v| v.parse().ok());
        Ok(Download {
            url: final_url,
            last_modified,
            content_length,
            resp,
        })
    }
}

/// [`Download`] as a blocking reader, driven by a [`BlockingClient`](crate::BlockingClient)'s
/// runtime; read errors carry the [`RegistryError`] (which names the URL).
#[derive(Debug)]
pub struct BlockingDownload<'a> {
    pub(crate) rt: &'a tokio::runtime::Runtime,
    pub(crate) inner: Download,
    pub(crate) pending: Bytes,
}

impl BlockingDownload<'_> {
    /// The URL the body came from, after redirects.
    pub fn url(&self) -> &str {
        self.inner.url()
    }

    /// The `Last-Modified` header as sent.
    pub fn last_modified(&self) -> Option<&str> {
        self.inner.last_modified()
    }

    /// The `Content-Length` header, when the server sent one.
    pub fn content_length(&self) -> Option<u64> {
        self.inner.content_length()
    }
}

impl Read for BlockingDownload<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            match self.rt.block_on(self.inner.chunk()) {
                Ok(Some(b)) => self.pending = b,
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.pending.len());
        let head = self.pending.split_to(n);
        buf.get_mut(..n)
            .ok_or_else(|| io::Error::other("buffer shorter than its length"))?
            .copy_from_slice(&head);
        Ok(n)
    }
}
