//! Compressed message bodies (AMQP `content-encoding`).
//!
//! A gateway sends its request messages compressed with zstd
//! (`content-encoding: zstd`): the broker writes every byte of a quorum
//! queue's messages to its log and syncs it, so fewer bytes mean fewer and
//! shorter log rollovers (each one a burst of disk writes that holds up
//! every confirm behind it). Workers and gateways send their event batches
//! compressed too: the events stream's file is written without a sync, and
//! the kernel writes what it holds out in one burst every half minute or
//! so, which delays the request queue's syncs behind it.
//!
//! Invariants:
//! - Only a body of at most [`ENCODED_MAX_BYTES`] is compressed, and only
//!   when that makes it smaller ([`compress`]): compressing stays a bounded
//!   cost on the sender's thread, and a large document goes as it is.
//! - A reader ([`decode`]) refuses a compressed body that decodes to more
//!   than [`ENCODED_MAX_BYTES`]: a small message never turns into a large
//!   allocation. A body without `content-encoding` (or `identity`) is read
//!   as it is, so uncompressed messages (older gateways, requeued copies)
//!   read as before.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Read as _;

use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe;

/// The `content-encoding` of a zstd-compressed body.
pub const ZSTD: &str = "zstd";

/// Largest body compressed, and the most a compressed body may decode to.
pub const ENCODED_MAX_BYTES: usize = 1 << 20;

/// Bodies smaller than this go as they are (not worth a frame header).
const COMPRESS_MIN_BYTES: usize = 512;

/// zstd's fastest regular level: ~3× on text at several hundred MB/s.
const LEVEL: i32 = 1;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodingError {
    #[error("unsupported content-encoding {0:?}")]
    Unsupported(String),
    #[error("corrupt zstd body: {0}")]
    Corrupt(#[from] std::io::Error),
    #[error("zstd body decodes to more than {ENCODED_MAX_BYTES} bytes")]
    TooLarge,
}

/// `body` compressed with zstd, or `None` when it is to go as it is: too
/// small, larger than [`ENCODED_MAX_BYTES`], or no smaller compressed.
pub fn compress(body: &[u8]) -> Option<Vec<u8>> {
    if !(COMPRESS_MIN_BYTES..=ENCODED_MAX_BYTES).contains(&body.len()) {
        return None;
    }
    thread_local! {
        // One context per thread, reused: making one costs more than
        // compressing a batch of requests.
        static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    }
    COMPRESSOR
        .with_borrow_mut(|slot| {
            let compressor = match slot {
                Some(compressor) => compressor,
                None => slot.insert(Compressor::new(LEVEL).ok()?),
            };
            compressor.compress(body).ok()
        })
        .filter(|compressed| compressed.len() < body.len())
}

/// The body a message with this `content-encoding` carries.
pub fn decode<'a>(encoding: Option<&str>, body: &'a [u8]) -> Result<Cow<'a, [u8]>, EncodingError> {
    match encoding {
        None | Some("") | Some("identity") => Ok(Cow::Borrowed(body)),
        Some(ZSTD) => match zstd_safe::get_frame_content_size(body) {
            // The frame says how large it is (ours always do): refused
            // before any allocation when too large, else decoded at once
            // into a buffer of that size by this thread's context. A frame
            // that lies about its size fails to decode.
            Ok(Some(size)) if size > ENCODED_MAX_BYTES as u64 => Err(EncodingError::TooLarge),
            Ok(Some(size)) => decode_sized(body, size as usize).map(Cow::Owned),
            _ => decode_streamed(body).map(Cow::Owned),
        },
        Some(other) => Err(EncodingError::Unsupported(other.to_owned())),
    }
}

/// A zstd body whose frame header gives its decoded `size`.
fn decode_sized(body: &[u8], size: usize) -> Result<Vec<u8>, EncodingError> {
    thread_local! {
        static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
    }
    DECOMPRESSOR.with_borrow_mut(|slot| {
        let decompressor = match slot {
            Some(decompressor) => decompressor,
            None => slot.insert(Decompressor::new()?),
        };
        let mut decoded = Vec::with_capacity(size);
        decompressor.decompress_to_buffer(body, &mut decoded)?;
        Ok(decoded)
    })
}

/// A zstd body without its size in the header: decoded as a stream, and
/// refused once it passes the limit.
fn decode_streamed(body: &[u8]) -> Result<Vec<u8>, EncodingError> {
    let mut decoded = Vec::with_capacity(body.len().saturating_mul(4).min(ENCODED_MAX_BYTES));
    zstd::stream::read::Decoder::with_buffer(body)?
        .take(ENCODED_MAX_BYTES as u64 + 1)
        .read_to_end(&mut decoded)?;
    if decoded.len() > ENCODED_MAX_BYTES {
        return Err(EncodingError::TooLarge);
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compressed_body_decodes_to_the_same_bytes() {
        let body = "the signature of this document covers every byte ".repeat(60);
        let compressed = compress(body.as_bytes()).expect("text compresses");
        assert!(
            compressed.len() * 3 < body.len(),
            "{} bytes",
            compressed.len()
        );
        let decoded = decode(Some(ZSTD), &compressed).unwrap();
        assert_eq!(decoded.as_ref(), body.as_bytes());
    }

    #[test]
    fn small_large_and_incompressible_bodies_go_as_they_are() {
        assert!(compress(b"{\"v\":1}").is_none());
        assert!(compress(&vec![b'a'; ENCODED_MAX_BYTES + 1]).is_none());
        // Bytes that do not compress (a xorshift stream) are not sent larger.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(compress(&noise).is_none());
    }

    #[test]
    fn an_unencoded_body_is_read_as_it_is() {
        for encoding in [None, Some(""), Some("identity")] {
            let decoded = decode(encoding, b"[1,2]").unwrap();
            assert!(matches!(decoded, Cow::Borrowed(b"[1,2]")));
        }
    }

    #[test]
    fn a_body_that_decodes_past_the_limit_is_refused() {
        // A few kilobytes that would decode to 1 MiB and one byte.
        let bomb = zstd::bulk::compress(&vec![0u8; ENCODED_MAX_BYTES + 1], 19).unwrap();
        assert!(bomb.len() < 4096, "{} bytes", bomb.len());
        assert!(matches!(
            decode(Some(ZSTD), &bomb),
            Err(EncodingError::TooLarge)
        ));
        // Exactly the limit still decodes.
        let full = zstd::bulk::compress(&vec![0u8; ENCODED_MAX_BYTES], 19).unwrap();
        assert_eq!(decode(Some(ZSTD), &full).unwrap().len(), ENCODED_MAX_BYTES);
    }

    /// `body` as one zstd frame that does not say its size (as a streaming
    /// encoder writes it).
    fn streamed(body: &[u8]) -> Vec<u8> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
        std::io::Write::write_all(&mut encoder, body).unwrap();
        let frame = encoder.finish().unwrap();
        assert_eq!(zstd_safe::get_frame_content_size(&frame).unwrap(), None);
        frame
    }

    #[test]
    fn a_frame_without_its_size_decodes_and_is_bounded_too() {
        let body = "a frame that does not say how large it is ".repeat(50);
        let frame = streamed(body.as_bytes());
        let decoded = decode(Some(ZSTD), &frame).unwrap();
        assert_eq!(decoded.as_ref(), body.as_bytes());
        assert!(matches!(
            decode(Some(ZSTD), &streamed(&vec![0u8; ENCODED_MAX_BYTES + 1])),
            Err(EncodingError::TooLarge)
        ));
    }

    #[test]
    fn a_cut_off_frame_is_corrupt() {
        let body = "the signature of this document covers every byte ".repeat(60);
        let compressed = compress(body.as_bytes()).unwrap();
        let cut = &compressed[..compressed.len() - 8];
        assert!(matches!(
            decode(Some(ZSTD), cut),
            Err(EncodingError::Corrupt(_))
        ));
    }

    #[test]
    fn corrupt_and_unknown_encodings_are_errors() {
        assert!(matches!(
            decode(Some(ZSTD), b"not zstd at all"),
            Err(EncodingError::Corrupt(_))
        ));
        assert!(matches!(
            decode(Some("gzip"), b"x"),
            Err(EncodingError::Unsupported(_))
        ));
    }
}
