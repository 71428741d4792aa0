//! Downloading a transcript from an attachment (`File`) field, safely.
//!
//! An attachment URL comes from a record an operator can edit, so it is untrusted: the download only
//! goes over https, only to Airtable's attachment hosts by default (Airtable serves expiring download URLs
//! from `airtableusercontent.com` subdomains such as `v5.airtableusercontent.com`, and older ones from
//! `dl.airtable.com` — see Airtable's support article "Airtable attachment URL behavior"), follows
//! redirects only to allowed hosts, stops reading as soon as the size cap is passed (the body is
//! streamed chunk by chunk, and a too-large `Content-Length` is refused before reading), and gives up
//! after a timeout. This keeps a malicious record from turning the worker into a proxy to internal
//! addresses or from exhausting its memory.

use std::time::Duration;

use url::Url;

/// What a download may do.
#[derive(Debug, Clone)]
pub struct AttachmentPolicy {
    /// Hosts allowed, matched exactly or as a parent domain (`airtableusercontent.com` allows
    /// `v5.airtableusercontent.com`).
    pub allowed_hosts: Vec<String>,
    /// Largest body accepted, in bytes.
    pub max_bytes: u64,
    /// Whole-download timeout.
    pub timeout: Duration,
    /// Accept `http://` URLs. Only for tests against a local server; never enable in production.
    pub allow_insecure_http: bool,
}

impl Default for AttachmentPolicy {
    fn default() -> Self {
        AttachmentPolicy {
            allowed_hosts: vec!["airtableusercontent.com".into(), "dl.airtable.com".into()],
            max_bytes: 20 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            allow_insecure_http: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    #[error("attachment URL is not a valid URL: {0}")]
    InvalidUrl(String),
    #[error(
        "attachment URL must use https (got {0}); re-upload the file to the record's File field"
    )]
    NotHttps(String),
    #[error(
        "attachment host \"{0}\" is not allowed; only Airtable attachment hosts are downloaded (configure the allow-list to add one)"
    )]
    HostNotAllowed(String),
    #[error(
        "attachment is larger than the {max} byte limit; paste a shorter transcript or raise the limit"
    )]
    TooLarge { max: u64 },
    #[error("attachment download did not finish within {0:?}")]
    Timeout(Duration),
    #[error(
        "attachment download answered HTTP {0}; the URL may have expired, fetch the record again"
    )]
    Status(u16),
    #[error("attachment download was redirected where it may not go (or too often): {0}")]
    Redirect(String),
    #[error("attachment download failed: {0}")]
    Network(String),
    #[error("{}", crate::NO_TLS_PROVIDER)]
    TlsProviderMissing,
}

impl AttachmentError {
    pub fn code(&self) -> &'static str {
        match self {
            AttachmentError::InvalidUrl(_) => "ATTACHMENT_INVALID_URL",
            AttachmentError::NotHttps(_) => "ATTACHMENT_NOT_HTTPS",
            AttachmentError::HostNotAllowed(_) => "ATTACHMENT_HOST_NOT_ALLOWED",
            AttachmentError::TooLarge { .. } => "ATTACHMENT_TOO_LARGE",
            AttachmentError::Timeout(_) => "ATTACHMENT_TIMEOUT",
            AttachmentError::Status(_) => "ATTACHMENT_HTTP_STATUS",
            AttachmentError::Redirect(_) => "ATTACHMENT_REDIRECT_REFUSED",
            AttachmentError::Network(_) => "ATTACHMENT_NETWORK",
            AttachmentError::TlsProviderMissing => "TLS_PROVIDER_MISSING",
        }
    }

    /// Network errors, timeouts and 5xx may succeed later; the rest will not.
    pub fn is_transient(&self) -> bool {
        match self {
            AttachmentError::Timeout(_) | AttachmentError::Network(_) => true,
            AttachmentError::Status(s) => *s >= 500 || *s == 429,
            _ => false,
        }
    }
}

fn check_url(url: &Url, policy: &AttachmentPolicy) -> Result<(), AttachmentError> {
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_insecure_http => {}
        other => return Err(AttachmentError::NotHttps(other.to_string())),
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let allowed = policy.allowed_hosts.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        host == h || host.ends_with(&format!(".{h}"))
    });
    if allowed {
        Ok(())
    } else {
        Err(AttachmentError::HostNotAllowed(host))
    }
}

/// Downloads an attachment under `policy`. The program must have installed a rustls crypto
/// provider first (see [`crate::tls_provider_installed`]).
pub async fn download(url: &str, policy: &AttachmentPolicy) -> Result<Vec<u8>, AttachmentError> {
    let parsed = Url::parse(url).map_err(|e| AttachmentError::InvalidUrl(e.to_string()))?;
    check_url(&parsed, policy)?;
    if !crate::tls_provider_installed() {
        return Err(AttachmentError::TlsProviderMissing);
    }
    let redirect_policy = policy.clone();
    let client = reqwest::Client::builder()
        .timeout(policy.timeout)
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else if let Err(e) = check_url(attempt.url(), &redirect_policy) {
                attempt.error(e)
            } else {
                attempt.follow()
            }
        }))
        .build()
        .map_err(|e| AttachmentError::Network(e.to_string()))?;
    let fut = fetch(client, parsed, policy.max_bytes);
    match tokio::time::timeout(policy.timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(AttachmentError::Timeout(policy.timeout)),
    }
}

async fn fetch(client: reqwest::Client, url: Url, max: u64) -> Result<Vec<u8>, AttachmentError> {
    let net = |e: reqwest::Error| {
        if e.is_redirect() {
            AttachmentError::Redirect(e.without_url().to_string())
        } else if e.is_timeout() {
            AttachmentError::Network("timed out".into())
        } else {
            AttachmentError::Network(e.without_url().to_string())
        }
    };
    let mut resp = client.get(url).send().await.map_err(net)?;
    if !resp.status().is_success() {
        return Err(AttachmentError::Status(resp.status().as_u16()));
    }
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(AttachmentError::TooLarge { max });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(net)? {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(AttachmentError::TooLarge { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_http_and_foreign_hosts_before_connecting() {
        let p = AttachmentPolicy::default();
        let e = download("http://v5.airtableusercontent.com/x", &p)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "ATTACHMENT_NOT_HTTPS");
        let e = download("https://169.254.169.254/latest", &p)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "ATTACHMENT_HOST_NOT_ALLOWED");
        let e = download("https://airtableusercontent.com.evil.example/x", &p)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "ATTACHMENT_HOST_NOT_ALLOWED");
        assert!(
            check_url(
                &Url::parse("https://v5.airtableusercontent.com/a").unwrap(),
                &p
            )
            .is_ok()
        );
        assert!(check_url(&Url::parse("https://dl.airtable.com/a").unwrap(), &p).is_ok());
    }
}
