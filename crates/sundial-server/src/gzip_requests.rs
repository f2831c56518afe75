//! Inflates gzip-compressed gRPC requests before tonic sees them.
//!
//! The official SDKs gzip every request. tonic's own decoder builds a fresh inflater, a 32 KiB
//! read buffer and a copy buffer for each message, and for requests of a few hundred bytes
//! that set-up cost more than all of SQLite's work on the server. Here each worker thread keeps
//! one raw-deflate inflater, resets it per message and writes straight into the buffer that
//! becomes the new body. The request then reaches tonic (and the authorization layer) as an
//! uncompressed frame without a `grpc-encoding` header, so everything behind this layer sees
//! plain protobuf.
//!
//! Only whole unary bodies are handled (every Temporal RPC is unary). A body that is not a
//! sequence of well-formed gRPC frames is passed on unchanged for tonic to refuse.
//!
//! What one request may inflate to is capped in total, over all its frames (a body of many
//! small gzip bombs is refused as soon as their sum passes the limit), and memory is reserved
//! only as inflated data arrives: a gzip trailer's claimed size is believed only up to what
//! deflate can produce from the compressed bytes at hand. This layer runs before
//! authorization, so a refused bomb costs no authorization work.

use crate::request_filter::{BoxFuture, FilterLayer, RequestFilter};
use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use std::cell::RefCell;
use tonic::body::Body;

thread_local! {
    /// This thread's inflater (raw deflate: the gzip header and trailer are read here).
    static INFLATER: RefCell<flate2::Decompress> = RefCell::new(flate2::Decompress::new(false));
}

/// Why a compressed message was refused, as tonic words it.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The message would inflate past the size limit.
    TooLarge,
    /// Not a gzip member, or corrupt.
    Corrupt(&'static str),
}

impl InflateError {
    /// The status tonic answers with for this error.
    pub fn status(&self, limit: usize) -> tonic::Status {
        match self {
            InflateError::TooLarge => tonic::Status::resource_exhausted(format!(
                "Error decompressing: size limit, of {limit} bytes, exceeded while decompressing message"
            )),
            InflateError::Corrupt(why) => {
                tonic::Status::internal(format!("Error decompressing: {why}"))
            }
        }
    }
}

/// Length of the gzip member header at the start of `data` (RFC 1952, section 2.3).
fn gzip_header_len(data: &[u8]) -> Result<usize, InflateError> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    let corrupt = InflateError::Corrupt("invalid gzip header");
    if data.len() < 10 || data[0] != 0x1f || data[1] != 0x8b || data[2] != 8 {
        return Err(corrupt);
    }
    let flags = data[3];
    if flags & 0xe0 != 0 {
        return Err(corrupt);
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = data
            .get(at..at + 2)
            .ok_or(InflateError::Corrupt("invalid gzip header"))?;
        at += 2 + u16::from_le_bytes([len[0], len[1]]) as usize;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let rest = data
                .get(at..)
                .ok_or(InflateError::Corrupt("invalid gzip header"))?;
            let end = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(InflateError::Corrupt("invalid gzip header"))?;
            at += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if at > data.len() {
        return Err(corrupt);
    }
    Ok(at)
}

/// Deflate's best compression ratio (a run of one byte: 258 bytes per 2-bit code, about
/// 1032:1); no member inflates to more than this many times its compressed size.
const MAX_DEFLATE_RATIO: usize = 1032;

/// Appends the inflated content of the gzip member `member` to `out`, at most `limit` bytes.
fn inflate_member(member: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
    let start = gzip_header_len(member)?;
    let Some(trailer_at) = member.len().checked_sub(8).filter(|&t| t >= start) else {
        return Err(InflateError::Corrupt("gzip member too short"));
    };
    let trailer = &member[trailer_at..];
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]) as usize;
    let base = out.len();
    // The trailer's size is a hint (it is the length modulo 2^32, and a client's claim); never
    // reserve past the limit or past what the compressed bytes can inflate to.
    let possible = member.len().saturating_mul(MAX_DEFLATE_RATIO);
    out.reserve(size.min(limit).min(possible).saturating_add(1));
    let deflate = &member[start..trailer_at];
    INFLATER.with(|inflater| {
        let mut inflater = inflater.borrow_mut();
        inflater.reset(false);
        loop {
            let consumed = inflater.total_in() as usize;
            if out.len() == out.capacity() {
                if out.len() - base > limit {
                    return Err(InflateError::TooLarge);
                }
                out.reserve((out.len() - base).max(4096));
            }
            let status = inflater
                .decompress_vec(&deflate[consumed..], out, flate2::FlushDecompress::Finish)
                .map_err(|_| InflateError::Corrupt("invalid deflate data"))?;
            if out.len() - base > limit {
                return Err(InflateError::TooLarge);
            }
            match status {
                flate2::Status::StreamEnd => break,
                flate2::Status::Ok => {}
                flate2::Status::BufError => {
                    // No progress with room to spare: the input ended early.
                    if out.len() < out.capacity() {
                        return Err(InflateError::Corrupt("truncated deflate data"));
                    }
                }
            }
        }
        if inflater.total_in() as usize != deflate.len() {
            return Err(InflateError::Corrupt("data after the deflate stream"));
        }
        Ok(())
    })?;
    let inflated = &out[base..];
    if inflated.len() as u32 != size as u32 || crc32fast::hash(inflated) != crc {
        return Err(InflateError::Corrupt("gzip checksum mismatch"));
    }
    Ok(())
}

/// The body with every compressed frame inflated and marked uncompressed, at most `limit`
/// bytes of messages in all. `None` when `body` is not a sequence of whole gRPC frames (tonic
/// then refuses it itself). Public for the fuzz targets.
pub fn inflate_frames(mut body: Bytes, limit: usize) -> Option<Result<Bytes, InflateError>> {
    let mut out = Vec::new();
    // Message bytes written so far (the sum over frames, headers not counted).
    let mut total = 0usize;
    while !body.is_empty() {
        if body.len() < 5 {
            return None;
        }
        let compressed = body[0];
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let frame = body.get(5..5usize.checked_add(len)?)?;
        let at = out.len();
        out.extend_from_slice(&[0; 5]);
        let remaining = limit - total;
        match compressed {
            0 if frame.len() > remaining => return Some(Err(InflateError::TooLarge)),
            0 => out.extend_from_slice(frame),
            1 => {
                if let Err(e) = inflate_member(frame, &mut out, remaining) {
                    return Some(Err(e));
                }
            }
            _ => return None,
        }
        let message_len = out.len() - at - 5;
        total += message_len;
        let inflated = u32::try_from(message_len).ok()?;
        out[at + 1..at + 5].copy_from_slice(&inflated.to_be_bytes());
        body.advance(5 + len);
    }
    Some(Ok(Bytes::from(out)))
}

/// Reads a gzip-encoded request whole and hands it on inflated.
async fn inflate_request(
    request: http::Request<Body>,
    limit: usize,
) -> Result<http::Request<Body>, tonic::Status> {
    let (mut parts, body) = request.into_parts();
    let body = http_body_util::Limited::new(body, limit.saturating_add(5))
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                tonic::Status::resource_exhausted(format!(
                    "Error, message length too large: the limit is {limit} bytes"
                ))
            } else {
                tonic::Status::internal(format!("Error reading the request body: {e}"))
            }
        })?
        .to_bytes();
    let body = match inflate_frames(body.clone(), limit) {
        Some(Ok(inflated)) => {
            parts.headers.remove("grpc-encoding");
            inflated
        }
        Some(Err(e)) => return Err(e.status(limit)),
        None => body,
    };
    Ok(http::Request::from_parts(
        parts,
        Body::new(http_body_util::Full::new(body)),
    ))
}

/// The [`RequestFilter`] that inflates gzip requests of at most `limit` bytes (inflated).
#[derive(Clone)]
pub struct GzipRequests {
    limit: usize,
}

impl GzipRequests {
    pub fn layer(limit: usize) -> FilterLayer<GzipRequests> {
        FilterLayer::new(GzipRequests { limit })
    }
}

impl RequestFilter for GzipRequests {
    fn wants(&self, request: &http::Request<Body>) -> bool {
        request
            .headers()
            .get("grpc-encoding")
            .is_some_and(|v| v.as_bytes() == b"gzip")
    }

    fn filter(
        &self,
        request: http::Request<Body>,
    ) -> BoxFuture<Result<http::Request<Body>, tonic::Status>> {
        Box::pin(inflate_request(request, self.limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn frame(compressed: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![compressed as u8];
        f.extend((payload.len() as u32).to_be_bytes());
        f.extend(payload);
        f
    }

    #[test]
    fn compressed_and_plain_frames_come_out_plain() {
        let big: Vec<u8> = (0..20_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut body = frame(true, &gzip(b"hello"));
        body.extend(frame(false, b"as is"));
        body.extend(frame(true, &gzip(&big)));
        body.extend(frame(true, &gzip(b"")));
        let out = inflate_frames(Bytes::from(body), 1 << 20).unwrap().unwrap();
        let mut want = frame(false, b"hello");
        want.extend(frame(false, b"as is"));
        want.extend(frame(false, &big));
        want.extend(frame(false, b""));
        assert_eq!(&out[..], &want[..]);
    }

    #[test]
    fn header_fields_are_skipped() {
        let mut member = gzip(b"named");
        // Set FNAME and insert a file name after the fixed header.
        member[3] |= 0x08;
        member.splice(10..10, b"file.bin\0".iter().copied());
        let mut out = Vec::new();
        inflate_member(&member, &mut out, 100).unwrap();
        assert_eq!(out, b"named");
    }

    #[test]
    fn bad_members_are_refused_with_a_reason() {
        let good = gzip(b"payload payload payload");
        let mut out = Vec::new();
        assert_eq!(
            inflate_member(&good, &mut out, 5),
            Err(InflateError::TooLarge)
        );
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1;
        assert_eq!(
            inflate_member(&bad_crc, &mut Vec::new(), 100),
            Err(InflateError::Corrupt("gzip checksum mismatch"))
        );
        assert!(inflate_member(&good[..good.len() - 12], &mut Vec::new(), 100).is_err());
        assert!(inflate_member(b"not gzip at all", &mut Vec::new(), 100).is_err());
        assert!(inflate_member(&[], &mut Vec::new(), 100).is_err());
        let mut garbage = good.clone();
        for b in &mut garbage[10..n - 8] {
            *b = 0xff;
        }
        assert!(inflate_member(&garbage, &mut Vec::new(), 100).is_err());
    }

    #[test]
    fn the_limit_holds_for_the_whole_request() {
        // Each frame alone fits; together they do not.
        let zeros = vec![0u8; 600_000];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 10_000, "{}", bomb.len());
        let mut body = Vec::new();
        for _ in 0..4 {
            body.extend(frame(true, &bomb));
        }
        assert_eq!(
            inflate_frames(Bytes::from(body.clone()), 2_000_000).unwrap(),
            Err(InflateError::TooLarge)
        );
        assert!(
            inflate_frames(Bytes::from(body), 2_400_000)
                .unwrap()
                .is_ok()
        );
        // Plain frames count too.
        let mut body = frame(true, &bomb);
        body.extend(frame(false, &[7u8; 1000]));
        assert_eq!(
            inflate_frames(Bytes::from(body), 600_500).unwrap(),
            Err(InflateError::TooLarge)
        );
    }

    #[test]
    fn a_lying_trailer_reserves_nothing_large() {
        let mut member = gzip(b"tiny");
        let n = member.len();
        // Claim 4 GiB - 1 inflated: the reservation follows the compressed size instead.
        member[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut out = Vec::new();
        assert!(inflate_member(&member, &mut out, 128 << 20).is_err());
        assert!(
            out.capacity() <= n * MAX_DEFLATE_RATIO + 1,
            "{}",
            out.capacity()
        );
    }

    #[test]
    fn a_bomb_is_refused_without_inflating_it_whole() {
        // 1 GiB of zeros compresses to about 1 MiB; the inflater stops at the limit.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            enc.write_all(&chunk).unwrap();
        }
        let bomb = enc.finish().unwrap();
        let mut out = Vec::new();
        assert_eq!(
            inflate_member(&bomb, &mut out, 4 << 20),
            Err(InflateError::TooLarge)
        );
        assert!(out.capacity() < 16 << 20, "{}", out.capacity());
    }

    #[test]
    fn malformed_framing_is_left_to_tonic() {
        assert!(inflate_frames(Bytes::from_static(&[0, 0, 0, 0, 9, 1]), 100).is_none());
        assert!(inflate_frames(Bytes::from_static(&[1, 0, 0]), 100).is_none());
        assert!(inflate_frames(Bytes::from_static(&[2, 0, 0, 0, 0]), 100).is_none());
    }
}
