//! Kernel TLS: after rustls finishes a handshake, the record layer moves into the kernel
//! (`TCP_ULP "tls"`) through the `ktls` crate, so reads and writes are plain socket calls.
//!
//! The kernel is probed once at start-up for the suites it can take, per TLS version and
//! direction pair (`ktls::CompatibleCiphers`). A connection is handed off only when its
//! listener allows it (`ktls = "auto"` or `"on"`) and the probe covers the negotiated suite;
//! otherwise it stays in userspace rustls. The hand-off happens on an established connection:
//! the handshake ran over a `CorkStream`, which stops reading at a record boundary, and the
//! plaintext rustls already decrypted is drained and served first, so no byte is lost. A
//! connection the kernel refuses at that point is closed and counted (the rustls state is
//! consumed by then); the probe makes that rare.
//!
//! TLS 1.3 KeyUpdate: Linux before 6.14 cannot rekey a kTLS socket; a peer's KeyUpdate there
//! makes the next read fail and the connection ends, never with corrupted data.

use std::sync::OnceLock;

use rustls::SupportedCipherSuite;

/// What the kernel of this node can do.
pub struct KernelTls {
    ciphers: Option<ktls::CompatibleCiphers>,
}

static PROBED: OnceLock<KernelTls> = OnceLock::new();

/// Probes the kernel once; later calls return the first answer.
pub async fn probe() -> &'static KernelTls {
    if let Some(k) = PROBED.get() {
        return k;
    }
    let ciphers = match ktls::CompatibleCiphers::new().await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "cannot probe kernel TLS");
            None
        }
    };
    let k = PROBED.get_or_init(|| KernelTls { ciphers });
    if k.available() {
        tracing::info!(ciphers = %k.describe(), "kernel TLS available");
    } else {
        tracing::info!(
            "kernel TLS not available (no CONFIG_TLS or no tls module); TLS stays in userspace"
        );
    }
    k
}

/// The probe's answer, once [`probe`] ran.
pub fn probed() -> Option<&'static KernelTls> {
    PROBED.get()
}

impl KernelTls {
    /// Whether the kernel takes any suite at all.
    pub fn available(&self) -> bool {
        self.ciphers.as_ref().is_some_and(|c| {
            [&c.tls12, &c.tls13]
                .iter()
                .any(|v| v.aes_gcm_128 || v.aes_gcm_256 || v.chacha20_poly1305)
        })
    }

    /// Whether a connection that negotiated `suite` can move into the kernel.
    pub fn supports(&self, suite: SupportedCipherSuite) -> bool {
        self.ciphers
            .as_ref()
            .is_some_and(|c| c.is_compatible(suite))
    }

    /// `TLS 1.3: AES-128-GCM AES-256-GCM; TLS 1.2: AES-128-GCM`, or `none`.
    pub fn describe(&self) -> String {
        let Some(c) = &self.ciphers else {
            return "none".into();
        };
        let list = |v: &ktls::CompatibleCiphersForVersion| {
            [
                (v.aes_gcm_128, "AES-128-GCM"),
                (v.aes_gcm_256, "AES-256-GCM"),
                (v.chacha20_poly1305, "CHACHA20-POLY1305"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(" ")
        };
        let parts: Vec<String> = [("TLS 1.3", &c.tls13), ("TLS 1.2", &c.tls12)]
            .iter()
            .map(|(v, set)| (v, list(set)))
            .filter(|(_, l)| !l.is_empty())
            .map(|(v, l)| format!("{v}: {l}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join("; ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_probe_answers_once_and_agrees_with_itself() {
        let k = probe().await;
        assert!(std::ptr::eq(k, probe().await));
        let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
        // Whatever this kernel can do, the summary and the per-suite answer agree.
        assert_eq!(k.available(), k.describe() != "none");
        if k.supports(suite) {
            assert!(k.describe().contains("AES-128-GCM"));
        }
        // The development kernel has no kTLS; /proc/net/tls_stat exists exactly when the tls
        // module is loaded, and then the probe finds at least one suite.
        if !std::path::Path::new("/proc/net/tls_stat").exists() {
            assert!(!k.available(), "{}", k.describe());
        }
    }
}
